"""oslo.config value types novanet needs beyond the stock ones."""

from __future__ import annotations

import ipaddress

from oslo_config import types


class IPv4Network(types.ConfigType):
    """An IPv4 network in CIDR notation (``10.0.0.0/24``).

    Host bits must be zero: ``10.0.0.1/24`` is refused rather than silently
    truncated, because nova-network operators used to mistype the gateway for
    the network and got a different pool than they meant.
    """

    def __init__(self, type_name: str = "IPv4 CIDR value") -> None:
        super().__init__(type_name=type_name)

    def __call__(self, value: object) -> str:
        if isinstance(value, ipaddress.IPv4Network):
            return str(value)
        text = str(value).strip()
        if "/" not in text:
            raise ValueError(f"{text!r} is not a CIDR (expected ADDRESS/PREFIX, e.g. 10.0.0.0/24)")
        try:
            net = ipaddress.IPv4Network(text, strict=True)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid IPv4 CIDR: {exc}") from None
        return str(net)

    def __repr__(self) -> str:
        return "IPv4Network"

    def __eq__(self, other: object) -> bool:
        return self.__class__ == other.__class__

    def _formatter(self, value: object) -> str:
        return str(value)


class Choice(types.String):
    """A string restricted to a set of values, with a "not supported" error.

    oslo's own ``choices`` error lists the valid values but does not say the
    value is unsupported, which is what an operator porting a nova.conf with
    another manager needs to read.
    """

    def __init__(self, accepted: list[str], what: str, type_name: str = "string value") -> None:
        super().__init__(type_name=type_name)
        self.accepted = list(accepted)
        self.what = what

    def __call__(self, value: object) -> str:
        text = super().__call__(value)
        if text not in self.accepted:
            raise ValueError(
                f"{text!r} is not supported (novanet supports only {self.what}: "
                + ", ".join(self.accepted)
                + ")"
            )
        return text

    def __eq__(self, other: object) -> bool:
        return (
            self.__class__ == other.__class__ and self.accepted == other.accepted  # type: ignore[attr-defined]
        )

    def __hash__(self) -> int:
        return hash(tuple(self.accepted))
