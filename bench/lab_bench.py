"""End to end in the lab: `instance create` to the guest's DHCP lease (root).

Run: sudo .venv/bin/python -m bench.lab_bench [--instances 200] [--quick]

Builds a lab of its own (novanet-lab's datacenter in namespaces, the real
daemons, its own RabbitMQ vhost) under a private base directory and removes it
at the end, also after a failure, Ctrl-C or SIGTERM. Every instance uses the
netns VIF and gets busybox udhcpc in its namespace, as `novanet-lab boot` does.

1. sequential: S boots on compute-1, each `novanet-manage instance create` (the
   CLI, what an operator waits for), then the guest's DHCP client until its lease.
   Goal: median create -> lease at most 1 s.
2. concurrent: N instances across compute-1 and compute-2 from W workers (each
   creates, then starts its guest's DHCP); every guest must hold exactly the
   address the database gave it, with no duplicates.
3. first vs 200th: compute-1 filled up to N instances, then K creates; their
   cost against compute-1's first K (CLI), and the same through the RPC API
   from an open connection (the server's share).
4. where the time goes: each sequential boot's timeline from the daemons' INFO
   logs, and novanet-manage's start-up (python -X importtime) in the lab.

The network is the seed's 10.0.0.0/24 unless the run needs more addresses than
it has: the full run boots about 320 instances, on 10.0.0.0/23.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import math
import os
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

from bench.common import machine, median, percentile, table, verdict
from novanet.lab import daemons
from novanet.lab.daemons import Novanet
from novanet.lab.guest import GuestLease
from novanet.lab.instances import Instance, Instances
from novanet.lab.lab import Lab

C1, C2 = "compute-1", "compute-2"
GOAL_TOTAL = 1.0  # seconds, median create -> lease
SAME_COST = 1.2  # "the 200th costs the same": last K median at most 1.2 x the first K
DHCP_TIMEOUT = 30.0
LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) \S+ INFO \S+: (.*)$")
EVENTS = {  # INFO lines of the daemons that date a step of one instance
    "plug": re.compile(r"creating veth \S+ \(\S+\) -> (instance-[0-9a-f]+):"),
    "plugged": re.compile(r"plugged (instance-[0-9a-f]+) "),
    "reply": re.compile(r"instance (instance-[0-9a-f]+) \(.*\) on "),
}


@dataclasses.dataclass
class Boot:
    name: str
    host: str
    via: str  # "cli" (novanet-manage) or "rpc" (NetworkAPI from an open connection)
    started: float  # wall clock, to line up with the daemons' log stamps
    create_s: float = math.nan
    lease_s: float = math.nan
    instance: Instance | None = None
    lease: GuestLease | None = None
    error: str | None = None

    @property
    def total_s(self) -> float:
        return self.create_s + self.lease_s


def say(text: str) -> None:
    """Progress on stderr (stdout is the markdown section)."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.0f}"


def stats(values: Sequence[float]) -> list[str]:
    return [ms(median(values)), ms(percentile(values, 0.9)), ms(max(values, default=math.nan))]


class BenchNovanet(Novanet):
    """novanet in the lab with a network sized for the run (the seed's when it fits)."""

    def __init__(self, lab: Lab, prefix: int) -> None:
        super().__init__(lab)
        self.prefix = prefix

    def setup_database(self) -> None:
        args = list(daemons.SEED_NETWORK_ARGS)
        args[args.index("10.0.0.0/24")] = f"10.0.0.0/{self.prefix}"
        args[args.index("256")] = str(2 ** (32 - self.prefix))
        self.manage("db", "sync")
        self.manage(*args)


@contextlib.contextmanager
def network_rpc(lab: Lab) -> Iterator[Any]:
    """NetworkAPI on the lab's vhost, from this process (the broker on loopback)."""
    from novanet import conf as novanet_conf
    from novanet.rpc import transport as rpc
    from novanet.rpc.network_api import NetworkAPI

    conf = novanet_conf.new_conf()
    rpc.register_opts(conf)
    conf([], project="novanet", default_config_files=[])
    url = f"rabbit://guest:guest@127.0.0.1:{lab.broker_port}/{quote(lab.vhost, safe='')}"
    conf.set_override("transport_url", url)
    transport = rpc.get_transport(conf)
    try:
        yield NetworkAPI(transport, timeout=90)
    finally:
        transport.cleanup()


class Bench:
    def __init__(self, lab: Lab, novanet: Novanet, api: Any) -> None:
        self.lab = lab
        self.novanet = novanet
        self.instances = Instances(novanet)
        self.api = api

    def create(self, name: str, host: str, via: str) -> Instance:
        if via == "cli":
            return self.instances.create(name, host)
        d = self.api.create_instance(display_name=name, host=host, vif_type="netns")
        return Instance(
            d["id"], d["name"], d["display_name"], d["uuid"], d["host"],
            d["address"], d["mac"], d.get("devname"),
        )  # fmt: skip

    def boot(self, name: str, host: str, via: str = "cli") -> Boot:
        boot = Boot(name, host, via, time.time())
        began = time.monotonic()
        try:
            boot.instance = self.create(name, host, via)
            boot.create_s = time.monotonic() - began
            boot.lease = self.instances.start_guest(boot.instance, timeout=DHCP_TIMEOUT)
            boot.lease_s = time.monotonic() - began - boot.create_s
        except Exception as exc:  # noqa: BLE001 - counted and reported
            step = "create" if boot.instance is None else "guest DHCP"
            boot.error = f"{name}: {step}: {type(exc).__name__}: {str(exc)[:300]}"
        return boot

    def sequential(self, prefix: str, count: int, host: str, via: str = "cli") -> list[Boot]:
        boots = [self.boot(f"{prefix}{i:03d}", host, via) for i in range(1, count + 1)]
        failed = [b.error for b in boots if b.error]
        if failed:
            raise RuntimeError(f"{len(failed)} of {count} boots failed: {failed[0]}")
        return boots

    def concurrent(self, prefix: str, hosts: Sequence[str], workers: int) -> list[Boot]:
        pool = concurrent.futures.ThreadPoolExecutor(workers)
        try:
            futures = [
                pool.submit(self.boot, f"{prefix}{i:03d}", host) for i, host in enumerate(hosts, 1)
            ]
            return [f.result() for f in futures]
        finally:
            # Ctrl-C: drop the boots not started yet; the lab's removal ends the others.
            pool.shutdown(wait=False, cancel_futures=True)

    def on_host(self, host: str) -> int:
        return len(self.novanet.manage_json("instance", "list", "--host", host))

    def guest_address(self, instance: Instance) -> str | None:
        out, _ = self.instances.in_guest(instance, ["ip", "-4", "-o", "addr", "show", "eth0"])
        found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
        return found.group(1) if found else None

    def verify(self, boots: Sequence[Boot], workers: int) -> tuple[int, list[str]]:
        """(guests holding exactly their database address, problems found)."""
        problems = [b.error for b in boots if b.error]
        ok = [(b, b.instance, b.lease) for b in boots if b.instance and b.lease and not b.error]

        def db_rows() -> dict[str, dict[str, Any]]:
            rows = self.novanet.manage_json("fixed", "list")
            return {r["instance_uuid"]: r for r in rows if r.get("instance_uuid")}

        # `leased` is set once dnsmasq's dhcp-script event for the lease is handled.
        def all_leased() -> dict[str, dict[str, Any]] | None:
            rows = db_rows()
            return rows if all(rows.get(i.uuid, {}).get("leased") for _, i, _ in ok) else None

        try:
            rows = daemons.wait_until(all_leased, "leased flags", 15, interval=0.5)
        except TimeoutError:
            rows = db_rows()
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            kernel = list(pool.map(self.guest_address, [i for _, i, _ in ok]))
        good = 0
        for (boot, inst, lease), held in zip(ok, kernel, strict=True):
            row = rows.get(inst.uuid, {})
            seen = {
                "create": inst.address, "database": row.get("address"),
                "lease": lease.ip, "guest kernel": held,
            }  # fmt: skip
            if len(set(seen.values())) != 1 or None in seen.values():
                problems.append(f"{boot.name}: addresses differ: {seen}")
            elif not row.get("leased"):
                problems.append(f"{boot.name}: {inst.address} not marked leased")
            elif inst.host != boot.host:
                problems.append(f"{boot.name}: on {inst.host}, asked for {boot.host}")
            else:
                good += 1
        for what, values in (("address", kernel), ("MAC", [i.mac for _, i, _ in ok])):
            dups = [v for v, n in Counter(values).items() if n > 1]
            if dups:
                problems.append(f"duplicate {what}es: {', '.join(map(str, dups[:5]))}")
        return good, problems


def log_events(lab: Lab) -> dict[tuple[str, str], float]:
    """(event, instance name) -> wall-clock time, from the daemons' INFO lines."""
    found: dict[tuple[str, str], float] = {}
    for node in ("controller-1", C1, C2):
        for path in lab.log_files(node):
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if not (m := LOG_LINE.match(line)):
                        continue
                    for event, pattern in EVENTS.items():
                        if ev := pattern.search(m.group(2)):
                            stamp = datetime.datetime.strptime(m.group(1), LOG_TIME)
                            found.setdefault((event, ev.group(1)), stamp.timestamp())
    return found


def timeline(lab: Lab, boots: Sequence[Boot]) -> list[tuple[str, list[float]]]:
    """Each boot cut into steps by the daemons' log stamps (millisecond resolution)."""
    events = log_events(lab)
    steps: list[tuple[str, list[float]]] = [
        ("CLI start -> agent starts the plug (CLI start-up, RPC, allocation, dnsmasq reload)", []),
        ("plug on the compute host (veth, namespace, chain)", []),
        ("plugged -> novanet-network logs the reply", []),
        ("reply logged -> CLI exits", []),
        ("CLI exit -> lease in the guest (udhcpc started, DISCOVER to ACK)", []),
    ]
    for b in boots:
        assert b.instance is not None
        marks = [events.get((e, b.instance.name)) for e in ("plug", "plugged", "reply")]
        points = [b.started, *(m for m in marks if m is not None), b.started + b.create_s]
        if len(points) != 5:
            continue
        for (_, values), start, end in zip(steps, points, points[1:], strict=False):
            values.append(end - start)
        steps[4][1].append(b.lease_s)
    return steps


def cli_profile(bench: Bench) -> tuple[float, float, float, list[tuple[str, float]]]:
    """(python start, manage wall, its imports, top imports) of one CLI create, in the lab."""
    nova = bench.novanet
    python = sys.executable
    began = time.monotonic()
    bench.lab.execute(nova.controller, [python, "-S", "-c", "pass"])  # imports: below
    bare = time.monotonic() - began
    argv = [python, "-X", "importtime", nova.program("novanet-manage"), "--flagfile",
            nova.conf(nova.controller), "instance", "create", "--name", "profile",
            "--host", C2, "--vif-type", "netns"]  # fmt: skip
    began = time.monotonic()
    _, err = bench.lab.execute(nova.controller, argv)
    wall = time.monotonic() - began
    top: list[tuple[str, float]] = []
    for line in err.splitlines():
        # "import time: self [us] | cumulative | imported package"; top level = no indent
        parts = line.split("|")
        top_level = len(parts) == 3 and parts[2][1:2] != " " and parts[1].strip().isdigit()
        if line.startswith("import time:") and top_level:
            top.append((parts[2].strip(), int(parts[1]) / 1e6))
    top.sort(key=lambda item: -item[1])
    return bare, wall, sum(s for _, s in top), top


def report_profile(bench: Bench, seq: Sequence[Boot], rpc_first: Sequence[Boot]) -> None:
    bare, wall, imports, top = cli_profile(bench)
    cli = median([b.create_s for b in seq])
    server = median([b.create_s for b in rpc_first])
    rest = cli - bare - imports - server
    print("\nWhere one sequential `novanet-manage instance create` spends its time:\n")
    names = ", ".join(f"{n} {s * 1000:.0f}" for n, s in top[:4])
    parts = [
        ("entering the node + Python start-up (`python -S -c pass` there)", bare),
        (f"novanet-manage's imports (`-X importtime`: {names} ms)", imports),
        ("the server: RPC create_instance from an open connection (median)", server),
        ("the rest: config, broker connection and reply queue, output, exit", rest),
    ]
    print(table(["part", "ms", "share"], [[p, ms(s), f"{s / cli:.0%}"] for p, s in parts]))
    print(f"\n(one create run with `-X importtime` took {wall * 1000:.0f} ms; "
          f"the CLI median above is {cli * 1000:.0f} ms)")  # fmt: skip
    worst = max(parts, key=lambda p: p[1])
    print(f"\nBottleneck: {worst[0].split(' (')[0]}, {worst[1] * 1000:.0f} ms of {cli * 1000:.0f}.")
    if worst[1] != server:
        print(
            "What would move it: the server answers in "
            f"{server * 1000:.0f} ms; the rest is a new Python process per command. "
            "Import sqlalchemy/alembic only for the commands that use the database and "
            "oslo.messaging without oslo.service/eventlet, or let operators' tools talk to "
            "novanet-network through a long-lived client (an API daemon or a kept-open RPC "
            "connection), as the RPC row shows."
        )


def plan(args: argparse.Namespace) -> tuple[int, int]:
    """(compute-1 instances to add before the last K, network prefix length)."""
    on_c1 = args.sequential + args.sample + (args.instances + 1) // 2 + 1
    fill = max(0, args.instances - on_c1)
    needed = on_c1 + args.instances // 2 + fill + 2 * args.sample + 8
    prefix = min(24, 32 - math.ceil(math.log2(needed + 3)))
    return fill, prefix


def run(args: argparse.Namespace) -> int:
    fill, prefix = plan(args)
    lab = Lab(f"bench-{os.getpid()}", base=tempfile.mkdtemp(prefix="novanet-labbench-"))
    novanet = BenchNovanet(lab, prefix)
    ok = True
    try:
        say(f"building lab {lab.name} under {lab.base}")
        lab.up()
        novanet.start(progress=say)
        with network_rpc(lab) as api:
            bench = Bench(lab, novanet, api)
            ok = phases(bench, args, fill, prefix)
    finally:
        say(f"removing lab {lab.name}")
        lab.down()
    return 0 if ok else 1


def phases(bench: Bench, args: argparse.Namespace, fill: int, prefix: int) -> bool:
    k = args.sample
    say(f"sequential: {args.sequential} boots on {C1} through novanet-manage")
    seq = bench.sequential("s", args.sequential, C1)
    say(f"sequential: {k} creates on {C1} through the RPC API")
    rpc_first = bench.sequential("r", k, C1, via="rpc")
    hosts = [(C1, C2)[i % 2] for i in range(args.instances)]
    say(f"concurrent: {args.instances} boots, {args.workers} workers")
    began = time.monotonic()
    con = bench.concurrent("c", hosts, args.workers)
    wall = time.monotonic() - began
    say("concurrent: checking every guest's address")
    good, problems = bench.verify(con, args.workers)
    say(f"filling {C1} with {fill} more instances")
    filled = bench.concurrent("f", [C1] * fill, args.workers)
    bad = [b.error for b in filled if b.error]
    if bad:
        raise RuntimeError(f"{len(bad)} fill boots failed: {bad[0]}")
    had = bench.on_host(C1)
    say(f"last: {k} creates on {C1} (it has {had}) through novanet-manage, {k} through RPC")
    last_cli = bench.sequential("l", k, C1)
    last_rpc = bench.sequential("q", k, C1, via="rpc")

    print(f"Machine: {machine()}. Lab: controller-1, {C1}, {C2} in namespaces, the real daemons, "
          f"RabbitMQ on loopback, SQLite; network 10.0.0.0/{prefix}; netns VIFs with busybox "
          "udhcpc as the guest. Times in ms; create = `novanet-manage instance create` as run "
          "by an operator on controller-1 (nsenter + a new Python process) unless marked RPC.")  # fmt: skip
    total = [b.total_s for b in seq]
    met = median(total) <= GOAL_TOTAL
    print(f"\n### Sequential: {len(seq)} instances on {C1}, one after the other\n")
    rows = [["create (CLI)", *stats([b.create_s for b in seq]), ""],
            ["create returned -> lease in the guest", *stats([b.lease_s for b in seq]), ""],
            ["create -> lease", *stats(total), f"median <= 1000: {verdict(met)}"],
            ["create (RPC from an open connection)", *stats([b.create_s for b in rpc_first]), ""]]  # fmt: skip
    print(table(["", "median", "p90", "max", "goal"], rows))

    cok = good == len(con) and not problems
    print(f"\n### Concurrent: {len(con)} instances across {C1} and {C2}, "
          f"{args.workers} workers\n")  # fmt: skip
    done = [b for b in con if b.error is None]
    rows = [["create (CLI)", *stats([b.create_s for b in done])],
            ["create returned -> lease", *stats([b.lease_s for b in done])],
            ["create -> lease", *stats([b.total_s for b in done])]]  # fmt: skip
    print(table(["per instance", "median", "p90", "max"], rows))
    print(f"\nAll {len(con)} created and leased in **{wall:.1f} s** "
          f"({len(con) / wall:.1f} instances/s). Guests holding exactly the address the "
          f"database gave them (create output = `fixed list` row, leased = udhcpc's lease = "
          f"`ip -4 addr` in the guest), no duplicate address or MAC: {good}/{len(con)}: "
          f"{verdict(cok)}.")  # fmt: skip
    for problem in problems[:10]:
        print(f"- {problem}")

    print(f"\n### Create cost: the first instances on a host vs the {nth(had + 1)}\n")
    rows, same = [], True
    s, n = args.sequential, had
    for via, first, last, a0, b0 in (
        ("CLI", seq[:k], last_cli, 1, n + 1),
        ("RPC", rpc_first, last_rpc, s + 1, n + k + 1),
    ):
        a, b = median([x.create_s for x in first]), median([x.create_s for x in last])
        flat = b / a <= SAME_COST
        same = same and (flat or via == "RPC")
        rows.append([
            f"create ({via})", f"{nth(a0)}-{nth(a0 + k - 1)}: {ms(a)}",
            f"{nth(b0)}-{nth(b0 + k - 1)}: {ms(b)}", f"{b / a:.2f}",
            verdict(flat) if via == "CLI" else "(the server's share)",
        ])  # fmt: skip
    print(table([f"median of {k} on {C1}", "first on the host", f"after it had {n}",
                 "ratio", f"goal: ratio <= {SAME_COST}"], rows))  # fmt: skip

    print(f"\n### Timeline of the {len(seq)} sequential boots (daemon INFO log stamps)\n")
    steps = timeline(bench.lab, seq)
    print(table(["step", "median", "p90", "max"], [[s, *stats(v)] for s, v in steps]))
    if not met or args.profile:
        report_profile(bench, seq, rpc_first)
    return met and cok and same


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200, help="concurrent boots (N)")
    parser.add_argument("--sequential", type=int, default=20, help="sequential boots (S)")
    parser.add_argument("--sample", type=int, default=10, help="first/last creates compared (K)")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--profile", action="store_true", help="profile even if goals are met")
    parser.add_argument("--quick", action="store_true", help="N=20, S=5, K=5 (about a minute)")
    args = parser.parse_args(argv)
    if args.quick:
        args.instances, args.sequential, args.sample = 20, 5, 5
    if os.geteuid() != 0:
        print("lab_bench needs root (network namespaces)", file=sys.stderr)
        return 2
    return with_sigterm(lambda: run(args))


def with_sigterm(func: Callable[[], int]) -> int:
    """SIGTERM unwinds like Ctrl-C, so the lab is removed."""

    def interrupt(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        return func()
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
