"""QEMU guests in the lab: guest image build, boot to lease, memory (root).

Run: sudo .venv/bin/python -m bench.qemu_bench [--vms 3] [--cold] [--quick]

Builds its own lab (the seed's datacenter, the real daemons and
novanet-metadata) under a private base directory and removes it at the end,
also after a failure, Ctrl-C or SIGTERM. Then, as `novanet-lab boot --guest
qemu` does:

1. the guest image: looked up in the machine's cache (/var/cache/novanet-lab,
   building it if missing), and with ``--cold`` built from scratch in a
   temporary cache (apt-get download of ~70 MB included);
2. V VMs booted one at a time, alternating compute-1 and compute-2, each
   left running: `instance create` -> QEMU started -> lease on the console
   (wall clock, and the guest's own uptime), -> instance-id from metadata;
   QEMU's CPU seconds and RSS at the lease and once all V run;
3. each VM deleted (QEMU stopped, then `instance delete`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence

from bench.common import machine, median, table, with_sigterm
from novanet.lab.cloud import Cloud
from novanet.lab.lab import Lab
from novanet.lab.vm import image, qemu
from novanet.linux import processutils

TICKS = os.sysconf("SC_CLK_TCK")


def say(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cold_build() -> tuple[float, int]:
    """(seconds, bytes of vmlinux + initrd) of a build into an empty cache."""
    directory = tempfile.mkdtemp(prefix="novanet-qemubench-cache-")
    try:
        started = time.monotonic()
        built = image.ImageCache(directory, progress=say).ensure()
        seconds = time.monotonic() - started
        return seconds, os.path.getsize(built.vmlinux) + os.path.getsize(built.initrd)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    print(f"Machine: {machine()}. QEMU {qemu_version()}, TCG, -m {qemu.MEMORY_MB}.")
    started = time.monotonic()
    warm = image.ImageCache(progress=say).ensure()
    warm_s = time.monotonic() - started
    started = time.monotonic()
    image.ImageCache().ensure()
    lookup_s = time.monotonic() - started
    rows = [("image in the machine's cache (built if missing)", f"{warm_s:.1f}", warm.directory)]
    rows.append(("cached image looked up again (apt-cache, manifest)", f"{lookup_s:.2f}", ""))
    if args.cold:
        seconds, size = cold_build()
        rows.append(
            ("cold build: download, unpack, vmlinux, initramfs", f"{seconds:.1f}", f"{size >> 20} MB")
        )
    print("\n### Guest image\n")
    print(table(["step", "seconds", ""], rows))

    base = tempfile.mkdtemp(prefix="novanet-qemubench-")
    os.chmod(base, 0o755)  # dnsmasq (user nobody) reads its hostsfile below
    lab = Lab(f"qb-{os.getpid()}", base=base)
    boots = []
    try:
        say(f"building lab {lab.name} under {lab.base}")
        lab.up()
        cloud = Cloud.of(lab)
        cloud.novanet.start(metadata=True, progress=say)
        for n in range(args.vms):
            host = cloud.novanet.computes[n % len(cloud.novanet.computes)]
            say(f"booting vm{n} on {host}")
            booted = cloud.instances.boot(f"vm{n}", host, guest_kind="qemu")
            assert booted.vm is not None
            pid = booted.vm.pid() or 0
            at_lease = (cpu_seconds(pid), rss_mb(pid))
            report = booted.vm.wait("metadata", timeout=120)
            boots.append((booted, pid, at_lease, report))
        time.sleep(5)  # settled: every guest idle in its command loop
        settled = [(cpu_seconds(pid), rss_mb(pid)) for _, pid, _, _ in boots]
        deletes = []
        for booted, _, _, _ in boots:
            started = time.monotonic()
            cloud.instances.delete(booted.instance.name)
            deletes.append(time.monotonic() - started)
    finally:
        say(f"removing lab {lab.name}")
        lab.down()
        with contextlib.suppress(OSError):
            os.rmdir(base)
    report_boots(boots, settled, deletes)
    return 0


def qemu_version() -> str:
    out, _ = processutils.execute([qemu.QEMU, "--version"])
    return out.split()[3] if len(out.split()) > 3 else out.strip()


def report_boots(boots: list, settled: list, deletes: list[float]) -> None:
    print(f"\n### {len(boots)} VMs booted one at a time (compute-1, compute-2, ...)\n")
    rows = []
    for n, ((booted, _, (cpu, rss), report), (cpu2, rss2)) in enumerate(zip(boots, settled, strict=True)):
        rows.append(
            (
                f"vm{n} ({booted.instance.host})",
                f"{booted.seconds:.1f}",
                f"{report.lease_uptime:.1f}" if report.lease_uptime else "?",
                f"{report.instance_id} at {_uptime(report.metadata_uptime)}",
                f"{cpu:.1f}",
                f"{cpu2:.1f}",
                f"{rss:.0f}",
                f"{rss2:.0f}",
                f"{deletes[n]:.1f}",
            )
        )
    header = [
        "VM",
        "create -> lease, s (wall)",
        "guest uptime at lease, s",
        "instance-id at guest uptime",
        "QEMU CPU s to lease",
        "QEMU CPU s, all booted + 5 s",
        "RSS MB at lease",
        f"RSS MB, {len(boots)} running",
        "delete, s",
    ]
    print(table(header, rows))
    total = sum(r for _, r in settled)
    print(
        f"\nMedian create -> lease {median([b.seconds for b, _, _, _ in boots]):.1f} s; "
        f"{len(boots)} idle guests hold {total:.0f} MB RSS together."
    )


def _uptime(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else "?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=3, help="VMs booted one at a time")
    parser.add_argument("--cold", action="store_true", help="also build the image from scratch")
    parser.add_argument("--quick", action="store_true", help="one VM, no cold build")
    args = parser.parse_args(argv)
    if args.quick:
        args.vms, args.cold = 1, False
    if os.geteuid() != 0:
        print("qemu_bench needs root (network namespaces)", file=sys.stderr)
        return 2
    return with_sigterm(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
