"""The path walker: from a sender to a receiver, node by node, segment by segment.

See :mod:`.trace` for the model. One :class:`Walker` serves a request and
then its reply, so the conntrack entries the request made on each node are
there when the reply passes.
"""

from __future__ import annotations

import ipaddress

from novanet.explain import endpoints
from novanet.explain.bridge_eval import AntiSpoof
from novanet.explain.endpoints import Endpoint
from novanet.explain.hooks import Conntrack, Flow, Hooks, Stop
from novanet.explain.packet import DELIVERED, DROPPED, UNKNOWN, Hop, Packet, Verdict
from novanet.explain.topology import Cloud, InstanceInfo, NodeView

MAX_STEPS = 64  # segments crossed; a routing loop ends here
Arrival = tuple[Endpoint, Packet]  # who received it, and the packet as it arrived


class Walker:
    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.conntrack = Conntrack()
        self.hops: list[Hop] = []
        self.hooks = Hooks(self.hops)
        self.steps = 0

    def run(self, sender: Endpoint, p: Packet) -> tuple[Verdict, Arrival | None]:
        self.hops = []
        self.hooks.hops = self.hops
        self.steps = 0
        try:
            arrival = self._send(sender, p)
        except Stop as stop:
            return Verdict(stop.verdict, self.hops, stop.reason), None
        return Verdict(DELIVERED, self.hops, ""), arrival

    def _hop(self, node: str, where: str, what: str) -> None:
        self.hops.append(Hop(node, where, what))

    def _send(self, sender: Endpoint, p: Packet) -> Arrival:
        if sender.kind == endpoints.NODE:
            assert sender.node is not None
            return self._local_out(sender.node, p)
        if sender.kind == endpoints.INSTANCE:
            assert sender.instance is not None
            return self._instance_out(sender.instance, p)
        return self._outside_out(str(sender.address), p)

    # -- a node's own stack ---------------------------------------------------------

    def _local_out(self, node: NodeView, p: Packet) -> Arrival:
        if not p.src:  # the routing decision picks a node's source address
            dev, gateway = self._route(node, p, quiet=True)
            p = p.replace(src=p.dst if dev == "lo" else self._source(node, dev, gateway, p.dst))
        p, flow = self._ct_enter(node.host, p)
        dev, gateway = self._route(node, p)
        self._hop(node.host, "OUTPUT", f"{p.describe()}")
        ctx = self.hooks.context(node, out_iface=dev)
        before = p.dst
        p = self.hooks.run(node, "OUTPUT", ("raw", "mangle", "nat"), p, ctx)
        if p.dst != before:
            dev, gateway = self._route(node, p)
            ctx = self.hooks.context(node, out_iface=dev)
        p = self.hooks.run(node, "OUTPUT", ("filter",), p, ctx)
        if dev == "lo":
            return self._local_in(node, "lo", p, flow, None)
        return self._post(node, dev, gateway, p, flow)

    def _receive(self, node: NodeView, dev: str, p: Packet, physdev: str | None = None) -> Arrival:
        self._step()
        new, flow = self.conntrack.enter(node.host, p)
        port = f" (port {physdev})" if physdev else ""
        seen = p.replace(ctstate=new.ctstate)
        self._hop(node.host, dev, f"arrives on {dev}{port}: {seen.describe()}")
        if new.dst != p.dst:
            self._hop(
                node.host, "conntrack", f"reply: destination {p.dst} -> {new.dst} (reverse SNAT)"
            )
        p = new
        physdev = physdev if node.bridge_netfilter() else None
        ctx = self.hooks.context(node, in_iface=dev, physdev_in=physdev)
        before = p.dst
        p = self.hooks.run(node, "PREROUTING", ("raw", "mangle", "nat"), p, ctx)
        if node.holds(p.dst) is not None or ipaddress.IPv4Address(p.dst).is_loopback:
            self._hop(node.host, "routing", f"{p.dst} is local: INPUT")
            return self._local_in(node, dev, p, flow, physdev)
        if not node.forwarding():
            raise Stop(
                DROPPED,
                f"dropped at {node.host}: {p.dst} is not local and "
                "net.ipv4.ip_forward is off (not a router)",
            )
        out, gateway = self._route(node, p)
        if p.dst != before and physdev is not None and out == dev:
            return self._bridged_dnat(node, dev, physdev, p, flow)
        ctx = self.hooks.context(node, in_iface=dev, out_iface=out, physdev_in=physdev)
        p = self.hooks.run(node, "FORWARD", ("mangle", "filter"), p, ctx)
        return self._post(node, out, gateway, p, flow)

    def _local_in(
        self, node: NodeView, dev: str, p: Packet, flow: Flow, physdev: str | None
    ) -> Arrival:
        ctx = self.hooks.context(node, in_iface=dev, physdev_in=physdev)
        p = self.hooks.run(node, "INPUT", ("mangle", "nat", "filter"), p, ctx)
        p = self._ct_leave(flow, p)
        self._hop(node.host, "INPUT", f"delivered to {node.host}: {p.describe()}")
        return Endpoint(endpoints.NODE, node.host, p.dst, node=node), p

    def _post(
        self, node: NodeView, dev: str, gateway: str | None, p: Packet, flow: Flow
    ) -> Arrival:
        ctx = self.hooks.context(node, out_iface=dev)
        p = self.hooks.run(node, "POSTROUTING", ("mangle", "nat"), p, ctx)
        p = self._ct_leave(flow, p)
        return self._emit(node, dev, gateway or p.dst, p)

    def _route(self, node: NodeView, p: Packet, quiet: bool = False) -> tuple[str, str | None]:
        if node.holds(p.dst) is not None or ipaddress.IPv4Address(p.dst).is_loopback:
            return "lo", None
        route = node.route(p.dst)
        if route is None:
            raise Stop(DROPPED, f"dropped at {node.host}: no route to {p.dst}")
        link = node.link(route.dev)
        if link is not None and not link.get("up", True):
            raise Stop(DROPPED, f"dropped at {node.host}: {route.dev} is down ({route.describe()})")
        if not quiet:
            self._hop(node.host, "routing", route.describe())
        return route.dev, route.gateway

    def _source(self, node: NodeView, dev: str, gateway: str | None, dst: str) -> str:
        route = node.route(dst)
        src = node.source_for(route, dst) if route else None
        if src is None:
            raise Stop(DROPPED, f"dropped at {node.host}: {dev} has no address to send from")
        return src

    # -- segments ---------------------------------------------------------------------

    def _emit(self, node: NodeView, dev: str, next_hop: str, p: Packet) -> Arrival:
        bridge = self.cloud.is_bridge_segment(node, dev)
        if bridge:
            self._hop(node.host, dev, f"out by {bridge} to {next_hop}")
            return self._flat(bridge, next_hop, p, from_host=node.host)
        subnet = self.cloud.subnet_of(node, dev, next_hop)
        if subnet is None:  # a link route (169.254.0.0/16 dev eth1): the device's own segment
            subnet = next(
                (a.network for d, a in node.addresses() if d == dev and a.network.prefixlen < 32),
                None,
            )
        held = self.cloud.holders_on_subnet(subnet, next_hop) if subnet else None
        self._hop(node.host, dev, f"out by {dev} to {next_hop}")
        if held is not None:
            return self._receive(held[0], held[1], p)
        return self._outside_in(next_hop, p, subnet)

    def _flat(self, bridge: str, next_hop: str, p: Packet, from_host: str) -> Arrival:
        """The frame is on the flat segment (it left ``from_host``'s uplink or bridge)."""
        self._step()
        target = self.cloud.db.instance_at(next_hop)
        if target is not None:
            host = self._host_of(target)
            port = self._vif(host, target)
            if target.host != from_host:
                p = self._cross(host, bridge, self._uplink(host, bridge), port, p)
            return self._deliver(target, p)
        for node in self.cloud.nodes.values():
            if node.holds(next_hop) == bridge:
                return self._receive(node, bridge, p, physdev=self._uplink(node, bridge))
        raise Stop(
            DROPPED,
            f"dropped on {bridge}: nobody answers ARP for {next_hop} "
            "(no instance or node holds it)",
        )

    def _instance_out(self, inst: InstanceInfo, p: Packet) -> Arrival:
        net = self.cloud.db.network_of(str(inst.address))
        if net is None:
            raise Stop(UNKNOWN, f"unknown: {inst.address} of {inst.display_name} is in no network")
        host = self._host_of(inst)
        if ipaddress.IPv4Address(p.dst) in ipaddress.IPv4Network(net.cidr, strict=False):
            next_hop = p.dst
        elif net.gateway:
            next_hop = net.gateway
        else:
            raise Stop(DROPPED, f"dropped at {inst.display_name}: no gateway on {net.cidr}")
        self._hop(inst.display_name, "eth0", f"{p.describe()}, next hop {next_hop}")
        port = self._vif(host, inst)
        spoof = AntiSpoof(host.facts.get("nft_bridge")).check(
            port, inst.mac, p.src, p.sport if p.proto == "udp" else None
        )
        if spoof.verdict != "ACCEPT":
            verdict = DROPPED if spoof.verdict == "DROP" else UNKNOWN
            raise Stop(
                verdict,
                f"{verdict} at {host.host} bridge novanet {spoof.chain or ''}: "
                f"{spoof.reason} (port {port})",
            )
        if spoof.chain:
            self._hop(host.host, port, f"bridge novanet: accept ({spoof.reason})")
        bridge = net.bridge
        target = self.cloud.db.instance_at(next_hop)
        if target is not None and target.host == inst.host:
            p = self._cross(host, bridge, port, self._vif(host, target), p)
            return self._deliver(target, p)
        if host.holds(next_hop) == bridge:
            return self._receive(host, bridge, p, physdev=port)
        p = self._cross(host, bridge, port, self._uplink(host, bridge), p)
        return self._flat(bridge, next_hop, p, from_host=host.host)

    def _cross(self, host: NodeView, bridge: str, port_in: str, port_out: str, p: Packet) -> Packet:
        """A frame bridged from one port to another on ``host`` (FORWARD, with br_netfilter)."""
        self._hop(host.host, bridge, f"bridged {port_in} -> {port_out}")
        if not host.bridge_netfilter():
            return p
        p, flow = self._ct_enter(host.host, p)
        ctx = self.hooks.context(
            host,
            in_iface=bridge,
            out_iface=bridge,
            physdev_in=port_in,
            physdev_out=port_out,
            bridged=True,
        )
        before = p.dst
        p = self.hooks.run(host, "PREROUTING", ("raw", "mangle", "nat"), p, ctx)
        if p.dst != before:
            raise Stop(UNKNOWN, f"unknown at {host.host}: a bridged packet DNATed to {p.dst}")
        p = self.hooks.run(host, "FORWARD", ("mangle", "filter"), p, ctx)
        p = self.hooks.run(host, "POSTROUTING", ("mangle", "nat"), p, ctx)
        return self._ct_leave(flow, p)

    def _bridged_dnat(
        self, node: NodeView, bridge: str, port_in: str, p: Packet, flow: Flow
    ) -> Arrival:
        """br_netfilter bridges (not routes) a packet DNATed back out of its ingress bridge."""
        target = self.cloud.db.instance_at(p.dst)
        port_out = (
            self._vif(node, target)
            if target is not None and target.host == node.host
            else self._uplink(node, bridge)
        )
        if port_out == port_in:
            raise Stop(
                DROPPED,
                (
                    f"dropped at {node.host} bridge {bridge}: the packet came in by {port_in} and "
                    f"was DNATed to {p.dst}, which {bridge} reaches by the same port; with "
                    "br_netfilter (bridge-nf-call-iptables=1) such a packet is bridged, not "
                    "routed, and a bridge never sends a frame back out of its ingress port"
                ),
            )
        p = self._cross(node, bridge, port_in, port_out, p)
        p = self._ct_leave(flow, p)
        if target is not None and target.host == node.host:
            return self._deliver(target, p)
        return self._flat(bridge, p.dst, p, from_host=node.host)

    def _host_of(self, inst: InstanceInfo) -> NodeView:
        host = self.cloud.nodes.get(str(inst.host))
        if host is None:
            raise Stop(
                UNKNOWN,
                f"unknown: no facts from {inst.host}, the host of instance "
                f"{inst.display_name} (its agent did not answer)",
            )
        return host

    def _vif(self, host: NodeView, inst: InstanceInfo) -> str:
        port = host.vif_port(inst)
        if not port or host.link(port) is None:
            raise Stop(
                DROPPED,
                f"dropped at {host.host}: instance {inst.display_name} has "
                f"no port on the bridge ({port or 'no device'})",
            )
        return port

    def _uplink(self, host: NodeView, bridge: str) -> str:
        if host.link(bridge) is None:
            raise Stop(DROPPED, f"dropped at {host.host}: no bridge {bridge}")
        vifs = {str(v.get("devname")) for v in host.facts.get("vifs") or []}
        vifs |= {str(i.device) for i in self.cloud.db.instances if i.host == host.host}
        for name in host.bridge_ports(bridge):
            if name not in vifs:
                link = host.link(name) or {}
                if not link.get("up", True):
                    raise Stop(DROPPED, f"dropped at {host.host}: {bridge}'s uplink {name} is down")
                return name
        raise Stop(
            DROPPED,
            f"dropped at {host.host}: {bridge} has no uplink (flat_interface is not enslaved)",
        )

    def _deliver(self, inst: InstanceInfo, p: Packet) -> Arrival:
        self._hop(
            inst.display_name, "eth0", f"delivered to instance {inst.display_name}: {p.describe()}"
        )
        return endpoints.Endpoint(endpoints.INSTANCE, inst.display_name, p.dst, instance=inst), p

    # -- the outside ------------------------------------------------------------------

    def _outside_out(self, address: str, p: Packet) -> Arrival:
        self._no_route_to_fixed(address, p)
        subnet = self.cloud.outside_subnet(address)
        if subnet is not None and ipaddress.IPv4Address(p.dst) in subnet:
            held = self.cloud.holders_on_subnet(subnet, p.dst)
            self._hop(f"outside {address}", str(subnet), f"{p.describe()}, on-link")
            if held is not None:
                return self._receive(held[0], held[1], p)
            return self._outside_arrival(p)
        ctl, public = self.cloud.controller, self.cloud.public_interface()
        if ctl is None or public is None:
            raise Stop(UNKNOWN, "unknown: no controller facts (the outside enters through it)")
        self._hop(
            f"outside {address}",
            "-",
            f"{p.describe()}, enters through {ctl.host} {public} (single-host model)",
        )
        return self._receive(ctl, public, p)

    def _outside_in(self, host: str, p: Packet, subnet: ipaddress.IPv4Network | None) -> Arrival:
        self._step()
        if p.dst == host:
            return self._outside_arrival(p)
        self._no_route_to_fixed(host, p)
        if subnet is not None and ipaddress.IPv4Address(p.dst) in subnet:
            held = self.cloud.holders_on_subnet(subnet, p.dst)
            if held is not None:
                return self._receive(held[0], held[1], p)
        self._hop(f"outside {host}", "-", f"leaves the cloud through {host}")
        return self._outside_arrival(p)

    def _outside_arrival(self, p: Packet) -> Arrival:
        p = p.replace(ctstate=p.ctstate.split(",")[0])  # SNAT/DNAT were the last node's view
        self._hop(f"outside {p.dst}", "-", f"delivered (outside, no novanet node): {p.describe()}")
        return Endpoint(endpoints.OUTSIDE, f"outside {p.dst}", p.dst), p

    def _no_route_to_fixed(self, outside: str, p: Packet) -> None:
        net = self.cloud.db.network_of(p.dst)
        if net is not None:
            raise Stop(
                DROPPED,
                f"dropped at outside {outside}: no route to the fixed network "
                f"{net.cidr} (fixed addresses are private to the cloud; from outside, an "
                "instance is reached through a floating IP)",
            )

    def _ct_enter(self, node: str, p: Packet) -> tuple[Packet, Flow]:
        """Conntrack's lookup; a reply to a SNATed connection gets its destination back."""
        new, flow = self.conntrack.enter(node, p)
        if new.dst != p.dst:
            self._hop(node, "conntrack", f"reply: destination {p.dst} -> {new.dst} (reverse SNAT)")
        return new, flow

    def _ct_leave(self, flow: Flow, p: Packet) -> Packet:
        """The connection recorded; a reply to a DNATed connection gets its source back."""
        new = self.conntrack.leave(flow, p)
        if new.src != p.src:
            self._hop(flow.node, "conntrack", f"reply: source {p.src} -> {new.src} (reverse DNAT)")
        return new

    def _step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise Stop(UNKNOWN, f"unknown: more than {MAX_STEPS} segments crossed (a loop?)")
