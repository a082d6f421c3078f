"""The controller's iptables rules, as data (nova-network's, as the seed lists them).

Pure functions of the configuration and the networks; the daemon hands the
result to the iptables manager (novanet.linux.iptables.declare). Chains are named without the
``<prefix>-<binary>-`` wrapping (``INPUT`` becomes ``nova-network-INPUT``);
rules are in the canonical form ``iptables -S`` prints, so what the kernel
shows can be compared with them exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from novanet.linux.iptables.declare import Rules

METADATA_ADDRESS = "169.254.169.254/32"


class NetworkLike(Protocol):
    @property
    def bridge(self) -> str: ...

    @property
    def cidr(self) -> str: ...


def controller_rules(
    networks: Sequence[NetworkLike],
    *,
    metadata_host: str,
    metadata_port: int,
    routing_source_ip: str,
    dmz_cidrs: Iterable[str] = (),
) -> Rules:
    """Rules of novanet-network (binary ``network``) for these networks."""
    filter_input: list[str] = []
    filter_forward: list[str] = []
    postrouting: list[str] = []
    snat: list[str] = ["-j $float-snat"]  # floating IPs (none in FlatDHCP) come first
    dmz = list(dmz_cidrs)
    for net in networks:
        # DHCP and DNS from the guests to dnsmasq on the bridge.
        for proto, port in (("udp", 67), ("tcp", 67), ("udp", 53), ("tcp", 53)):
            filter_input.append(f"-i {net.bridge} -p {proto} -m {proto} --dport {port} -j ACCEPT")
        filter_forward.append(f"-i {net.bridge} -j ACCEPT")
        filter_forward.append(f"-o {net.bridge} -j ACCEPT")
        # Traffic that must keep its source address: to the metadata host
        # (it identifies the instance by it), to the DMZ, and within the
        # network unless it was DNATed (metadata replies must be un-DNATed).
        postrouting.append(f"-s {net.cidr} -d {metadata_host}/32 -j ACCEPT")
        postrouting.extend(f"-s {net.cidr} -d {cidr} -j ACCEPT" for cidr in dmz)
        postrouting.append(f"-s {net.cidr} -d {net.cidr} -m conntrack ! --ctstate DNAT -j ACCEPT")
        snat.append(f"-s {net.cidr} -j SNAT --to-source {routing_source_ip}")
    prerouting = [
        f"-d {METADATA_ADDRESS} -p tcp -m tcp --dport 80 "
        f"-j DNAT --to-destination {metadata_host}:{metadata_port}"
    ]
    return {
        "filter": {"INPUT": filter_input, "FORWARD": filter_forward},
        "nat": {"PREROUTING": prerouting, "POSTROUTING": postrouting, "snat": snat},
    }
