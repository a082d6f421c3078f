"""The controller's iptables rules, as data (nova-network's, as the seed lists them).

Pure functions of the configuration and the networks; the daemon hands the
result to the iptables manager (novanet.linux.iptables.declare). Chains are named without the
``<prefix>-<binary>-`` wrapping (``INPUT`` becomes ``nova-network-INPUT``);
rules are in the canonical form ``iptables -S`` prints, so what the kernel
shows can be compared with them exactly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Protocol

from novanet.linux.iptables.declare import Rules
from novanet.network.floating_rules import snat_rules

METADATA_ADDRESS = "169.254.169.254/32"


# iptables_drop_action LOGDROP: a chain of the binary that logs, then drops.
LOGDROP_RULES = ['-j LOG --log-prefix "novanet-drop: "', "-j DROP"]


class NetworkLike(Protocol):
    @property
    def bridge(self) -> str: ...

    @property
    def cidr(self) -> str: ...


def drop_rule(action: str) -> str:
    """The rule ending in iptables_drop_action (LOGDROP jumps to the binary's logdrop chain)."""
    if action == "REJECT":
        return "-j REJECT --reject-with icmp-port-unreachable"
    if action == "LOGDROP":
        return "-j $logdrop"
    return "-j DROP"


def gateway_rules(bridge: str, forward_interfaces: Sequence[str], drop: str) -> list[str]:
    """FORWARD rules of a bridge, nova's get_gateway_rules (on controller and compute).

    ``forward_bridge_interface`` holding ``all`` (nova's default) gives the
    seed's two accepts; otherwise forwarding is accepted between the bridge
    and each listed interface and within the bridge, and the rest from or to
    the bridge meets ``drop`` (see :func:`drop_rule`).
    """
    if "all" in forward_interfaces:
        return [f"-i {bridge} -j ACCEPT", f"-o {bridge} -j ACCEPT"]
    rules = []
    for iface in dict.fromkeys(i for i in forward_interfaces if i):
        rules += [f"-i {bridge} -o {iface} -j ACCEPT", f"-i {iface} -o {bridge} -j ACCEPT"]
    return rules + [
        f"-i {bridge} -o {bridge} -j ACCEPT",
        f"-i {bridge} {drop}",
        f"-o {bridge} {drop}",
    ]


def metadata_forward(metadata_host: str, metadata_port: int) -> str:
    """The nat PREROUTING rule taking 169.254.169.254:80 to the metadata service.

    A DNAT to a loopback address cannot work: the kernel drops packets from
    outside arriving for 127.0.0.0/8 (martians). nova (2012, bug 1015853)
    REDIRECTs to metadata_port on the receiving interface's address instead
    when metadata_host is 127.0.0.1; novanet does so for any loopback address.
    """
    if ipaddress.ip_address(metadata_host).is_loopback:
        return (
            f"-d {METADATA_ADDRESS} -p tcp -m tcp --dport 80 -j REDIRECT --to-ports {metadata_port}"
        )
    return (
        f"-d {METADATA_ADDRESS} -p tcp -m tcp --dport 80 "
        f"-j DNAT --to-destination {metadata_host}:{metadata_port}"
    )


def controller_rules(
    networks: Sequence[NetworkLike],
    *,
    metadata_host: str,
    metadata_port: int,
    routing_source_ip: str,
    dmz_cidrs: Iterable[str] = (),
    forward_interfaces: Sequence[str] = ("all",),
    drop_action: str = "DROP",
    force_snat_range: Sequence[str] = (),
) -> Rules:
    """Rules of novanet-network (binary ``network``) for these networks.

    The mangle table's ``CHECKSUM --checksum-fill`` for DHCP replies is nova's
    (Grizzly, only with /dev/vhost-net; for every bridge from Juno): guests
    behind virtio/vhost-net or veth get the reply with the checksum left to
    hardware that never computes it, and DHCP clients that check it (old
    dhclient, udhcpc before 1.21) drop it.
    """
    filter_input: list[str] = []
    filter_forward: list[str] = []
    postrouting: list[str] = []
    mangle_postrouting: list[str] = []
    snat: list[str] = ["-j $float-snat"]  # floating IPs (network/floating_rules.py) come first
    dmz = list(dmz_cidrs)
    bridges = list(dict.fromkeys(net.bridge for net in networks))
    drop = drop_rule(drop_action)
    for bridge in bridges:
        # DHCP and DNS from the guests to dnsmasq on the bridge.
        for proto, port in (("udp", 67), ("tcp", 67), ("udp", 53), ("tcp", 53)):
            filter_input.append(f"-i {bridge} -p {proto} -m {proto} --dport {port} -j ACCEPT")
        filter_forward += gateway_rules(bridge, forward_interfaces, drop)
        mangle_postrouting.append(
            f"-o {bridge} -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill"
        )
    for net in networks:
        # Traffic that must keep its source address: to the metadata host
        # (it identifies the instance by it), to the DMZ, and within the
        # network unless it was DNATed (metadata replies must be un-DNATed).
        postrouting.append(f"-s {net.cidr} -d {metadata_host}/32 -j ACCEPT")
        postrouting.extend(f"-s {net.cidr} -d {cidr} -j ACCEPT" for cidr in dmz)
        postrouting.append(f"-s {net.cidr} -d {net.cidr} -m conntrack ! --ctstate DNAT -j ACCEPT")
        snat += snat_rules(net.cidr, routing_source_ip, force_snat_range)
    filters = {"INPUT": filter_input, "FORWARD": filter_forward}
    if drop_action == "LOGDROP":
        filters["logdrop"] = list(LOGDROP_RULES)
    return {
        "filter": filters,
        "nat": {
            "PREROUTING": [metadata_forward(metadata_host, metadata_port)],
            "POSTROUTING": postrouting,
            "snat": snat,
        },
        "mangle": {"POSTROUTING": mangle_postrouting},
    }
