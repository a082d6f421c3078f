"""novanet-manage diagnose [--host HOST] [--format json]: the seed's troubleshooting walk, done.

Every novanet-network and novanet-compute of the services table is asked for
its node's facts over RPC (``node_facts``, all at once, each call bounded by
``--timeout`` plus rpc_connect_timeout: a daemon that does not answer is a
problem line, never a hang); the database gives the intended state; the
checks themselves are pure (:mod:`novanet.explain.diagnose`). Exit 0 when
healthy, 1 when a problem was found.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from novanet.exception import NotFound, NovanetError
from novanet.explain import diagnose as checks
from novanet.manage import common
from novanet.manage.context import Context

FACT_BINARIES = (checks.NETWORK, checks.COMPUTE)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "diagnose", help="check every node against the intended state; one line per problem"
    )
    parser.add_argument("--host", help="check only this host")
    parser.add_argument(
        "--timeout", type=_seconds, default=10.0,
        help="seconds to wait for each daemon's facts (default 10)",
    )  # fmt: skip
    parser.add_argument(
        "--max-skew", type=_seconds, default=5.0,
        help="a node's clock further than this many seconds from ours is a problem (default 5)",
    )  # fmt: skip
    common.add_format(parser)
    parser.set_defaults(func=diagnose_cmd)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds in (0, 3600]")
    return value


def diagnose_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import services as services_db
    from novanet.ipam import networks as nets

    conf = ctx.conf
    db = ctx.database()
    rows = [s for s in services_db.list_services(db) if args.host in (None, s.host)]
    if args.host and not rows:
        raise NotFound(
            f"no service on host {args.host!r} has reported in (see 'novanet-manage service list')"
        )
    services = [
        checks.Service(
            s.host, s.binary, s.is_up(conf.service_down_time), s.disabled,
            f"{s.updated_at:%Y-%m-%d %H:%M:%S} UTC",
        )
        for s in rows
    ]  # fmt: skip
    networks = nets.list_networks(db)
    problems: list[checks.Problem] = []
    facts: dict[str, dict[str, Any]] = {}
    unreachable: dict[str, str] = {}
    broker = _broker_problem(conf)
    if broker is not None:
        problems.append(broker)
    else:
        wanted = [(s.host, s.binary) for s in services if s.up and s.binary in FACT_BINARIES]
        facts, unreachable = gather(conf, wanted, args.timeout)
    now = time.time()
    intended = _intended(ctx, services, networks, facts, args.max_skew)
    problems += checks.check(intended, facts, unreachable, now=now)
    problems += _metadata(conf, services)
    if args.host:
        problems = [p for p in problems if p.host == args.host]
    checked = len(services) + len(facts)
    if common.fmt(args) == "json":
        ctx.out.write(json.dumps(checks.report(problems, checked), indent=2) + "\n")
    else:
        for problem in problems:
            ctx.out.write(problem.line() + "\n")
    return 1 if problems else 0


def gather(
    conf: Any, wanted: list[tuple[str, str]], timeout: float
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each (host, binary)'s facts, asked all at once; the ones that did not answer, why."""
    from novanet.manage.rpcclient import NodeCall, ask_all

    def facts_of(host: str, binary: str) -> NodeCall:
        if binary == checks.NETWORK:
            return lambda network, _compute: network.node_facts(timeout=timeout)
        return lambda _network, compute: compute.node_facts(host, timeout=timeout)

    calls = {checks.key(host, binary): facts_of(host, binary) for host, binary in wanted}
    answers, unreachable = ask_all(conf, calls, timeout)
    facts = {key: answer for key, answer in answers.items() if isinstance(answer, dict)}
    for key in answers.keys() - facts.keys():
        unreachable[key] = "no facts in the answer"
    return facts, unreachable


def _broker_problem(conf: Any) -> checks.Problem | None:
    from novanet.rpc import transport as rpc

    try:
        rpc.check_broker(conf, float(conf.rpc_connect_timeout))
    except NovanetError as exc:
        return checks.Problem(
            conf.host, "RabbitMQ", f"unreachable: {exc}",
            "start RabbitMQ or fix transport_url: no daemon can be asked for its facts",
        )  # fmt: skip
    return None


def _intended(
    ctx: Context,
    services: list[checks.Service],
    networks: list[Any],
    facts: dict[str, dict[str, Any]],
    max_skew: float,
) -> checks.Intended:
    """What should be: bridges, dnsmasq's argv and hostsfile per bridge, leased addresses."""
    from novanet.dhcp import argv as dnsmasq_argv
    from novanet.dhcp import hostsfile
    from novanet.ipam import queries
    from novanet.network import served
    from novanet.network.host import dhcp_hosts

    conf = ctx.conf
    db = ctx.database()
    bridges = []
    for bridge, group in served.by_bridge(networks).items():
        first = group[0]
        bridges.append(
            checks.Bridge(
                bridge,
                first.bridge_interface or conf.flat_interface,
                f"{first.dhcp_server}/{first.cidr.split('/')[1]}",
            )
        )
    controllers = [s.host for s in services if s.binary == checks.NETWORK]
    argvs: dict[str, list[str]] = {}
    hosts_lines: dict[str, list[str]] = {}
    controller_facts = next((f for k, f in facts.items() if k.endswith("/" + checks.NETWORK)), None)
    running = (controller_facts or {}).get("dnsmasq") or {}
    hostsdir = any(a.startswith("--dhcp-hostsdir=") for a in running.get("argv", []))
    domain = dnsmasq_argv.check_domain(conf.dhcp_domain or "")
    for host in controllers[:1]:
        for bridge, dhcp in served.dhcp_networks(served.served(networks, host)).items():
            argvs[bridge] = list(dnsmasq_argv.build_command(conf, dhcp, hostsdir=hostsdir).argv)
            hosts = dhcp_hosts(db, conf.instance_name_template, [n.id for n in dhcp.subnets])
            text = hostsfile.hostsfile_text(
                hostsfile.select_hosts(hosts, on_reject=lambda h, why: None),
                domain,
                bool(conf.use_single_default_gateway),
            )
            hosts_lines[bridge] = text.splitlines()
    leased = frozenset(r.address for r in queries.list_fixed_ips(db) if r.leased)
    served_bridges = {
        host: frozenset(n.bridge for n in served.served(networks, host)) for host in controllers
    }
    return checks.Intended(
        services=services,
        bridges=bridges,
        dnsmasq_argv=argvs,
        hostsfile=hosts_lines,
        leased=leased,
        served=served_bridges,
        compute_bridge=conf.flat_network_bridge or None,
        bridge_check_interval=int(conf.bridge_check_interval),
        dnsmasq_check_interval=int(conf.dnsmasq_check_interval),
        max_skew=max_skew,
    )


def _metadata(conf: Any, services: list[checks.Service]) -> list[checks.Problem]:
    """novanet-metadata answers on metadata_host:metadata_port (when it has reported in)."""
    import socket

    problems = []
    for svc in services:
        if svc.binary != "novanet-metadata" or not svc.up:
            continue
        address = (conf.metadata_host, int(conf.metadata_port))
        try:
            socket.create_connection(address, timeout=3).close()
        except OSError as exc:
            problems.append(
                checks.Problem(
                    svc.host, "metadata",
                    f"{address[0]}:{address[1]} unreachable ({exc.strerror or exc})",
                    f"check novanet-metadata on {svc.host} and its metadata_listen",
                )
            )  # fmt: skip
    return problems
