"""The lab's wires: network namespaces, the two segment bridges, node NICs.

All netlink work goes through pyroute2, always bound to one of the lab's
namespaces by :func:`novanet.linux.ip_lib.iproute` (a socket made inside the
namespace; a missing namespace is an error, never created by accident).
Namespaces are made and removed by :class:`novanet.linux.netns.NamespaceFiles`,
as the daemons make instance namespaces. The root namespace is never touched: a
node NIC is a veth pair created inside the fabric namespace with its peer
placed directly into the node's namespace, so no interface ever exists in
the root namespace, not even for an instant.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from typing import Any

from pyroute2 import IPRoute

from novanet.lab.topology import Node, Topology
from novanet.linux.ip_lib import iproute
from novanet.linux.netns import DEFAULT_NETNS_DIR, NamespaceFiles

RUN_NETNS = DEFAULT_NETNS_DIR
IFF_UP = 0x1
IFF_PROMISC = 0x100
RTPROT_BOOT = 3  # what `ip route add` uses: the routes look hand-made, like the seed's


def netns_path(name: str) -> str:
    return os.path.join(RUN_NETNS, name)


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def create_netns(name: str) -> None:
    if netns_exists(name) or not NamespaceFiles(RUN_NETNS).create(name):
        raise FileExistsError(f"network namespace {name} already exists")


def remove_netns(name: str) -> bool:
    """Unmount and unlink a namespace handle; the kernel frees it when unused."""
    if not os.path.lexists(netns_path(name)):
        return False
    NamespaceFiles(RUN_NETNS).delete(name)
    return True


def _ipr(name: str) -> contextlib.AbstractContextManager[IPRoute]:
    return iproute(name, NamespaceFiles(RUN_NETNS))


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"no interface {ifname}")
    return int(found[0])


def build(topology: Topology) -> None:
    """Create every namespace and link of the topology (the lab must be new)."""
    for name in topology.all_netns():
        create_netns(name)
    _build_fabric(topology)
    for node in topology.nodes:
        _configure_node(topology, node)


def _build_fabric(topology: Topology) -> None:
    with _ipr(topology.fabric_netns) as fab:
        fab.link("set", index=_index(fab, "lo"), state="up")
        bridges = {}
        for segment in topology.segments:
            # A plain learning switch: STP off and no forward delay, so a
            # port forwards as soon as it is up (like the seed's br100).
            fab.link(
                "add",
                ifname=segment.bridge,
                kind="bridge",
                br_stp_state=0,
                br_forward_delay=0,
            )
            bridges[segment.name] = _index(fab, segment.bridge)
            fab.link("set", index=bridges[segment.name], state="up")
        for node in topology.nodes:
            for nic in node.nics:
                port = Topology.fabric_port(node, nic)
                fab.link(
                    "add",
                    ifname=port,
                    kind="veth",
                    peer={
                        "ifname": nic.name,
                        "address": nic.mac,
                        "net_ns_fd": topology.netns(node.name),
                    },
                )
                fab.link("set", index=_index(fab, port), master=bridges[nic.segment], state="up")


def _configure_node(topology: Topology, node: Node) -> None:
    with _ipr(topology.netns(node.name)) as ipr:
        ipr.link("set", index=_index(ipr, "lo"), state="up")
        for nic in node.nics:
            index = _index(ipr, nic.name)
            flags = IFF_UP | (IFF_PROMISC if nic.promisc else 0)
            ipr.link("set", index=index, flags=flags, mask=flags)
            if nic.address:
                iface = ipaddress.IPv4Interface(nic.address)
                ipr.addr(
                    "add",
                    index=index,
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                    broadcast=str(iface.network.broadcast_address),
                )
        for route in node.routes:
            spec: dict[str, Any] = {
                "dst": route.dst,
                "oif": _index(ipr, route.dev),
                "priority": route.metric,
                "proto": RTPROT_BOOT,
            }
            if route.via:
                spec["gateway"] = route.via
            else:
                spec["scope"] = "link"
            ipr.route("add", **spec)


def describe(netns: str) -> list[dict[str, Any]]:
    """Links of a namespace with state, MAC, master and IPv4 addresses."""
    if not netns_exists(netns):
        return []
    with _ipr(netns) as ipr:
        links = ipr.get_links()
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
        addrs: dict[int, list[str]] = {}
        for msg in ipr.get_addr(family=2):
            addrs.setdefault(msg["index"], []).append(
                f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}"
            )
    result = []
    for link in links:
        master = link.get_attr("IFLA_MASTER")
        result.append(
            {
                "name": link.get_attr("IFLA_IFNAME"),
                "mac": link.get_attr("IFLA_ADDRESS"),
                "up": bool(link["flags"] & IFF_UP),
                "promisc": bool(link["flags"] & IFF_PROMISC),
                "master": names.get(master) if master else None,
                "ipv4": addrs.get(link["index"], []),
            }
        )
    return result
