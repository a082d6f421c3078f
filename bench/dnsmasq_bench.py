"""dnsmasq reloads at scale: the seed's hostsfile + SIGHUP vs the hostsdir fast path.

Run as root from the source tree::

    .venv/bin/python -m bench.dnsmasq_bench [--sizes 10000,50000] [--trials 3]
        [--leases 0] [--burst 1000]

It builds three throwaway namespaces: ``srv`` with br100 = 10.0.0.1/16 and the
real dnsmasq started by DnsmasqDriver (through ``ip netns exec``), ``new``
whose busybox udhcpc plays the newly booted instance, and ``oth`` whose
udhcpc renews an existing host in a loop the whole time (a fresh
DISCOVER/OFFER/REQUEST/ACK each round). For each size N and each mode:

- seed: dhcp_hostsdir_threshold = 0, every change rewrites the hostsfile and
  SIGHUPs dnsmasq (nova's way, with novanet's coalescing);
- fast: dhcp_hostsdir_threshold = 1000, new hosts go to --dhcp-hostsdir files.

Measured: ``start`` (enable() until the first DHCPACK: dnsmasq reads the
whole hostsfile after it forks); ``new host``: reload_allocations() of one new
host, then udhcpc with its MAC, until its DHCPACK (median and max of
--trials); ``other client``: the longest handshake of the looping client
during those trials (its idle handshake, the client's own floor, is shown as
``floor``: busybox udhcpc waits ~50 ms between OFFER and REQUEST); ``burst``:
--burst reload_allocations() calls from 4 threads as fast as they come, then
the reloads that reached dnsmasq (SIGHUPs + hostsdir files) and the longest
handshake of the looping client meanwhile; ``release``: release() of one host
(force_dhcp_release: dnsmasq must forget it before dhcp_release is sent).

--leases F makes the dhcp-script's ``init`` return leases for a fraction F of
the hosts, as a real controller's would (dnsmasq then refreshes every lease
on each change: see the note printed with the table). Everything runs on the
same cores as the other work of the machine: the numbers are a floor.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from novanet import conf as novanet_conf
from novanet.dhcp.driver import DnsmasqDriver
from novanet.dhcp.models import DhcpHost
from novanet.linux import processutils
from tests.lib.dhcp import dhcp_network

NET = dhcp_network("10.0.0.0/16")
SCRIPT = """#!/bin/sh
# Benchmark dhcp-script: 'init' prints the prepared leases, the rest is a no-op.
[ "$1" = init ] && [ -f {leases} ] && cat {leases}
exit 0
"""


def host(i: int) -> DhcpHost:
    address = (10 << 24) + 10 + i  # 10.0.0.10 upwards
    mac = f"fa:16:3e:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
    dotted = ".".join(str((address >> s) & 255) for s in (24, 16, 8, 0))
    return DhcpHost(mac, f"vm{i}", dotted)


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    prefix = ["ip", "netns", "exec", ns] if ns else []
    return subprocess.run([*prefix, "ip", *args], capture_output=True, text=True, check=check)


class Topology:
    def __init__(self) -> None:
        tag = f"nnb{os.getpid()}"
        self.srv, self.new, self.oth = f"{tag}s", f"{tag}n", f"{tag}o"

    def __enter__(self) -> Topology:
        for ns in (self.srv, self.new, self.oth):
            ip("netns", "add", ns)
            ip("link", "set", "lo", "up", ns=ns)
        ip("link", "add", "br100", "type", "bridge", ns=self.srv)
        ip("addr", "add", "10.0.0.1/16", "brd", "10.0.255.255", "dev", "br100", ns=self.srv)
        ip("link", "set", "br100", "up", ns=self.srv)
        for port, ns in (("vnet0", self.new), ("vnet1", self.oth)):
            ip(
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
                ns=self.srv,
            )
            ip("link", "set", port, "master", "br100", "up", ns=self.srv)
            ip("link", "set", "eth0", "up", ns=ns)
        return self

    def __exit__(self, *exc: object) -> None:
        for ns in (self.srv, self.new, self.oth):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in pids.stdout.split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
            ip("netns", "delete", ns, check=False)

    def execute(self, cmd, **kw):
        return processutils.execute(["ip", "netns", "exec", self.srv, *cmd], **kw)


def dhcp(ns: str, mac: str | None, attempts: int = 30) -> tuple[float, bool]:
    """udhcpc in ``ns`` (MAC set first if given); (seconds, got a lease)."""
    if mac:
        ip("link", "set", "eth0", "address", mac, ns=ns)
    started = time.monotonic()
    result = subprocess.run(
        ["ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f"]
        + ["-t", str(attempts), "-T", "1", "-s", "/bin/true"],
        capture_output=True,
        text=True,
        timeout=attempts * 2 + 30,
    )
    ok = re.search(r"lease of \S+ obtained", result.stdout + result.stderr) is not None
    return time.monotonic() - started, ok


@dataclass
class Loop:
    """The other client: DHCP handshakes back to back, each one timed."""

    ns: str
    rounds: list[tuple[float, float, bool]] = field(default_factory=list)  # start, secs, ok
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.monotonic()
            secs, ok = dhcp(self.ns, None)
            self.rounds.append((start, secs, ok))

    def settle(self, after: float, timeout: float = 120.0) -> None:
        """Wait until a round that started after ``after`` has finished.

        A round caught in a stall is only recorded when it ends: without
        this, a stall longer than the pause after an action is not seen.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(r[0] > after for r in self.rounds):
            time.sleep(0.05)

    def longest(self, t0: float, t1: float) -> float:
        """Longest handshake that overlapped [t0, t1] (seconds)."""
        inside = [s for start, s, _ in self.rounds if start <= t1 and start + s >= t0]
        return max(inside, default=0.0)

    def floor(self, t0: float, t1: float) -> float:
        inside = [s for start, s, ok in self.rounds if ok and t0 <= start and start + s <= t1]
        return statistics.median(inside) if inside else 0.0


@dataclass
class Result:
    size: int
    mode: str
    start: float = 0.0
    new: list[float] = field(default_factory=list)
    call: list[float] = field(default_factory=list)  # reload_allocations() itself
    new_failed: int = 0
    other: float = 0.0
    floor: float = 0.0
    burst_reloads: str = ""
    burst_reload_count: int = 0
    burst_other: float = 0.0
    burst_served: float = 0.0
    release: float = 0.0
    release_other: float = 0.0


def run_case(topo: Topology, work: str, size: int, mode: str, args: argparse.Namespace) -> Result:
    result = Result(size, mode)
    networks = os.path.join(work, f"networks-{mode}-{size}")
    conf = novanet_conf.new_conf()
    conf.set_override("networks_path", networks)
    conf.set_override("dhcpbridge", os.path.join(work, "dhcpbridge"))
    conf.set_override("dhcp_hostsdir_threshold", 0 if mode == "seed" else 1000)
    hosts = [host(i) for i in range(size)]
    lock = threading.Lock()
    with open(os.path.join(work, "leases"), "w") as handle:
        expiry = int(time.time()) + 86400
        for h in hosts[: int(size * args.leases)]:
            handle.write(f"{expiry} {h.mac} {h.address} {h.hostname} *\n")

    def provider(network_id: int) -> list[DhcpHost]:
        with lock:
            return list(hosts)

    driver = DnsmasqDriver(conf, provider, execute=topo.execute)
    other = hosts[0]
    ip("link", "set", "eth0", "address", other.mac, ns=topo.oth)
    started = time.monotonic()
    driver.enable(NET)
    _, ok = dhcp(topo.oth, None, attempts=300)
    result.start = time.monotonic() - started
    if not ok:
        raise RuntimeError(f"{mode} {size}: dnsmasq never answered")
    loop = Loop(topo.oth)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        t_floor = time.monotonic()
        time.sleep(1.0)
        result.floor = loop.floor(t_floor - 1.0, time.monotonic())

        # One new host at a time.
        t_trials = time.monotonic()
        for k in range(args.trials):
            newcomer = host(size + k)
            with lock:
                hosts.append(newcomer)
            t0 = time.monotonic()
            driver.reload_allocations(NET)
            result.call.append(time.monotonic() - t0)
            _, ok = dhcp(topo.new, newcomer.mac)
            if ok:
                result.new.append(time.monotonic() - t0)
            else:
                result.new_failed += 1
            driver.wait_idle(NET, 120)
            loop.settle(time.monotonic())
        result.other = loop.longest(t_trials, time.monotonic())

        # A burst of allocations from concurrent callers.
        before = driver.stats(NET)
        base = size + args.trials
        per_thread = args.burst // 4

        def caller(first: int) -> None:
            for i in range(first, first + per_thread):
                with lock:
                    hosts.append(host(i))
                driver.reload_allocations(NET)

        t0 = time.monotonic()
        callers = [threading.Thread(target=caller, args=(base + n * per_thread,)) for n in range(4)]
        for c in callers:
            c.start()
        for c in callers:
            c.join()
        driver.wait_idle(NET, 300)
        _, ok = dhcp(topo.new, hosts[-1].mac)
        result.burst_served = time.monotonic() - t0 if ok else float("nan")
        after = driver.stats(NET)
        result.burst_reload_count = (
            after.hups - before.hups + after.hostsdir_files - before.hostsdir_files
        )
        result.burst_reloads = (
            f"{after.hups - before.hups} SIGHUP + "
            f"{after.hostsdir_files - before.hostsdir_files} files "
            f"({after.reloads - before.reloads} runs)"
        )
        loop.settle(time.monotonic())
        result.burst_other = loop.longest(t0, time.monotonic())

        # Release one host (force_dhcp_release).
        gone = hosts[size + 1]
        with lock:
            hosts.remove(gone)
        t0 = time.monotonic()
        driver.release(NET, gone.address, gone.mac)
        result.release = time.monotonic() - t0
        loop.settle(time.monotonic())
        result.release_other = loop.longest(t0, time.monotonic())
    finally:
        loop.stop.set()
        thread.join(timeout=120)
        driver.disable(NET)
        driver.close()
    return result


def lease_scan(topo: Topology, work: str, size: int, counts: list[int]) -> str:
    """Fast mode with ``count`` leases loaded at start: what each DHCP change costs."""
    lines = [
        f"Leases held by dnsmasq vs cost, {size:,} hosts, fast mode "
        "(handshakes of an existing host with no reload; a new host through the hostsdir; "
        "a SIGHUP, i.e. enable() of the running dnsmasq):",
        "",
        "| leases | existing host: handshake (ms) | new host -> DHCPACK (ms) "
        "| SIGHUP -> next DHCPACK (ms) |",
        "|---:|---:|---:|---:|",
    ]
    for count in counts:
        print(f"# lease scan: {count:,} leases ...", file=sys.stderr, flush=True)
        conf = novanet_conf.new_conf()
        conf.set_override("networks_path", os.path.join(work, f"networks-scan-{count}"))
        conf.set_override("dhcpbridge", os.path.join(work, "dhcpbridge"))
        hosts = [host(i) for i in range(size)]
        with open(os.path.join(work, "leases"), "w") as handle:
            expiry = int(time.time()) + 86400
            for h in hosts[:count]:
                handle.write(f"{expiry} {h.mac} {h.address} {h.hostname} *\n")
        driver = DnsmasqDriver(
            conf, lambda network_id, rows=hosts: list(rows), execute=topo.execute
        )
        ip("link", "set", "eth0", "address", hosts[0].mac, ns=topo.oth)
        try:
            driver.enable(NET)
            dhcp(topo.oth, None, attempts=300)
            handshakes = [dhcp(topo.oth, None, attempts=60)[0] for _ in range(3)]
            newcomer = host(size)
            hosts.append(newcomer)
            t0 = time.monotonic()
            driver.reload_allocations(NET)
            _, ok = dhcp(topo.new, newcomer.mac, attempts=120)
            new = time.monotonic() - t0 if ok else float("nan")
            time.sleep(0.5)
            t0 = time.monotonic()
            driver.enable(NET)
            _, ok = dhcp(topo.oth, None, attempts=300)
            hup = time.monotonic() - t0 if ok else float("nan")
        finally:
            driver.disable(NET)
            driver.close()
        lines.append(f"| {count:,} | {ms(statistics.median(handshakes))} | {ms(new)} | {ms(hup)} |")
        print(lines[-1], file=sys.stderr)
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def table(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"dnsmasq {dnsmasq_version()}, {platform.node()}, {os.cpu_count()} cores, "
        f"{datetime.date.today()}, leases at start: {args.leases:.0%} of the hosts, "
        f"dnsmasq_reload_delay 0.05 s, {args.trials} trials",
        "",
        "| hosts | mode | start (s) | new host -> DHCPACK, median / max (ms) [minus floor] "
        "| reload_allocations() returns (ms) "
        "| other client: longest handshake (ms) [floor] "
        f"| burst of {args.burst}: reloads reaching dnsmasq | burst: last host served (ms) "
        "/ other client longest (ms) | release (ms) / other client longest (ms) |",
        "|---:|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        new = "-"
        if r.new:
            median = statistics.median(r.new)
            new = f"{ms(median)} / {ms(max(r.new))} [{ms(max(0.0, median - r.floor))}]"
        if r.new_failed:
            new += f" ({r.new_failed} failed)"
        lines.append(
            f"| {r.size:,} | {r.mode} | {r.start:.1f} | {new} "
            f"| {ms(statistics.median(r.call)) if r.call else '-'} | {ms(r.other)} [{ms(r.floor)}] "
            f"| {r.burst_reloads} | {ms(r.burst_served)} / {ms(r.burst_other)} "
            f"| {ms(r.release)} / {ms(r.release_other)} |"
        )
    return "\n".join(lines)


def dnsmasq_version() -> str:
    out = subprocess.run(["dnsmasq", "--version"], capture_output=True, text=True).stdout
    return out.split()[2] if out else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--modes", default="seed,fast")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--leases", type=float, default=0.0, help="fraction of hosts leased")
    parser.add_argument(
        "--lease-scan",
        default="",
        help="instead: lease counts (e.g. 0,1000,5000) for the first size, fast mode",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("dnsmasq_bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="novanet-dnsmasq-bench-")
    os.chmod(work, 0o755)  # dnsmasq drops to nobody and re-reads its files
    script = os.path.join(work, "dhcpbridge")
    with open(script, "w") as handle:
        handle.write(SCRIPT.format(leases=os.path.join(work, "leases")))
    os.chmod(script, 0o755)
    results = []
    try:
        with Topology() as topo:
            if args.lease_scan:
                size = int(args.sizes.split(",")[0])
                counts = [int(c) for c in args.lease_scan.split(",")]
                print(lease_scan(topo, work, size, counts))
                return 0
            for size in (int(s) for s in args.sizes.split(",")):
                for mode in args.modes.split(","):
                    print(f"# {mode} mode, {size:,} hosts ...", file=sys.stderr, flush=True)
                    results.append(run_case(topo, work, size, mode, args))
                    print(table(results[-1:], args).splitlines()[-1], file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(results, args))
    print(goals(results, args))
    return 0


def goals(results: list[Result], args: argparse.Namespace) -> str:
    """Issue 6's dnsmasq goals against the fast path, with the seed mode beside it."""
    limits = {10000: 0.100, 50000: 0.200}
    out = ["", "How to read it: a DHCP handshake of busybox udhcpc takes its own time even when "
           "dnsmasq answers at once (the *floor*, measured on a host that already exists). "
           "The bracket after the new host's time is what novanet adds to that floor: the "
           "time from reload_allocations() until dnsmasq can answer the new host.", ""]
    for r in results:
        if r.mode != "fast" or not r.new:
            continue
        added = max(0.0, statistics.median(r.new) - r.floor)
        limit = limits.get(r.size)
        if limit is not None:
            out.append(f"- {r.size:,} hosts: new host answerable {ms(added)} ms after the allocation "
                       f"(goal <= {ms(limit)} ms: {'met' if added <= limit else 'NOT MET'}); "
                       f"the whole handshake {ms(statistics.median(r.new))} ms")
        stall = max(0.0, r.other - r.floor)
        out.append(f"- {r.size:,} hosts: other clients' longest handshake {ms(r.other)} ms, "
                   f"{ms(stall)} ms above their floor (goal: no stall over 100 ms: "
                   f"{'met' if stall <= 0.100 else 'NOT MET'})")
        out.append(f"- {r.size:,} hosts: a burst of {args.burst} allocations reached dnsmasq as "
                   f"{r.burst_reloads} (goal <= 10 reloads: "
                   f"{'met' if r.burst_reload_count <= 10 else 'NOT MET'}); meanwhile other "
                   f"clients' longest handshake {ms(r.burst_other)} ms, the last new host "
                   f"answered {ms(r.burst_served)} ms after the burst began")
    out += ["",
            "Why a burst is written as a few files: dnsmasq checks every new hostsdir line "
            "against every host it holds (about 1.3 ms per line at 50,000 hosts here) and "
            "then re-matches every lease it holds, answering no DHCP meanwhile. novanet writes "
            "the first allocation of a burst at once, then one file per run, each when "
            "dnsmasq is idle again and holding at most sync.FILE_WORK / hosts lines (600 at "
            "10,000 hosts, 120 at 50,000): a burst of 1,000 is at most 10 files at 50,000 "
            "hosts, each keeping dnsmasq busy ~160 ms. (The previous budget, 50 lines a file "
            "at 50,000 hosts, gave 22 files and a slower burst: 2.2 s to the last host.) A "
            "single allocation is one line, whatever the budget. The seed mode (hostsfile + "
            "SIGHUP), kept for networks below dhcp_hostsdir_threshold, shows why the fast "
            "path exists: 9 s without DHCP per reload at 50,000 hosts. With many *active "
            "leases* every reload also makes dnsmasq re-match each lease (measured: a "
            "renewal takes 3.4 s at 10,000 leases), a dnsmasq limit no reload strategy "
            "removes; what would move it is dnsmasq keeping hosts and leases in hash tables."]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
