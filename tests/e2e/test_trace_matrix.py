"""Acceptance of ``novanet-manage trace`` (issue 15 item 4): its verdicts equal reality.

One lab, allow_same_net_traffic=false, groups ``web`` (tcp 22 and icmp from
anywhere) and ``ssh`` (tcp 22 only): web1 (web, floating 192.168.56.230)
and ssh1 (ssh) on compute-1, web2 (web) on compute-2. Every node, the
outside gateway and every guest listen on tcp 22 (open: the groups allow
it) and tcp 23 (closed: no group allows it, but a listener runs, so only
the network can stop it). For every ordered pair of {controller, both
compute hosts, each instance, the outside gateway} and every destination
(the same, plus web1's floating address) x {icmp, tcp 22, tcp 23}, the real
outcome (ping -c1 -W2, a TCP connect with a 2 s timeout, from inside the
source's namespace) is compared with what ``novanet-manage trace --format
json`` predicts on the controller (request and reply delivered). The matrix
is printed (rows sources, columns destinations, cells icmp/22/23); every
disagreement is listed with trace's hops.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from novanet.lab.cloud import Cloud
from novanet.lab.instances import Instance, guest_prefix, run_status
from tests.e2e.helpers import E2E, running_cloud, wait_for

pytestmark = E2E

FLOAT = "192.168.56.230"
GATEWAY = "192.168.56.101"
PROBES = ("icmp", "tcp 22", "tcp 23")
WORKERS = 4  # a 2-core machine shared with other labs


@dataclasses.dataclass(frozen=True)
class Place:
    """A matrix row or column: where probes run from, and how trace names it."""

    label: str
    node: str  # the lab node the probe runs in
    prefix: tuple[str, ...]  # argv prefix entering a guest's namespace
    ref: str  # trace's SRC/DST
    address: str


@dataclasses.dataclass
class World:
    cloud: Cloud
    sources: list[Place]
    destinations: list[Place]


def _boot(cloud: Cloud, name: str, host: str, group: str, floating: str | None = None) -> Instance:
    args = ["instance", "create", "--name", name, "--host", host, "--vif-type", "netns",
            "--security-group", group]  # fmt: skip
    if floating:
        args += ["--floating-ip", floating]
    inst = Instance.from_row(cloud.novanet.manage_json(*args)[0])
    cloud.instances.start_guest(inst)
    return inst


def _listen(cloud: Cloud, node: str, name: str, prefix: list[str]) -> None:
    for port in (22, 23):
        cloud.lab.start_process(node, f"listen-{name}-{port}", [
            *prefix, "socat", f"TCP-LISTEN:{port},fork,reuseaddr", f"SYSTEM:echo open-{port}",
        ])  # fmt: skip


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_cloud({"allow_same_net_traffic": "false"}, metadata=False) as cloud:
        manage = cloud.novanet.manage
        manage("secgroup", "create", "web")
        manage("secgroup", "create", "ssh")
        manage("secgroup", "add-rule", "web", "tcp", "22", "22", "0.0.0.0/0")
        manage("secgroup", "add-rule", "web", "icmp", "-1", "-1", "0.0.0.0/0")
        manage("secgroup", "add-rule", "ssh", "tcp", "22", "22", "0.0.0.0/0")
        guests = [
            _boot(cloud, "web1", "compute-1", "web", FLOAT),
            _boot(cloud, "ssh1", "compute-1", "ssh"),
            _boot(cloud, "web2", "compute-2", "web"),
        ]
        topo = cloud.lab.topology
        places = [
            Place(n, n, (), n, topo.node(n).management_ip)
            for n in ("controller-1", "compute-1", "compute-2")
        ]
        places += [
            Place(g.display_name, g.host, tuple(guest_prefix(g)), g.display_name, str(g.address))
            for g in guests
        ]
        places.append(Place("gateway", "gateway", (), GATEWAY, GATEWAY))
        for place in places:
            _listen(cloud, place.node, place.label, list(place.prefix))
        world = World(cloud, places, [*places, Place("web1-fip", "", (), FLOAT, FLOAT)])
        controller = places[0]  # reaches every place on tcp 22 (the groups open it)
        assert wait_for(lambda: all(connects(world, controller, p, 22) for p in places), 10)
        yield world


def connects(world: World, src: Place, dst: Place, port: int) -> bool:
    argv = [*src.prefix, "timeout", "4", "socat", "-T", "2", "STDIO",
            f"TCP:{dst.address}:{port},connect-timeout=2"]  # fmt: skip
    out, _, _ = run_status(world.cloud.lab.execute, src.node, argv, timeout=20)
    return out.strip() == f"open-{port}"


def real(world: World, src: Place, dst: Place, probe: str) -> bool:
    if probe == "icmp":
        argv = [*src.prefix, "ping", "-n", "-c1", "-W2", dst.address]
        return run_status(world.cloud.lab.execute, src.node, argv, timeout=20)[2] == 0
    return connects(world, src, dst, int(probe.split()[1]))


def predicted(world: World, src: Place, dst: Place, probe: str) -> dict[str, Any]:
    proto, _, port = probe.partition(" ")
    args = ["trace", src.ref, dst.ref, "--proto", proto, "--format", "json"]
    if port:
        args += ["--port", port]
    result: dict[str, Any] = json.loads(world.cloud.novanet.manage(*args, check=False))
    return result


def reaches(trace: dict[str, Any]) -> bool:
    reply = trace.get("reply") or {}
    return trace["verdict"] == "delivered" and reply.get("verdict") == "delivered"


def matrix(world: World, cells: dict[tuple[str, str, str], tuple[bool, bool]]) -> str:
    """Rows sources, columns destinations; "ok"/"x" per probe, "!" where trace disagrees."""
    width = 14
    lines = ["src \\ dst".ljust(width) + "".join(d.label.ljust(width) for d in world.destinations)]
    for s in world.sources:
        row = s.label.ljust(width)
        for d in world.destinations:
            if (s.label, d.label, PROBES[0]) not in cells:
                row += "-".ljust(width)
                continue
            marks = []
            for probe in PROBES:
                got, said = cells[(s.label, d.label, probe)]
                marks.append(("ok" if got else "x") + ("" if got == said else "!"))
            row += "/".join(marks).ljust(width)
        lines.append(row)
    return "\n".join(lines)


def test_trace_agrees_with_reality_on_the_whole_matrix(world: World) -> None:
    keys = [
        (s, d, probe)
        for s in world.sources
        for d in world.destinations
        if d.label != s.label
        for probe in PROBES
    ]
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(lambda k: real(world, *k), keys))
        traces = list(pool.map(lambda k: predicted(world, *k), keys))
    cells = {}
    wrong = []
    for (s, d, probe), got, trace in zip(keys, outcomes, traces, strict=True):
        cells[(s.label, d.label, probe)] = (got, reaches(trace))
        if got != reaches(trace):
            hops = "\n".join(f"      {h['node']} {h['where']}: {h['what']}" for h in trace["hops"])
            reply = trace.get("reply") or {}
            wrong.append(
                f"{s.label} -> {d.label} {probe}: really {'ok' if got else 'x'}, trace says "
                f"{trace['verdict']}/{reply.get('verdict', '-')} {trace['reason']} "
                f"{reply.get('reason', '')}\n{hops}"
            )
    table = matrix(world, cells)
    print(f"\n{table}\n")
    agree = len(keys) - len(wrong)
    print(f"agreement: {agree}/{len(keys)}")
    assert len(keys) == 7 * 7 * 3
    # the matrix has both outcomes for every probe, so agreeing is not trivial
    for probe in PROBES:
        column = {got for (_, _, p), (got, _) in cells.items() if p == probe}
        assert column == {True, False}, probe
    assert not wrong, f"{len(wrong)} disagreement(s):\n" + "\n".join(wrong) + f"\n{table}"


def test_the_seeds_case_explained_by_the_cli(world: World) -> None:
    """compute-1 cannot ping an instance the groups do not open to icmp: its own OUTPUT drops it."""
    manage = world.cloud.novanet
    argv = [manage.program("novanet-manage"), "--flagfile", manage.conf("controller-1"),
            "trace", "compute-1", "ssh1"]  # fmt: skip
    out, _, code = run_status(world.cloud.lab.execute, "controller-1", argv, timeout=60)
    assert code == 1
    assert out.splitlines()[-1].startswith(
        "  => request dropped: dropped at compute-1 filter nova-compute-sg-fallback rule 1 "
        "`-A nova-compute-sg-fallback -j DROP` (OUTPUT -> nova-filter-top -> nova-compute-local"
    )
    src = next(p for p in world.sources if p.label == "compute-1")
    dst = next(p for p in world.sources if p.label == "ssh1")
    ping = run_status(world.cloud.lab.execute, src.node, ["busybox", "ping", "-c1", "-W2",
                                                          dst.address], timeout=20)  # fmt: skip
    assert "Operation not permitted" in ping[0] + ping[1]
