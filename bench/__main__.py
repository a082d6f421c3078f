"""Run novanet's benchmarks and write BENCHMARKS.md.

    sudo ./run bench                 # everything (about 20-30 minutes)
    sudo ./run bench --only ipam,dhcpbridge
    sudo ./run bench --quick         # smaller sizes, a smoke test of the suite

Each benchmark is a module in bench/ with a ``main(argv)`` that prints a
markdown section; this runner runs them one after the other (never in
parallel: they measure the machine) and replaces each one's section in
BENCHMARKS.md, leaving the others as they were, so the file always says
when each number was measured.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import io
import re
import sys
import time
from pathlib import Path

from bench.common import machine

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "BENCHMARKS.md"

# name -> (module, title, arguments for a full run, arguments for --quick)
BENCHES: dict[str, tuple[str, str, list[str], list[str]]] = {
    "iptables": ("bench.iptables_bench", "iptables: adding and removing one instance, nova vs novanet", [], ["--sizes", "10,1000", "--repeat", "3"]),
    "dnsmasq": ("bench.dnsmasq_bench", "dnsmasq: a new host answered, stalls, reloads per burst", [], ["--sizes", "10000", "--trials", "1"]),
    "ipam": ("bench.ipam_bench", "IPAM: allocations per second", [], ["--quick"]),
    "dhcpbridge": ("bench.dhcpbridge_bench", "dhcp-script: one add event", [], ["--events", "15"]),
    "metadata": ("bench.metadata_bench", "metadata service: requests per second", [], ["--duration", "3"]),
    "lab": ("bench.lab_bench", "End to end in the lab: instance create to DHCP lease", [], ["--quick"]),
    "metrics": ("bench.metrics_bench", "Metrics: cost on the hot paths, cost of a scrape", [], ["--rounds", "20000", "--hosts", "500"]),
    "qemu": ("bench.qemu_bench", "QEMU guests in the lab: image, boot to lease, memory", ["--cold"], ["--quick"]),
    "memory": ("bench.memory_bench", "Memory: daemons with 5,000 instances", [], ["--quick"]),
    "secgroups": ("bench.secgroup_bench", "Security groups: a membership change on one host, a rule change across the lab", [], ["--quick"]),
    "antispoof": ("bench.antispoof_bench", "Anti-spoofing: one port's filter added and removed, and the cost per frame", [], ["--sizes", "10,1000", "--repeat", "3", "--rounds", "2", "--seconds", "1"]),
    "floating": ("bench.floating_bench", "Floating IPs: association to reachable, 1,000 associations on one controller", [], ["--quick"]),
    "resync": ("bench.resync_bench", "Compute agent: the periodic resync with 5,000 live instances", [], ["--quick"]),
}

HEADER = """# novanet benchmarks

Produced by `sudo ./run bench` (bench/__main__.py); each section says when and
on what it was measured. Comparisons with nova-network's strategies run side
by side in the same run. Goals are the ones of issue 6; a goal not met says so
with the measured number and what limits it.

"""


def _section(name: str, title: str, body: str, seconds: float) -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        f"<!-- bench:{name} -->\n## {title}\n\n"
        f"_Measured {stamp} in {seconds:.0f} s with `./run bench --only {name}`._\n\n"
        f"{body.strip()}\n<!-- /bench:{name} -->\n"
    )


def _replace(text: str, name: str, section: str) -> str:
    pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->\n", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: section, text)
    return text.rstrip("\n") + "\n\n" + section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    output = Path(args.output)
    text = output.read_text() if output.exists() else HEADER
    print(f"benchmarks on {machine()}", file=sys.stderr)
    failed = []
    for name in names:
        module_name, title, full, quick = BENCHES[name]
        print(f"==> {name}", file=sys.stderr)
        started = time.monotonic()
        buffer = io.StringIO()
        try:
            module = importlib.import_module(module_name)
            with contextlib.redirect_stdout(buffer):
                code = module.main(quick if args.quick else full)
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            code = 1
            buffer.write(f"\n**The benchmark failed**: {type(exc).__name__}: {exc}\n")
        body = buffer.getvalue()
        sys.stderr.write(body)
        if code:
            failed.append(name)
        text = _replace(text, name, _section(name, title, body, time.monotonic() - started))
        output.write_text(text)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
