"""A packet's fate through the cloud, hop by hop, and its reply's (``novanet-manage trace``).

The walk follows the hooks a Linux router and bridge really run, on every
node the packet crosses, with the rules actually in each kernel (the nodes'
facts) evaluated by :mod:`novanet.explain.iptables_eval`:

- a node's own packet: routing decision, raw/mangle/nat/filter OUTPUT (a
  DNAT there routes again), mangle/nat POSTROUTING;
- a packet arriving at a node: raw/mangle/nat PREROUTING, routing, then
  mangle/filter INPUT when the address is the node's own, else (ip_forward
  on) mangle/filter FORWARD and mangle/nat POSTROUTING;
- a frame crossing a compute host's bridge (br_netfilter on, which novanet's
  compute hosts rely on): the anti-spoofing table for frames from an
  instance port (:mod:`.bridge_eval`), then iptables' PREROUTING, FORWARD
  (``-i br100 -o br100`` and the physdev ports) and POSTROUTING;
- instances run no firewall of their own; an outside host (an address no
  node holds) answers what reaches it and has no route into a fixed network.

The nat table sees only a connection's first packet (NEW). Every node keeps
its own conntrack entries for the walk (:class:`Conntrack`), so the reply is
ESTABLISHED where the request passed and gets the reverse NAT there (the
reverse SNAT before routing, the reverse DNAT at POSTROUTING or INPUT),
exactly the nodes' kernels' bookkeeping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from novanet.explain import endpoints, paths
from novanet.explain.endpoints import Endpoint
from novanet.explain.packet import DELIVERED, PROTOCOLS, Packet, Verdict
from novanet.explain.topology import Cloud, DbView, TraceError

EPHEMERAL_PORT = 40000  # the request's source port for tcp and udp


@dataclasses.dataclass
class Result:
    """The request's verdict, the reply's (None when the request never arrived)."""

    request: Verdict
    reply: Verdict | None
    src: Endpoint
    dst: Endpoint

    def to_dict(self) -> dict[str, Any]:
        out = self.request.to_dict()
        out["src"] = self.src.label
        out["dst"] = self.dst.label
        out["reply"] = self.reply.to_dict() if self.reply is not None else None
        return out


def make_packet(proto: str, port: int | None) -> Packet:
    """The request's packet (addresses filled in by the walk); TraceError on bad input."""
    if proto not in PROTOCOLS:
        raise TraceError(f"unknown protocol {proto!r}: use one of {', '.join(PROTOCOLS)}")
    if proto == "icmp":
        if port is not None:
            raise TraceError("--port is for tcp and udp, not icmp")
        return Packet(src="", dst="", proto="icmp", icmp_type=8)
    if port is None:
        raise TraceError(f"{proto} needs --port")
    if not 1 <= port <= 65535:
        raise TraceError(f"port {port} is out of range (1-65535)")
    return Packet(src="", dst="", proto=proto, sport=EPHEMERAL_PORT, dport=port, icmp_type=None)


def trace(
    src: str,
    dst: str,
    proto: str,
    port: int | None,
    facts_by_host: Mapping[str, Mapping[str, Any]],
    db_view: DbView,
) -> tuple[Verdict, Verdict | None]:
    """The request's and the reply's verdicts (interface (3) of issue 15)."""
    result = trace_result(src, dst, proto, port, facts_by_host, db_view)
    return result.request, result.reply


def trace_result(
    src: str,
    dst: str,
    proto: str,
    port: int | None,
    facts_by_host: Mapping[str, Mapping[str, Any]],
    db_view: DbView,
) -> Result:
    """:func:`trace` with the resolved endpoints (the CLI prints them)."""
    cloud = Cloud(facts_by_host, db_view)
    packet = make_packet(proto, port)
    source = endpoints.source(cloud, src)
    target = endpoints.destination(cloud, dst)
    assert target.address is not None  # a destination always has one
    if source.kind != endpoints.NODE and source.address == target.address:
        raise TraceError(f"{src} and {dst} are the same address")
    packet = packet.replace(src=source.address or "", dst=target.address)
    walker = paths.Walker(cloud)
    request, arrived = walker.run(source, packet)
    reply = None
    if request.verdict == DELIVERED and arrived is not None:
        receiver, final = arrived
        reply, _ = walker.run(receiver, final.reply())
    return Result(request, reply, source, target)
