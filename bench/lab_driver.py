"""The lab benchmark's actions: boots through the CLI or RPC, phases, probes, checks, CPU.

See bench/lab_bench.py for what is measured.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import math
import re
import resource
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

from bench.common import median
from bench.lab_model import (
    C1,
    C2,
    CHILDREN,
    DHCP_TIMEOUT,
    DNSMASQ,
    LEASED_WAIT,
    Boot,
    Phase,
    Probe,
    Profile,
    Results,
    log_events,
    proc_cpu,
    say,
)
from novanet.lab import daemons
from novanet.lab.daemons import Novanet
from novanet.lab.instances import Instance, Instances
from novanet.lab.lab import Lab
from novanet.wait import wait_until


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
        self.controller_dir = lab.paths.node_dir(novanet.controller)
        # CPU seen per dnsmasq pid: novanet-network restarts dnsmasq when the
        # network crosses dhcp_hostsdir_threshold, and the count goes on
        self._dnsmasq_seen: dict[int, float] = {}

    def create(self, name: str, host: str, via: str) -> Instance:
        if via == "CLI":
            return self.instances.create(name, host)
        d = self.api.create_instance(display_name=name, host=host, vif_type="netns")
        return Instance(
            d["id"], d["name"], d["display_name"], d["uuid"], d["host"],
            d["address"], d["mac"], d.get("devname"),
        )  # fmt: skip

    def boot(self, name: str, host: str, via: str) -> Boot:
        boot = Boot(name, host, time.time())
        began = time.monotonic()
        try:
            boot.instance = self.create(name, host, via)
            boot.create_s = time.monotonic() - began
            boot.lease = self.instances.start_guest(boot.instance, timeout=DHCP_TIMEOUT)
            boot.lease_s = time.monotonic() - began - boot.create_s
        except Exception as exc:  # noqa: BLE001 - counted and reported
            step = "create" if boot.instance is None else "guest DHCP"
            text = " ".join(str(exc).split())  # the end of udhcpc's console says why
            boot.error = f"{name}: {step}: {type(exc).__name__}: {text[:120]} ... {text[-300:]}"
        return boot

    def phase(self, prefix: str, hosts: Sequence[str], via: str, workers: int = 1) -> Phase:
        """Boot one instance per entry of ``hosts`` (one at a time with one worker)."""
        say(f"{len(hosts)} boots through {via}, {workers} at a time")
        before, began = self.cpu(), time.monotonic()
        pool = concurrent.futures.ThreadPoolExecutor(workers)
        try:
            jobs = [pool.submit(self.boot, f"{prefix}{i:03d}", h, via) for i, h in enumerate(hosts)]
            boots = [job.result() for job in jobs]
        finally:
            # Ctrl-C: drop the boots not started yet; the lab's removal ends the others.
            pool.shutdown(wait=False, cancel_futures=True)
        wall = time.monotonic() - began
        after = self.cpu()
        busy = (after[DNSMASQ] - before[DNSMASQ]) / wall
        waited, unflagged = self.wait_leased(boots)
        # dnsmasq's part runs on after the boots: counted until the flags are all set.
        after[DNSMASQ] = self.dnsmasq_cpu()
        cpu = {part: after[part] - before.get(part, math.nan) for part in after}
        good, problems = self.check(boots, workers)
        return Phase(via, boots, wall, cpu, good, problems, unflagged, waited, busy)

    def probe(self, name: str) -> Probe:
        """One create with dnsmasq idle before and after: what it costs dnsmasq alone."""
        say(f"probe: one create with dnsmasq idle ({name})")
        leases = len(self.leased_now())
        before = self.dnsmasq_quiet()
        boot = self.boot(name, C2, "RPC")
        waited, _ = self.wait_leased([boot])
        return Probe(leases, self.dnsmasq_quiet() - before, waited)

    def dnsmasq_cpu(self) -> float:
        """CPU seconds of every dnsmasq this network had (and their dhcp-script runs)."""
        pidfile = f"{self.controller_dir}/networks/nova-br100.pid"
        with contextlib.suppress(OSError, ValueError), open(pidfile, encoding="ascii") as f:
            pid = int(f.read())
            seen = proc_cpu(pid, children=True)  # 0 once the process is gone
            self._dnsmasq_seen[pid] = max(self._dnsmasq_seen.get(pid, 0.0), seen)
        return sum(self._dnsmasq_seen.values()) if self._dnsmasq_seen else math.nan

    def dnsmasq_quiet(self, limit: float = LEASED_WAIT) -> float:
        """Wait (at most ``limit``) until dnsmasq and its dhcp-script idle for 1 s; its CPU."""
        deadline, last = time.monotonic() + limit, self.dnsmasq_cpu()
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = self.dnsmasq_cpu()
            if now - last < 0.02:
                break
            last = now
        return last

    def on_host(self, host: str) -> int:
        return len(self.novanet.manage_json("instance", "list", "--host", host))

    def leased_now(self) -> set[str]:
        """uuids of the instances whose address is marked leased (the controller's SQLite).

        Polling with `fixed list` would start a Python process (a second of CPU) per look.
        """
        url = f"file:{self.controller_dir}/novanet.sqlite?mode=ro"
        query = "SELECT instance_uuid FROM fixed_ips WHERE leased AND instance_uuid IS NOT NULL"
        with contextlib.closing(sqlite3.connect(url, uri=True, timeout=10)) as db:
            return {row[0] for row in db.execute(query)}

    def wait_leased(self, boots: Sequence[Boot]) -> tuple[float, int]:
        """(seconds waited, addresses not marked leased) once all are or LEASED_WAIT passed."""
        uuids = {b.instance.uuid for b in boots if b.instance and b.lease}
        began = time.monotonic()
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: uuids <= self.leased_now(), "leased", LEASED_WAIT, 0.2)
        return time.monotonic() - began, len(uuids - self.leased_now())

    def guest_address(self, instance: Instance) -> str | None:
        out, _ = self.instances.in_guest(instance, ["ip", "-4", "-o", "addr", "show", "eth0"])
        found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
        return found.group(1) if found else None

    def check(self, boots: Sequence[Boot], workers: int) -> tuple[int, list[str]]:
        """(guests holding exactly their database address, problems found)."""
        problems = [b.error for b in boots if b.error]
        ok = [(b, b.instance, b.lease) for b in boots if b.instance and b.lease and not b.error]
        rows = {r["instance_uuid"]: r for r in self.novanet.manage_json("fixed", "list")}
        with concurrent.futures.ThreadPoolExecutor(max(4, workers)) as pool:
            kernel = list(pool.map(self.guest_address, [i for _, i, _ in ok]))
        good = 0
        for (boot, inst, lease), held in zip(ok, kernel, strict=True):
            seen = {
                "create": inst.address, "`fixed list`": rows.get(inst.uuid, {}).get("address"),
                "udhcpc": lease.ip, "guest kernel": held,
            }  # fmt: skip
            if len(set(seen.values())) != 1 or None in seen.values():
                problems.append(f"{boot.name}: addresses differ: {seen}")
            elif inst.host != boot.host:
                problems.append(f"{boot.name}: on {inst.host}, asked for {boot.host}")
            else:
                good += 1
        for what, values in (("address", kernel), ("MAC", [i.mac for _, i, _ in ok])):
            if dups := [v for v, n in Counter(values).items() if n > 1]:
                problems.append(f"the same {what} twice: {', '.join(map(str, dups[:5]))}")
        return good, problems

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by this bench's commands, each daemon and dnsmasq."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # not udhcpc: not our child
        found = {CHILDREN: usage.ru_utime + usage.ru_stime}
        for d in self.novanet.daemons(metadata=False):
            if (record := self.lab.process(d.node, d.name)) is not None:
                found[f"{d.program} on {d.node}"] = proc_cpu(record.pid)
        found[DNSMASQ] = self.dnsmasq_cpu()
        return found

    def cli_profile(self, runs: int = 3) -> Profile:
        """``runs`` times: bare Python start, a CLI create under ``-X importtime``, an RPC one."""
        nova, python = self.novanet, sys.executable
        argv = [python, "-X", "importtime", nova.program("novanet-manage"), "--flagfile",
                nova.conf(nova.controller), "instance", "create", "--host", C2,
                "--vif-type", "netns", "--name"]  # fmt: skip
        samples: list[list[float]] = [[], [], [], []]  # bare, wall, imports, server
        packages: dict[str, float] = {}
        for run in range(runs):
            began = time.monotonic()
            self.lab.execute(nova.controller, [python, "-S", "-c", "pass"])  # -S: no site
            samples[0].append(time.monotonic() - began)
            began = time.monotonic()
            _, err = self.lab.execute(nova.controller, [*argv, f"profile-{run}"])
            samples[1].append(time.monotonic() - began)
            imports = 0.0
            for line in err.splitlines():
                # "import time: self [us] | cumulative | imported package"
                parts = line.removeprefix("import time:").split("|")
                if len(parts) == 3 and parts[0].strip().isdigit():
                    root, seconds = parts[2].strip().split(".")[0], int(parts[0]) / 1e6
                    packages[root] = packages.get(root, 0.0) + seconds / runs
                    imports += seconds
            samples[2].append(imports)
            began = time.monotonic()
            self.create(f"profile-rpc-{run}", C2, "RPC")
            samples[3].append(time.monotonic() - began)
        ranked = sorted(packages.items(), key=lambda item: -item[1])
        bare, wall, imports, server = (median(values) for values in samples)
        return Profile(bare, wall, imports, server, ranked)


def measure(bench: Bench, args: argparse.Namespace, prefix: int) -> Results:
    k, w = args.sample, args.workers
    burst = [(C1, C2)[i % 2] for i in range(args.instances)]
    phases = {
        "first-cli": bench.phase("s", [C1] * args.sequential, "CLI"),
        "first-rpc": bench.phase("r", [C1] * k, "RPC"),
    }
    early = bench.probe("probe-1")
    # The RPC burst also brings compute-1 past N instances for the last phases.
    phases["burst-cli"] = bench.phase("c", burst, "CLI", w)
    phases["burst-rpc"] = bench.phase("b", burst, "RPC", w)
    # Before the last creates: they then start with dnsmasq idle, as the first ones did.
    probes = (early, bench.probe("probe-2"))
    had = bench.on_host(C1)
    say(f"{C1} has {had} instances")
    phases["last-cli"] = bench.phase("l", [C1] * k, "CLI")
    phases["last-rpc"] = bench.phase("q", [C1] * k, "RPC")
    return Results(prefix, w, phases, had, log_events(bench.lab), probes)
