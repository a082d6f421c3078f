"""Load test of novanet-metadata from an instance's network namespace.

Run as root from the source tree::

    .venv/bin/python bench/metadata_bench.py [--duration 5] [--instances 250]

It builds two throwaway namespaces (a controller holding the metadata host
192.168.56.200 and 10.0.0.1/24, and an instance 10.0.0.2/24 with its default
route via the controller), adds the seed's 169.254.169.254 DNAT by hand in
the controller, fills a SQLite database with ``--instances`` instances, and
runs the real ``novanet-metadata`` in the controller namespace, once per
metadata_cache_ttl. The load client (Python asyncio, in the instance
namespace) fetches ``/2009-04-04/meta-data/instance-id`` through the DNAT:

- ``connect``: a new TCP connection and an HTTP/1.0 request each time, as
  busybox wget and cirros' cloud-setup do;
- ``keepalive``: HTTP/1.1 requests on persistent connections.

It prints a markdown table (date, machine) for BENCHMARKS.md. The client
and the server share the machine's cores: the numbers are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from novanet.linux import procfs

ROOT = Path(__file__).resolve().parents[1]
HOST = "192.168.56.200"
PORT = 8775
PATH = "/2009-04-04/meta-data/instance-id"
SCENARIOS = [("connect", 1), ("connect", 32), ("keepalive", 1), ("keepalive", 32)]


# -- the client (runs inside the instance namespace) ------------------------------


async def _worker(mode: str, deadline: float, latencies: list[float], errors: list[str]) -> None:
    reader = writer = None
    request_10 = f"GET {PATH} HTTP/1.0\r\nHost: 169.254.169.254\r\n\r\n".encode()
    request_11 = f"GET {PATH} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n".encode()
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            if mode == "connect":
                reader, writer = await asyncio.open_connection("169.254.169.254", 80)
                writer.write(request_10)
                data = await reader.read()
                writer.close()
                ok = data.startswith(b"HTTP/1.1 200") and data.endswith(b"i-00000001")
            else:
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection("169.254.169.254", 80)
                writer.write(request_11)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                ok = head.startswith(b"HTTP/1.1 200") and body == b"i-00000001"
        except (OSError, asyncio.IncompleteReadError, StopIteration) as exc:
            errors.append(type(exc).__name__)
            reader = writer = None
            continue
        if not ok:
            errors.append("bad reply")
        latencies.append(time.perf_counter() - started)
    if writer is not None:
        writer.close()


async def _client(mode: str, concurrency: int, duration: float) -> dict[str, object]:
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(
        *(_worker(mode, deadline, latencies, errors) for _ in range(concurrency))
    )
    return {
        "elapsed": time.perf_counter() - started,
        "latencies": latencies,
        "errors": len(errors),
    }


# -- the harness (root namespace, drives the namespaces) ------------------------------


def _run(*cmd: str, ns: str | None = None) -> str:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    return subprocess.run(full, check=True, capture_output=True, text=True).stdout


class Bench:
    def __init__(self, tmp: Path, instances: int) -> None:
        tag = f"nmb{os.getpid()}"
        self.ctl, self.cli = f"{tag}c", f"{tag}i"
        self.tmp = tmp
        self.instances = instances
        self.server: subprocess.Popen[str] | None = None

    def build(self) -> None:
        for ns in (self.ctl, self.cli):
            _run("ip", "netns", "add", ns)
            _run("ip", "link", "set", "lo", "up", ns=ns)
        _run("ip", "link", "add", "v-ctl", "type", "veth", "peer", "name", "eth0",
             "netns", self.cli, ns=self.ctl)
        for args in (("10.0.0.1/24",), (f"{HOST}/32",)):
            _run("ip", "addr", "add", *args, "dev", "v-ctl", ns=self.ctl)
        _run("ip", "link", "set", "v-ctl", "up", ns=self.ctl)
        _run("ip", "addr", "add", "10.0.0.2/24", "dev", "eth0", ns=self.cli)
        _run("ip", "link", "set", "eth0", "up", ns=self.cli)
        _run("ip", "route", "add", "default", "via", "10.0.0.1", ns=self.cli)
        _run("iptables", "-t", "nat", "-A", "PREROUTING", "-d", "169.254.169.254/32", "-p", "tcp",
             "-m", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", f"{HOST}:{PORT}",
             ns=self.ctl)
        self._fill_database()

    def _fill_database(self) -> None:
        sys.path.insert(0, str(ROOT))
        from novanet.db import instances, migration
        from novanet.db.api import Database
        from novanet.ipam import networks, plan, pool

        db = Database(f"sqlite:///{self.tmp / 'novanet.sqlite'}")
        migration.upgrade(db.engine)
        (net,) = networks.create_networks(
            db, plan.plan_networks(label="bench", fixed_range_v4="10.0.0.0/24", bridge="br100")
        )
        for index in range(self.instances):
            inst = instances.create_instance(
                db, display_name=f"vm{index}", hostname=f"vm{index}", host="compute-1",
                vif_type="netns",
            )
            pool.allocate_for_instance(db, network_id=net.id, instance_uuid=inst.uuid)
        db.dispose()

    def start_server(self, cache_ttl: float) -> None:
        conf = self.tmp / "novanet.conf"
        conf.write_text(
            f"[DEFAULT]\nmy_ip = {HOST}\nstate_path = {self.tmp}\n"
            f"metadata_cache_ttl = {cache_ttl}\n"
            f"[database]\nconnection = sqlite:///{self.tmp / 'novanet.sqlite'}\n"
        )
        log = open(self.tmp / "metadata.log", "w")  # noqa: SIM115 - closed with the process
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.ctl, sys.executable, "-m", "novanet.cmd.metadata",
             "--config-file", str(conf)],
            stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT), text=True,
        )
        deadline = time.monotonic() + 20
        while "serving metadata on" not in (self.tmp / "metadata.log").read_text():
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((self.tmp / "metadata.log").read_text())
            time.sleep(0.05)

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None

    def server_cpu(self) -> float:
        """CPU seconds the server process used so far (utime + stime)."""
        assert self.server is not None
        stat = procfs.stat(self.server.pid)
        assert stat is not None, "the metadata server is gone"
        return stat.cpu_ticks / procfs.clock_ticks()

    def load(self, mode: str, concurrency: int, duration: float) -> dict[str, object]:
        out = _run(sys.executable, str(Path(__file__).resolve()), "client", mode,
                   str(concurrency), str(duration), ns=self.cli)
        return dict(json.loads(out))

    def destroy(self) -> None:
        self.stop_server()
        for ns in (self.ctl, self.cli):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in pids.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"{platform.node()}, {model}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "client":
        mode, concurrency, duration = argv[1], int(argv[2]), float(argv[3])
        json.dump(asyncio.run(_client(mode, concurrency, duration)), sys.stdout)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per row")
    parser.add_argument("--instances", type=int, default=250, help="instances in the database")
    parser.add_argument("--cache-ttl", type=float, action="append",
                        help="metadata_cache_ttl values to compare (default: 0 and 1)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="metadata-bench-") as tmp:
        bench = Bench(Path(tmp), args.instances)
        try:
            bench.build()
            for ttl in args.cache_ttl or [0.0, 1.0]:
                bench.start_server(ttl)
                for mode, concurrency in SCENARIOS:
                    cpu_before = bench.server_cpu()
                    result = bench.load(mode, concurrency, args.duration)
                    cpu = bench.server_cpu() - cpu_before
                    lat = [float(x) for x in result["latencies"]]  # type: ignore[attr-defined]
                    elapsed = float(result["elapsed"])  # type: ignore[arg-type]
                    rows.append(
                        f"| {mode} | {concurrency} | {ttl:g} | {len(lat) / elapsed:,.0f} "
                        f"| {statistics.median(lat) * 1000:.2f} | {_percentile(lat, 0.99) * 1000:.2f} "
                        f"| {cpu / elapsed * 100:.0f}% | {result['errors']} |"
                    )
                    print(rows[-1], file=sys.stderr)
                bench.stop_server()
        finally:
            bench.destroy()
    today = datetime.date.today().isoformat()
    print(f"### novanet-metadata, {today}\n")
    print(f"Machine: {_machine()}. {args.instances} instances in SQLite; "
          f"{args.duration:g} s per row; GET {PATH} from 10.0.0.2 through the "
          "169.254.169.254 DNAT; client: Python asyncio in the instance namespace.\n")
    print("| mode | concurrency | cache_ttl (s) | requests/s | p50 (ms) | p99 (ms) "
          "| server CPU | errors |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
