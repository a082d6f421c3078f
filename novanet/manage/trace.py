"""novanet-manage trace SRC DST: a packet's fate predicted from the nodes' live state.

The facts come from the daemons over RPC (``node_facts``: the controller's
novanet-network, every compute host's agent that reported in), each call
bounded in time; the instances, networks and floating IPs from the
database. A node that does not answer is left out, and a path that needs it
ends with verdict ``unknown`` naming it.

With ``--live`` a real probe is sent too and every node's kernel trace of
it printed after the prediction (:mod:`novanet.manage.trace_live`); the
verdict and the exit code stay the prediction's.

Exit codes: 0 delivered (request and reply), 1 dropped, 3 unknown; 2 for bad
input (an unknown SRC/DST, a bad port, a --live source that cannot send), as
every novanet-manage usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from oslo_config import cfg

from novanet.exception import UsageError
from novanet.explain import topology
from novanet.explain.packet import DELIVERED, DROPPED, Verdict
from novanet.explain.topology import COMPUTE_BINARY as COMPUTE
from novanet.explain.topology import NETWORK_BINARY as NETWORK
from novanet.explain.topology import DbView, TraceError
from novanet.explain.trace import PROTOCOLS, Result, make_packet, trace_result
from novanet.manage import common, trace_live
from novanet.manage.context import Context

LOG = logging.getLogger(__name__)
FACTS_TIMEOUT = 10  # seconds per node: gathering reads iptables-save, ipset and nft
EXIT = {DELIVERED: 0, DROPPED: 1}
EXIT_UNKNOWN = 3


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "trace", help="predict a packet's fate hop by hop (and its reply's) from the live state"
    )
    parser.add_argument("src", metavar="SRC", help="instance (name, uuid, IP), host or IPv4")
    parser.add_argument("dst", metavar="DST", help="instance, host, floating IP or IPv4")
    parser.add_argument("--proto", choices=PROTOCOLS, default="icmp", help="default: icmp")
    parser.add_argument("--port", metavar="N", help="destination port (tcp, udp)")
    parser.add_argument(
        "--live",
        action="store_true",
        help="also send a real probe and show each node's kernel trace (nft monitor trace)",
    )
    parser.add_argument(
        "--live-seconds", metavar="S", default="3", help="how long --live traces (default: 3)"
    )
    common.add_format(parser)
    parser.set_defaults(func=trace_cmd)


def trace_cmd(ctx: Context, args: argparse.Namespace) -> int:
    port = _port(args.port)
    live_seconds = trace_live.seconds(args.live_seconds) if args.live else 0.0
    try:
        make_packet(args.proto, port)  # bad input fails before the network is asked
    except TraceError as exc:
        raise UsageError(str(exc)) from None
    db = db_view(ctx)
    wanted, hosts = _daemons(ctx)
    facts = gather_facts(ctx.conf, wanted)
    silent = [h for h in (args.src, args.dst) if h in hosts and h not in facts]
    if silent:
        ctx.out.write(f"=> request unknown: no facts from {silent[0]} (its agent did not answer)\n")
        return EXIT_UNKNOWN
    try:
        result = trace_result(args.src, args.dst, args.proto, port, facts, db)
    except TraceError as exc:
        raise UsageError(str(exc)) from None
    live = None
    if args.live:  # a source that cannot send is refused before anything is printed or sent
        probe, calls = trace_live.plan(result, args.proto, port, facts, wanted)
        live = trace_live.gather(ctx.conf, probe, calls, live_seconds)
    if common.fmt(args) == "json":
        data = result.to_dict()
        if live is not None:
            data["live"] = live.to_dict()
            data["live_drops"] = live.drops()
            data["live_missing"] = live.missing
        ctx.out.write(json.dumps(data, indent=2) + "\n")
    else:
        ctx.out.write(render(result))
        if live is not None:
            ctx.out.write(live.render())
    return exit_code(result)


def exit_code(result: Result) -> int:
    verdicts = [result.request.verdict]
    if result.reply is not None:
        verdicts.append(result.reply.verdict)
    if any(v not in EXIT for v in verdicts):
        return EXIT_UNKNOWN
    return max(EXIT[v] for v in verdicts)


def render(result: Result) -> str:
    """One line per hop, then the verdict; the same for the reply."""
    lines = [f"trace {result.src.label} -> {result.dst.label}"]
    lines += _verdict_lines("request", result.request)
    if result.reply is not None:
        lines += _verdict_lines("reply", result.reply)
    return "\n".join(lines) + "\n"


def _verdict_lines(name: str, verdict: Verdict) -> list[str]:
    lines = [f"{name}:"]
    for hop in verdict.hops:
        rule = f"  `{hop.rule_text}`" if hop.rule_text else ""
        lines.append(f"  {hop.node:<14} {hop.where:<18} {hop.what}{rule}")
    tail = f": {verdict.reason}" if verdict.reason else ""
    lines.append(f"  => {name} {verdict.verdict}{tail}")
    return lines


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--port {text!r} is not a number") from None


def _daemons(ctx: Context) -> tuple[list[tuple[str, str]], set[str]]:
    """(host, binary) of the daemons to ask (heartbeat recent), and every host running one.

    A daemon that is down is not asked (it would only cost the timeout); a
    path through its node is then unknown, naming it.
    """
    from novanet.db import services

    down_time = ctx.conf.service_down_time
    rows = services.list_services(ctx.database())
    ours = [s for s in rows if s.binary in (NETWORK, COMPUTE)]
    wanted = sorted({(s.host, s.binary) for s in ours if s.is_up(down_time)})
    return wanted, {s.host for s in ours}


def db_view(ctx: Context) -> DbView:
    """Instances (with their fixed IP, MAC and port), networks and associated floating IPs."""
    from novanet.db import floating, instances
    from novanet.ipam import networks

    db = ctx.database()
    template = ctx.conf.instance_name_template
    rows = []
    for inst in instances.list_instances(db):
        ports = instances.ports_of(db, inst.uuid)
        port = ports[0] if ports else None
        rows.append(
            topology.InstanceInfo(
                id=inst.id,
                name=template % inst.id,
                display_name=inst.display_name,
                uuid=inst.uuid,
                host=inst.host,
                address=port.address if port else None,
                mac=port.mac if port else None,
                device=inst.vif_devname,
            )
        )
    nets = tuple(
        topology.NetworkInfo(n.cidr, n.bridge, n.gateway) for n in networks.list_networks(db)
    )
    fips = tuple(
        topology.FloatingInfo(f.address, f.fixed_address, f.interface, f.host)
        for f in floating.list_floating(db)
        if f.fixed_address
    )
    return DbView(tuple(rows), nets, fips)


def gather_facts(
    conf: cfg.ConfigOpts, wanted: list[tuple[str, str]], timeout: float = FACTS_TIMEOUT
) -> dict[str, dict[str, Any]]:
    """host -> facts of each (host, binary) that answers in time (diagnose's gathering).

    An unreachable broker is an error (exit 1); a daemon that does not
    answer is a warning, and the part of a path that needs it is unknown.
    One host running both daemons gives one view: the controller's facts
    with the agent's VIFs.
    """
    from novanet.manage import diagnose
    from novanet.rpc import transport as rpc

    rpc.check_broker(conf, float(conf.rpc_connect_timeout))
    found, unreachable = diagnose.gather(conf, wanted, timeout)
    for who, why in sorted(unreachable.items()):
        LOG.warning("no facts from %s: %s", who, why)
    out: dict[str, dict[str, Any]] = {}
    for facts in found.values():
        host = str(facts.get("host") or "")
        if host in out:
            merged = out[host] if out[host].get("binary") == NETWORK else facts
            other = facts if merged is out[host] else out[host]
            merged["vifs"] = merged.get("vifs") or other.get("vifs")
            out[host] = merged
        elif host:
            out[host] = facts
    return out
