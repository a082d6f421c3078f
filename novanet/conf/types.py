"""oslo.config value types novanet needs beyond the stock ones."""

from __future__ import annotations

import ipaddress
import re

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


class DnsServer(types.String):
    """One dnsmasq upstream server (``--server=``): an address, optionally
    ``#PORT``, optionally for some domains only (``/example.org/10.1.1.1``).

    nova passed the value to dnsmasq unchecked; a typo then stopped dnsmasq
    (and DHCP with it) at the next restart instead of the daemon at start.
    """

    def __init__(self, type_name: str = "DNS server value") -> None:
        super().__init__(type_name=type_name)

    def __call__(self, value: object) -> str:
        text = super().__call__(value).strip()
        domains, _, server = text.rpartition("/")
        address, _, port = server.partition("#")
        try:
            ipaddress.ip_address(address)
            if port and not 0 < int(port) < 65536:
                raise ValueError(port)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a DNS server for dnsmasq (ADDRESS[#PORT], or "
                "/DOMAIN/ADDRESS to use it for one domain only)"
            ) from None
        if domains and (not domains.startswith("/") or any(c in domains for c in " ,\t")):
            raise ValueError(f"{text!r}: the domain part must read /DOMAIN/[DOMAIN/...]")
        return text

    def __eq__(self, other: object) -> bool:
        return self.__class__ == other.__class__

    def __hash__(self) -> int:
        return hash(self.__class__)


class Regex(types.String):
    """A Python regular expression (checked at start, not at the first apply)."""

    def __init__(self, type_name: str = "regular expression value") -> None:
        super().__init__(type_name=type_name)

    def __call__(self, value: object) -> str:
        text = super().__call__(value)
        try:
            re.compile(text)
        except re.error as exc:
            raise ValueError(f"{text!r} is not a regular expression: {exc}") from None
        return text

    def __eq__(self, other: object) -> bool:
        return self.__class__ == other.__class__

    def __hash__(self) -> int:
        return hash(self.__class__)


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
