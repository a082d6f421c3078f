"""SRC and DST of a trace: an instance, a node, or any IPv4 address (the outside).

An instance is named by id, name, display name, uuid or fixed IP (or, as a
source, by its floating address: its packets leave with it anyway); a node
by its host name; anything else that parses as IPv4 is either an address a
node holds (that node) or the outside. A destination keeps the address it
was given: a floating address is reached through the controller's DNAT,
which the trace then shows.
"""

from __future__ import annotations

import dataclasses

from novanet.explain.topology import Cloud, InstanceInfo, NodeView, TraceError, parse_ipv4

NODE = "node"
INSTANCE = "instance"
OUTSIDE = "outside"
FLOATING = "floating"  # a destination only: an associated floating address


@dataclasses.dataclass(frozen=True)
class Endpoint:
    kind: str  # node | instance | outside | floating
    label: str  # for people: "compute-1", "instance web1 (10.0.0.2)", "outside 8.8.8.8"
    address: str | None  # None for a node source: its routing picks it
    node: NodeView | None = None
    instance: InstanceInfo | None = None


def source(cloud: Cloud, text: str) -> Endpoint:
    """The sender named by ``text`` (TraceError when it names nothing known)."""
    if text in cloud.nodes:
        return Endpoint(NODE, text, None, node=cloud.nodes[text])
    inst = _instance(cloud, text)
    if inst is None:
        fip = cloud.db.floating_of(text)
        if fip is not None and fip.fixed_address:
            inst = cloud.db.instance_at(fip.fixed_address)
    if inst is not None:
        return _instance_endpoint(inst)
    address = parse_ipv4(text)
    if address is None:
        raise TraceError(_unknown("source", text, cloud))
    held = cloud.node_holding(address)
    if held is not None:
        return Endpoint(NODE, held[0].host, address, node=held[0])
    return Endpoint(OUTSIDE, f"outside {address}", address)


def destination(cloud: Cloud, text: str) -> Endpoint:
    """The receiver named by ``text``; its ``address`` is what the packet is sent to."""
    if text in cloud.nodes:
        node = cloud.nodes[text]
        address = node.default_address()
        if address is None:
            raise TraceError(f"node {text} has no IPv4 address to send to")
        return Endpoint(NODE, text, address, node=node)
    inst = _instance(cloud, text)
    if inst is not None:
        return _instance_endpoint(inst)
    address = parse_ipv4(text)
    if address is None:
        raise TraceError(_unknown("destination", text, cloud))
    fip = cloud.db.floating_of(address)
    owner = cloud.db.instance_at(fip.fixed_address) if fip and fip.fixed_address else None
    if owner is not None:  # the controller holds it; the packet is for the instance
        label = f"floating IP {address} (instance {owner.display_name})"
        return Endpoint(FLOATING, label, address, instance=owner)
    held = cloud.node_holding(address)
    if held is not None:
        return Endpoint(NODE, held[0].host, address, node=held[0])
    return Endpoint(OUTSIDE, f"outside {address}", address)


def _instance(cloud: Cloud, text: str) -> InstanceInfo | None:
    inst = cloud.db.instance(text)
    if inst is not None and not inst.address:
        raise TraceError(f"instance {text} has no fixed IP")
    return inst


def _instance_endpoint(inst: InstanceInfo) -> Endpoint:
    if not inst.host:
        raise TraceError(f"instance {inst.display_name} has no host")
    label = f"instance {inst.display_name} ({inst.address})"
    return Endpoint(INSTANCE, label, inst.address, instance=inst)


def _unknown(what: str, text: str, cloud: Cloud) -> str:
    nodes = ", ".join(sorted(cloud.nodes)) or "none"
    return f"unknown {what} {text!r}: not an instance, a node ({nodes}) or an IPv4 address"
