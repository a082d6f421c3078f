"""Where things are: the nodes' facts and the database, as one view of the cloud.

Nothing here is evaluated against rules; this module answers the questions
a packet's path needs before any hook runs: which node (or instance) holds
an address, which L2 segment an interface is on, which route a node takes.

Segments are recognised from the facts alone, the way the seed's operator
reads ``ip a`` on every node:

- the flat network's bridge (``br100`` on every node, flat_interface
  enslaved) is one segment, named ``bridge:br100``; the instances' ports
  (``vnetN``) hang on it on their compute host;
- any other interface holding an address is on the segment of that
  address's subnet (``192.168.56.0/24``: the management segment, with the
  controller's floating /32 addresses on it too).

An address on a subnet segment that no node holds is an outside host there
(the seed's 192.168.56.101 gateway); one in a fixed network that neither a
node nor an instance holds has no neighbour.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any

NETWORK_BINARY = "novanet-network"
COMPUTE_BINARY = "novanet-compute"


class TraceError(ValueError):
    """Bad input to a trace (an unknown SRC/DST, a bad port): one line for the operator."""


@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    """An instance as the database knows it (the trace needs no more)."""

    id: int
    name: str  # instance-00000001
    display_name: str
    uuid: str
    host: str | None
    address: str | None
    mac: str | None
    device: str | None  # its port on the host's bridge (vnetN)

    def names(self) -> set[str]:
        return {str(self.id), self.name, self.display_name, self.uuid}


@dataclasses.dataclass(frozen=True)
class NetworkInfo:
    cidr: str
    bridge: str
    gateway: str | None  # the guests' router (the controller's bridge address)


@dataclasses.dataclass(frozen=True)
class FloatingInfo:
    address: str
    fixed_address: str | None
    interface: str | None
    host: str | None


@dataclasses.dataclass(frozen=True)
class DbView:
    """What the trace reads from the database: instances, networks, floating IPs."""

    instances: tuple[InstanceInfo, ...] = ()
    networks: tuple[NetworkInfo, ...] = ()
    floating: tuple[FloatingInfo, ...] = ()

    def instance(self, ref: str) -> InstanceInfo | None:
        for inst in self.instances:
            if ref in inst.names() or ref == inst.address:
                return inst
        return None

    def instance_at(self, address: str) -> InstanceInfo | None:
        return next((i for i in self.instances if i.address == address), None)

    def floating_of(self, address: str) -> FloatingInfo | None:
        return next((f for f in self.floating if f.address == address), None)

    def network_of(self, address: str) -> NetworkInfo | None:
        ip = ipaddress.IPv4Address(address)
        for net in self.networks:
            if ip in ipaddress.IPv4Network(net.cidr, strict=False):
                return net
        return None


@dataclasses.dataclass(frozen=True)
class Route:
    dst: str
    gateway: str | None
    dev: str
    src: str | None

    def describe(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        src = f" src {self.src}" if self.src else ""
        return f"route {self.dst}{via} dev {self.dev}{src}"


class NodeView:
    """One node's facts, with the lookups a trace makes on them."""

    def __init__(self, facts: Mapping[str, Any]) -> None:
        self.facts = facts
        self.host = str(facts.get("host", "?"))
        self.binary = str(facts.get("binary", ""))
        self.links: list[dict[str, Any]] = list(facts.get("links") or [])
        self.routes = [
            Route(
                str(r.get("dst") or "0.0.0.0/0"),
                r.get("gateway"),
                str(r.get("dev") or ""),
                r.get("src"),
            )
            for r in facts.get("routes") or []
        ]
        self.ipsets: dict[str, list[str]] = dict(facts.get("ipsets") or {})

    def link(self, name: str) -> dict[str, Any] | None:
        return next((lk for lk in self.links if lk.get("name") == name), None)

    def addresses(self) -> list[tuple[str, ipaddress.IPv4Interface]]:
        """(interface, address) of every IPv4 address on the node, loopback excluded."""
        out = []
        for link in self.links:
            for text in link.get("addresses") or []:
                iface = ipaddress.IPv4Interface(text)
                if not iface.ip.is_loopback:
                    out.append((str(link["name"]), iface))
        return out

    def local_addresses(self) -> list[str]:
        return [str(a.ip) for _, a in self.addresses()] + ["127.0.0.1"]

    def holds(self, address: str) -> str | None:
        """The interface holding ``address``, if this node does."""
        for name, iface in self.addresses():
            if str(iface.ip) == address:
                return name
        return None

    def route(self, dst: str) -> Route | None:
        """The main table's longest-prefix match for ``dst`` (None: no route)."""
        ip = ipaddress.IPv4Address(dst)
        best: tuple[int, Route] | None = None
        for route in self.routes:
            net = ipaddress.IPv4Network("0.0.0.0/0" if route.dst == "default" else route.dst)
            if ip in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, route)
        return best[1] if best else None

    def source_for(self, route: Route, dst: str) -> str | None:
        """The source address the kernel picks for a packet leaving by ``route``."""
        if route.src:
            return route.src
        mine = [a for name, a in self.addresses() if name == route.dev]
        target = ipaddress.IPv4Address(route.gateway or dst)
        for iface in mine:
            if target in iface.network and iface.network.prefixlen < 32:
                return str(iface.ip)
        primary = [a for a in mine if a.network.prefixlen < 32] or mine
        return str(primary[0].ip) if primary else None

    def bridge_ports(self, bridge: str) -> list[str]:
        return [str(lk["name"]) for lk in self.links if lk.get("master") == bridge]

    def vif_port(self, inst: InstanceInfo) -> str | None:
        """The instance's port on this host: the facts' VIF list first, then the database."""
        for vif in self.facts.get("vifs") or []:
            if vif.get("instance_uuid") == inst.uuid or (
                inst.mac and str(vif.get("mac", "")).lower() == inst.mac.lower()
            ):
                return str(vif.get("devname"))
        return inst.device

    def bridge_netfilter(self) -> bool:
        """True when bridged IPv4 meets iptables (br_netfilter, bridge-nf-call-iptables=1)."""
        sysctl = self.facts.get("sysctl") or {}
        modules = self.facts.get("modules") or {}
        return (
            bool(modules.get("br_netfilter"))
            and sysctl.get("net.bridge.bridge-nf-call-iptables") == "1"
        )

    def forwarding(self) -> bool:
        return (self.facts.get("sysctl") or {}).get("net.ipv4.ip_forward") == "1"

    def default_address(self) -> str | None:
        """The node's own address: the one on its default route's interface."""
        default = self.route("0.0.0.0")
        if default is not None:
            src = self.source_for(default, "0.0.0.0")
            if src:
                return src
        addrs = self.addresses()
        return str(addrs[0][1].ip) if addrs else None


class Cloud:
    """Every node's view and the database: the lookups that span nodes."""

    def __init__(self, facts_by_host: Mapping[str, Mapping[str, Any]], db: DbView) -> None:
        self.nodes = {host: NodeView(facts) for host, facts in facts_by_host.items()}
        self.db = db

    def node(self, host: str) -> NodeView:
        return self.nodes[host]

    @property
    def controller(self) -> NodeView | None:
        return next((n for n in self.nodes.values() if n.binary == NETWORK_BINARY), None)

    def public_interface(self) -> str | None:
        """The controller's public interface: the floating IPs' one, else its default route's."""
        ctl = self.controller
        if ctl is None:
            return None
        for fip in self.db.floating:
            if fip.interface and ctl.link(fip.interface):
                return fip.interface
        default = ctl.route("0.0.0.0")
        return default.dev if default else None

    def node_holding(self, address: str) -> tuple[NodeView, str] | None:
        for node in self.nodes.values():
            dev = node.holds(address)
            if dev is not None:
                return node, dev
        return None

    def is_bridge_segment(self, node: NodeView, dev: str) -> str | None:
        """The flat bridge ``dev`` is, or is a port of, on ``node`` (None: not on one)."""
        bridges = {net.bridge for net in self.db.networks}
        if dev in bridges:
            return dev
        link = node.link(dev)
        master = link.get("master") if link else None
        return master if master in bridges else None

    def subnet_of(self, node: NodeView, dev: str, near: str) -> ipaddress.IPv4Network | None:
        """The subnet of ``dev`` on ``node`` that contains ``near`` (a next hop)."""
        ip = ipaddress.IPv4Address(near)
        for name, iface in node.addresses():
            if name == dev and ip in iface.network:
                return iface.network
        return None

    def outside_subnet(self, address: str) -> ipaddress.IPv4Network | None:
        """The node subnet (not a fixed network) an outside address sits on, if any."""
        ip = ipaddress.IPv4Address(address)
        for node in self.nodes.values():
            for dev, iface in node.addresses():
                if self.is_bridge_segment(node, dev):
                    continue
                if iface.network.prefixlen < 32 and ip in iface.network:
                    return iface.network
        return None

    def holders_on_subnet(
        self, subnet: ipaddress.IPv4Network, address: str
    ) -> tuple[NodeView, str] | None:
        """The node and interface holding ``address`` on the subnet segment ``subnet``.

        A /32 (a floating address) is on the segment of the subnet its
        interface has (the controller's eth1 holds 192.168.56.230/32 beside
        192.168.56.200/24).
        """
        for node in self.nodes.values():
            addrs = node.addresses()
            for dev, iface in addrs:
                if str(iface.ip) != address or self.is_bridge_segment(node, dev):
                    continue
                if any(d == dev and a.network == subnet for d, a in addrs):
                    return node, dev
        return None


def parse_ipv4(text: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None
