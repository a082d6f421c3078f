"""Memory benchmark: each daemon's resident set with 5,000 instances (root).

Run: sudo .venv/bin/python -m bench.memory_bench [--instances 5000]

- novanet-network: a controller namespace like the seed's, a /16 network with
  N allocated instances in SQLite, the daemon started and serving (dnsmasq
  holding N hosts), then 50 more instances allocated over RPC; RSS read from
  /proc/PID/status (VmRSS and the peak VmHWM).
- novanet-compute: a compute namespace whose controller (this benchmark, over
  the real RabbitMQ) lists N instances with tap VIFs: the agent plugs N tap
  devices and installs N chains; RSS once it serves RPC. A Linux bridge takes
  at most 1023 ports, so the taps are spread over bridges of 1,000
  (br100, br101, ...).

Goal: at most 100 MB each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid as uuidlib
from pathlib import Path

from bench.common import machine, table, verdict
from novanet.db import instances
from novanet.ipam import networks, pool
from novanet.linux import procfs
from novanet.rpc.objects import InstanceNetwork
from novanet.wait import wait_until

BIN = Path(sys.executable).parent
# A Linux bridge holds at most 1023 ports (BR_MAX_PORTS - 1): one host with
# 5,000 VIFs needs several bridges, as it would need several networks.
PER_BRIDGE = 1000


def rss(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    status = procfs.status(pid)
    if status is None:
        raise ProcessLookupError(f"pid {pid} is gone")
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def _wait(predicate, what: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
    wait_until(predicate, what, timeout, 0.2)


def network_daemon(count: int, vhost) -> list[object]:  # type: ignore[no-untyped-def]
    from tests.functional.test_network_daemon import Controller
    from tests.lib.paths import world_readable_dir

    workdir = world_readable_dir("membench")
    ctl = Controller(workdir, vhost)
    try:
        ctl.manage("network", "delete", "--fixed_range", "10.0.0.0/24")
        ctl.manage("network", "create", "--label", "big", "--fixed_range_v4", "10.0.0.0/16",
                   "--bridge", "br100", "--bridge_interface", "eth2")
        (net_id,) = [n.id for n in networks.list_networks(ctl.db)]
        for i in range(count):
            inst = instances.create_instance(ctl.db, display_name=f"vm{i}", hostname=f"vm{i}", host="compute-1", vif_type="tap")
            pool.allocate_for_instance(ctl.db, network_id=net_id, instance_uuid=inst.uuid)
        ctl.start()
        pid = ctl.proc.pid  # ip netns exec execs the daemon in place
        _wait(lambda: (ctl.state / "networks" / "nova-br100.conf").read_text().count("\n") >= count, "hostsfile", 60)
        idle = rss(pid)
        from tests.functional.test_network_daemon import _rpc

        transport, api = _rpc(vhost)
        try:
            for i in range(50):
                inst = instances.create_instance(ctl.db, display_name=f"new{i}", hostname=f"new{i}", host="compute-1", vif_type="tap")
                api.allocate_for_instance(instance_uuid=inst.uuid)
        finally:
            transport.cleanup()
        busy = rss(pid)
        return ["novanet-network", count, f"{idle[0]:.0f}", f"{busy[0]:.0f}", f"{busy[1]:.0f}", verdict(busy[1] <= 100)]
    finally:
        ctl.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def compute_agent(count: int, vhost, transport) -> list[object]:  # type: ignore[no-untyped-def]
    from tests.functional.test_compute_agent import Host
    from tests.lib.paths import world_readable_dir

    class SpreadHost(Host):
        """No flat_interface: the instances are spread over several bridges (see below)."""

        def write_conf(self, allow_same_net: bool = True) -> Path:
            conf = super().write_conf(allow_same_net)
            conf.write_text(conf.read_text().replace("--flat_interface=eth2\n", ""))
            return conf

    workdir = world_readable_dir("membench-cmp")
    host = SpreadHost(workdir, vhost, transport)
    try:
        host.controller.instances = [
            InstanceNetwork(
                id=n, uuid=str(uuidlib.UUID(int=n)), name=f"instance-{n:08x}", display_name=f"vm{n}",
                host="compute-1", vif_type="tap", mac=f"fa:16:3e:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}",
                address=f"10.0.{n >> 8 & 255}.{n & 255}", cidr="10.0.0.0/16", dhcp_server="10.0.0.1",
                bridge=f"br{100 + (n - 2) // PER_BRIDGE}",
            )
            for n in range(2, count + 2)
        ]
        started = time.monotonic()
        host.start(timeout=1800)
        elapsed = time.monotonic() - started
        now, peak = rss(host.proc.pid)
        return ["novanet-compute", count, f"{now:.0f}", f"{now:.0f}", f"{peak:.0f}", verdict(peak <= 100), f"first sync {elapsed:.0f} s, {(count + PER_BRIDGE - 1) // PER_BRIDGE} bridges"]
    finally:
        host.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="500 instances")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    count = 500 if args.quick else args.instances
    from tests.lib.broker import Vhost
    from tests.lib.broker import transport as broker_transport

    vhost = Vhost(f"novanet-bench-{os.getpid()}")
    transport = broker_transport(vhost)
    try:
        rows = [network_daemon(count, vhost), compute_agent(count, vhost, transport)]
    finally:
        transport.cleanup()
        vhost.delete()
    for row in rows:
        if len(row) < 7:
            row.append("")
    print(f"Machine: {machine()}.")
    print()
    print(table(["daemon", "instances", "RSS serving MB", "RSS after 50 more MB", "peak RSS MB", "goal <= 100 MB", "note"], rows))
    print()
    print("A Linux bridge holds at most 1,023 ports (the kernel's BR_MAX_PORTS), and novanet puts "
          "a host's instances on their network's one bridge, so a real host holds at most about "
          "1,020 of them; the compute row spreads its taps over bridges of 1,000 to measure the "
          "agent at 5,000 devices and chains. RSS is read from /proc/PID/status (VmRSS, VmHWM).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
