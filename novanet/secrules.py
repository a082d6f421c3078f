"""A security group's ingress rule as plain data: checked once, compact on the wire.

nova-network's rules, as novaclient typed them: ``IP_PROTO FROM_PORT TO_PORT``
and a source, either a CIDR or the members of another group. For tcp and
udp the ports are a range (``0 <= FROM <= TO <= 65535``); for icmp FROM is
the type and TO the code, ``-1`` meaning any (nova's spelling). One module
checks them for the CLI, the controller and the RPC payloads, so a rule the
compute agent receives is always one it can render.

The compact form travels in :class:`novanet.rpc.objects.InstanceNetwork`:
``"tcp 22 22 10.0.0.0/24"`` for a CIDR source, ``"tcp 5432 5432 @7"`` for
the members of group 7 (group ids, not names: names are long and can be
reused; the agent names its ipset after the id).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from novanet.exception import BadRequest, UsageError

PROTOCOLS = ("tcp", "udp", "icmp")
# Type 255 is iptables' wildcard (xt_icmp prints `--icmp-type 255` as
# `any` and matches every type): a rule for "type 255" would open all of
# ICMP, so the wildcard is spelled -1 only.
MAX_ICMP_TYPE = 254
MAX_ICMP_CODE = 255


@dataclass(frozen=True, order=True)
class Rule:
    """One ingress rule; exactly one of ``cidr`` and ``source_group`` is set."""

    protocol: str
    from_port: int
    to_port: int
    cidr: str | None = None
    source_group: int | None = None  # the id of the group whose members may connect

    def compact(self) -> str:
        source = self.cidr if self.source_group is None else f"@{self.source_group}"
        return f"{self.protocol} {self.from_port} {self.to_port} {source}"

    def ports_text(self) -> tuple[str, str]:
        return str(self.from_port), str(self.to_port)


def _integer(text: object, what: str) -> int:
    if isinstance(text, bool):
        raise UsageError(f"{what} {text!r} is not an integer")
    if isinstance(text, int):
        return text
    try:
        return int(str(text).strip(), 10)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not an integer") from None


def check_ports(protocol: str, from_port: object, to_port: object) -> tuple[str, int, int]:
    """(protocol, from, to) checked as nova did; UsageError names what is wrong."""
    proto = str(protocol).strip().lower()
    if proto not in PROTOCOLS:
        raise UsageError(f"IP protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    low = _integer(from_port, "FROM_PORT" if proto != "icmp" else "the icmp type")
    high = _integer(to_port, "TO_PORT" if proto != "icmp" else "the icmp code")
    if proto == "icmp":
        if not -1 <= low <= MAX_ICMP_TYPE:
            raise UsageError(
                f"icmp type {low} is out of range (0 to {MAX_ICMP_TYPE}, or -1 for any)"
            )
        if not -1 <= high <= MAX_ICMP_CODE:
            raise UsageError(
                f"icmp code {high} is out of range (0 to {MAX_ICMP_CODE}, or -1 for any)"
            )
        if low == -1 and high != -1:
            raise UsageError("an icmp code needs a type: give -1 -1 for any icmp")
        return proto, low, high
    for value, what in ((low, "FROM_PORT"), (high, "TO_PORT")):
        if not 0 <= value <= 65535:
            raise UsageError(f"{proto} {what} {value} is out of range (0 to 65535)")
    if low > high:
        raise UsageError(f"{proto} FROM_PORT {low} is greater than TO_PORT {high}")
    return proto, low, high


def check_cidr(text: str) -> str:
    """An IPv4 CIDR in canonical form; host bits set are an error (as nova's parse_cidr)."""
    raw = str(text).strip()
    try:
        net = ipaddress.IPv4Network(raw, strict=True)
    except ValueError:
        raise UsageError(f"{text!r} is not an IPv4 CIDR (e.g. 10.0.0.0/24, 0.0.0.0/0)") from None
    if "/" not in raw:
        raise UsageError(f"{text!r} has no prefix length: write {net}")
    return str(net)


def cidr_rule(protocol: str, from_port: object, to_port: object, cidr: str) -> Rule:
    proto, low, high = check_ports(protocol, from_port, to_port)
    return Rule(proto, low, high, cidr=check_cidr(cidr))


def group_rule(protocol: str, from_port: object, to_port: object, source_group: int) -> Rule:
    proto, low, high = check_ports(protocol, from_port, to_port)
    return Rule(proto, low, high, source_group=source_group)


def from_compact(text: object, field: str = "rule") -> Rule:
    """A rule from its compact form; BadRequest for anything malformed (RPC payloads)."""
    if not isinstance(text, str) or len(text) > 64:
        raise BadRequest(f"{field} must be a short string")
    parts = text.split(" ")
    if len(parts) != 4:
        raise BadRequest(f"{field} {text!r} is not 'PROTO FROM TO SOURCE'")
    proto, low, high, source = parts
    try:
        if source.startswith("@"):
            group = int(source[1:], 10)
            if group < 1 or source[1:] != str(group):
                raise UsageError(f"bad group id in {text!r}")
            rule = group_rule(proto, low, high, group)
        else:
            rule = cidr_rule(proto, low, high, source)
    except UsageError as exc:
        raise BadRequest(f"{field} {text!r}: {exc}") from None
    except ValueError:
        raise BadRequest(f"{field} {text!r}: bad group id") from None
    if rule.compact() != text:
        raise BadRequest(f"{field} {text!r} is not in canonical form ({rule.compact()})")
    return rule
