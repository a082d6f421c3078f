"""A packet, the hops it makes and the verdict: the types every evaluator shares."""

from __future__ import annotations

import dataclasses
from typing import Any

DELIVERED = "delivered"
DROPPED = "dropped"
UNKNOWN = "unknown"

# What trace and a live probe model (novanet is IPv4-only).
PROTOCOLS = ("icmp", "tcp", "udp")


@dataclasses.dataclass(frozen=True)
class Packet:
    """One IPv4 packet as a node sees it at one point of its path.

    ``ctstate`` is the conntrack state the packet has when it is evaluated
    (``NEW`` for the first packet of a flow, ``ESTABLISHED`` for a reply);
    ``mark`` the skb mark; ``icmp_type`` only for icmp (8 echo request, 0 echo
    reply); ``sport``/``dport`` only for tcp and udp; ``src_mac`` when known
    (the anti-spoofing table checks it).
    """

    src: str
    dst: str
    proto: str = "icmp"  # icmp | tcp | udp
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = 8
    ctstate: str = "NEW"
    mark: int = 0
    src_mac: str | None = None

    def replace(self, **changes: Any) -> Packet:
        return dataclasses.replace(self, **changes)

    def reply(self) -> Packet:
        """The answer to this packet (addresses and ports swapped, ESTABLISHED)."""
        return Packet(
            src=self.dst,
            dst=self.src,
            proto=self.proto,
            sport=self.dport,
            dport=self.sport,
            icmp_type=0 if self.proto == "icmp" else None,
            ctstate="ESTABLISHED",
        )

    def describe(self) -> str:
        ports = f" {self.sport}->{self.dport}" if self.dport is not None else ""
        return f"{self.proto} {self.src} -> {self.dst}{ports} ({self.ctstate})"


@dataclasses.dataclass(frozen=True)
class Hop:
    """One step of the path: a node, where on it, and what happened there.

    ``what`` is one line for people ("route: 10.0.0.0/24 dev br100",
    "filter FORWARD rule 3 -> nova-filter-top", "DNAT to 10.0.0.3");
    ``table``/``chain``/``rule`` name the rule that decided, when one did.
    """

    node: str
    where: str  # an interface, or a hook such as "PREROUTING"
    what: str
    table: str | None = None
    chain: str | None = None
    rule: int | None = None  # 1-based, as iptables -L --line-numbers counts
    rule_text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass
class Verdict:
    """The fate of one packet: ``delivered``, ``dropped`` or ``unknown``."""

    verdict: str
    hops: list[Hop]
    reason: str = ""  # for dropped/unknown: "dropped at NODE TABLE CHAIN rule N `...`"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "hops": [h.to_dict() for h in self.hops],
        }
