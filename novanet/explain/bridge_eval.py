"""The anti-spoofing table (``bridge novanet``) as a compute host's facts hold it.

novanet's table (novanet.compute.antispoof) has the same thirteen rules on
every host; what differs per host is its four sets. So the evaluator reads
the sets from ``nft -j list table bridge novanet`` and applies the table's
meaning to one IPv4 frame entering the bridge from a port: a port in
``vif_ports`` passes only frames whose ``port . ether saddr`` is in
``vif_macs`` and whose ``port . ip saddr`` is in ``vif_ips`` (DHCP server
traffic from a guest is dropped too). A table whose chains are not the
expected ones is not guessed at: the result says it cannot predict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

EXPECTED_CHAINS = {"prerouting", "vif", "vif_arp", "vif_ip"}


@dataclasses.dataclass(frozen=True)
class BridgeResult:
    verdict: str  # ACCEPT | DROP | UNKNOWN
    chain: str | None = None
    reason: str = ""


class AntiSpoof:
    """The sets of one host's table: port -> MACs, port -> addresses."""

    def __init__(self, nft: Mapping[str, Any] | None) -> None:
        self.present = nft is not None
        self.ports: set[str] = set()
        self.macs: set[tuple[str, str]] = set()
        self.ips: set[tuple[str, str]] = set()
        self.chains: set[str] = set()
        for item in (nft or {}).get("nftables", []):
            if "chain" in item:
                self.chains.add(str(item["chain"].get("name")))
            elem_set = item.get("set")
            if not elem_set:
                continue
            elems = elem_set.get("elem") or []
            name = elem_set.get("name")
            if name == "vif_ports":
                self.ports = {str(_value(e)) for e in elems}
            elif name == "vif_macs":
                self.macs = {_pair(e, lower=True) for e in elems}
            elif name == "vif_ips":
                self.ips = {_pair(e) for e in elems}

    def check(
        self, port: str, src_mac: str | None, src_ip: str, udp_sport: int | None
    ) -> BridgeResult:
        """The table's verdict on an IPv4 frame entering the bridge from ``port``."""
        if not self.present or port not in self.ports:
            return BridgeResult("ACCEPT")
        if not self.chains >= EXPECTED_CHAINS:
            missing = ", ".join(sorted(EXPECTED_CHAINS - self.chains))
            return BridgeResult(
                "UNKNOWN", reason=f"bridge novanet table lacks chain(s) {missing}: cannot predict"
            )
        if src_mac is not None and (port, src_mac.lower()) not in self.macs:
            return BridgeResult("DROP", "vif", "source MAC is not the instance's")
        if udp_sport == 67:
            return BridgeResult("DROP", "vif_ip", "DHCP server")
        if (port, src_ip) not in self.ips:
            return BridgeResult("DROP", "vif_ip", "source IP is not the instance's")
        return BridgeResult("ACCEPT", "vif_ip", f"{port} . {src_ip} is in @vif_ips")


def _value(elem: Any) -> Any:
    if isinstance(elem, dict) and "elem" in elem:  # an element with a comment or counter
        return _value(elem["elem"].get("val"))
    return elem


def _pair(elem: Any, lower: bool = False) -> tuple[str, str]:
    value = _value(elem)
    parts = value.get("concat", ["", ""]) if isinstance(value, dict) else ["", ""]
    second = str(parts[1])
    return str(parts[0]), second.lower() if lower else second
