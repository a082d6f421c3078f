"""novanet-lab's pure parts and its launcher on the machine: no root needed.

(These belong in tests/unit; they live here because the lab's brief owns
tests/functional/test_lab*.py.)
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

import pytest

from novanet import exception
from novanet.conf import loader, new_conf
from novanet.lab import guest, mounts, nodeconf, procs, relay, state
from novanet.lab.topology import IFNAMSIZ, Topology, lab_id_for, seed_topology
from novanet.linux import procfs
from novanet.wait import poll


def test_seed_topology_names_and_addresses() -> None:
    topo = seed_topology("demo")
    assert [n.name for n in topo.nodes] == ["controller-1", "compute-1", "compute-2", "gateway"]
    assert topo.netns("compute-1") == "nl-demo-compute-1"
    assert topo.all_netns()[-1] == "nl-demo-fabric"
    ctl = topo.controller
    assert ctl.management_ip == "192.168.56.200"
    assert (ctl.nic("eth1").mac, ctl.nic("eth2").mac) == ("08:00:27:9d:c4:b0", "08:00:27:8f:87:fa")
    cmp1 = topo.node("compute-1")
    assert (cmp1.nic("eth1").mac, cmp1.nic("eth2").mac) == (
        "08:00:27:ee:49:bd",
        "08:00:27:15:85:17",
    )
    assert cmp1.nic("eth2").promisc and cmp1.nic("eth2").address is None
    assert [n.management_ip for n in topo.computes] == ["192.168.56.202", "192.168.56.203"]
    assert topo.node("gateway").management_ip == "192.168.56.101"
    assert topo.node("gateway").routes == ()
    macs = [nic.mac for node in topo.nodes for nic in node.nics]
    assert len(set(macs)) == len(macs)
    for node in topo.nodes:
        for nic in node.nics:
            assert len(Topology.fabric_port(node, nic)) <= IFNAMSIZ
    with pytest.raises(KeyError):
        topo.node("compute-3")


@pytest.mark.parametrize("name", ["", "Lab", "a b", "-x", "x" * 25, "a/b", "lab_1"])
def test_invalid_lab_names(name: str) -> None:
    with pytest.raises(ValueError):
        lab_id_for(name)


def test_nova_conf_for_controller_and_compute() -> None:
    topo = seed_topology("demo")
    paths = state.LabPaths("/run/novanet-lab", "demo")
    assert nodeconf.render_nova_conf(topo, "controller-1", paths) == (
        "--public_interface=eth1\n"
        "--fixed_range=10.0.0.0/24\n"
        "--flat_interface=eth2\n"
        "--flat_network_bridge=br100\n"
        "--network_manager=nova.network.manager.FlatDHCPManager\n"
        "# the rest: controller-1 in novanet-lab demo (generated)\n"
        "--my_ip=192.168.56.200\n"
        "--host=controller-1\n"
        "--dmz_cidr=10.128.0.0/24\n"
        "--state_path=/run/novanet-lab/demo/controller-1\n"
        "--sql_connection=sqlite:////run/novanet-lab/demo/controller-1/novanet.sqlite\n"
        "--rabbit_host=192.168.56.200\n"
        "--rabbit_virtual_host=nl-demo\n"
        "--iptables_check_interval=2\n"
        "--dnsmasq_check_interval=2\n"
        "--bridge_check_interval=2\n"
        "--report_interval=2\n"
        "--service_down_time=10\n"
    )
    compute = nodeconf.nova_conf_flags(topo, "compute-2", paths, {"report_interval": "5"})
    assert "sql_connection" not in compute
    assert compute["my_ip"] == "192.168.56.203" and compute["host"] == "compute-2"
    assert compute["state_path"] == "/run/novanet-lab/demo/compute-2"
    assert compute["report_interval"] == "5"
    with pytest.raises(ValueError):
        nodeconf.nova_conf_flags(topo, "gateway", paths)


def test_nova_conf_loads_with_novanet_loader(tmp_path: os.PathLike[str]) -> None:
    topo = seed_topology("demo")
    paths = state.LabPaths(os.fspath(tmp_path), "demo")
    path = os.path.join(os.fspath(tmp_path), "nova.conf")
    with open(path, "w") as handle:
        handle.write(nodeconf.render_nova_conf(topo, "controller-1", paths))
    conf = new_conf()
    loader.load(conf, [loader.Source("config", path)])
    assert conf.my_ip == "192.168.56.200"
    assert conf.host == "controller-1"
    assert conf.flat_interface == "eth2" and conf.public_interface == "eth1"
    assert conf.state_path == paths.node_dir("controller-1")
    assert conf.database.connection.endswith("/demo/controller-1/novanet.sqlite")


MOUNTINFO = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
42 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw
43 42 0:4 net:[4026532177] /run/netns/other rw shared:2 - nsfs nsfs rw
59 27 254:0 /run/novanet-lab/a/ns /run/novanet-lab/a/ns rw,relatime - ext4 /dev/vda rw
105 59 0:4 mnt:[4026532459] /run/novanet-lab/a/ns/ctl.mnt rw - nsfs nsfs rw
106 27 0:4 net:[4026532300] /tmp/odd\\040place rw - nsfs nsfs rw
107 27 0:40 / /sys rw,relatime - sysfs sysfs rw
"""


def test_mountinfo_and_stale_mounts() -> None:
    parsed = mounts.parse_mountinfo(MOUNTINFO)
    assert parsed[0] == ("/", "ext4")
    assert ("/tmp/odd place", "nsfs") in parsed
    assert mounts.stale_mounts(parsed, "/run/novanet-lab") == [
        "/run/netns",
        "/run/novanet-lab/a/ns",
        "/tmp/odd place",
    ]
    assert mounts.stale_mounts([("/", "ext4"), ("/sys", "sysfs")], "/run/novanet-lab") == []


def test_proc_net_tcp_address() -> None:
    assert relay._proc_net_tcp_address("192.168.56.200", 5672) == "C838A8C0:1628"


def test_guest_lease_file(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(os.fspath(tmp_path), "lease")
    assert guest.read_lease(path) is None
    with open(path, "w") as handle:
        handle.write("10.0.0.2/24 10.0.0.1 10.0.0.1 8.8.8.8\n")
    lease = guest.read_lease(path)
    assert lease == guest.GuestLease("10.0.0.2/24", "10.0.0.1", ("10.0.0.1", "8.8.8.8"))
    assert lease is not None and lease.ip == "10.0.0.2"
    with pytest.raises(ValueError):
        guest.guest_dir(state.LabPaths(os.fspath(tmp_path), "x"), "compute-1", "../etc")


def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    return bool(poll(predicate, timeout, 0.02))


def state_text(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def group_members(pgid: int) -> list[tuple[int, int]]:
    members = []
    for pid in procfs.pids():
        stat = procfs.stat(pid)
        if stat and stat.pgrp == pgid and stat.alive:
            members.append((pid, stat.starttime))
    return members


def test_launcher_on_the_machine(tmp_path: os.PathLike[str]) -> None:
    """Start, log, stop (with the process group), restart, kill -9: no namespace needed."""
    paths = state.LabPaths(os.fspath(tmp_path), "solo")
    os.makedirs(paths.lab_dir)
    launcher = procs.Launcher(paths, lambda node: [])
    script = "echo started $$; sleep 300 & wait"
    record = launcher.start(None, "shell", ["sh", "-c", script], env={"X": "1"})
    assert state.read_pidfile(state.pidfile(paths, None, "shell")) == (
        record.pid,
        record.starttime,
    )
    assert _wait(lambda: f"started {record.pid}" in state_text(record.log))
    children = [p for p in group_members(record.pid) if p[0] != record.pid]
    assert len(children) == 1  # the sleep
    assert launcher.running(None, "shell")
    with pytest.raises(exception.Conflict):
        launcher.start(None, "shell", ["true"])

    assert launcher.stop(None, "shell")
    assert not launcher.running(None, "shell")
    assert all(not procs.is_running(pid, st) for pid, st in children)  # the group went too

    again = launcher.restart(None, "shell")
    assert again.pid != record.pid and launcher.running(None, "shell")
    with open(record.log) as handle:
        assert handle.read().count("--- novanet-lab ") == 2
    assert launcher.kill(None, "shell", signal.SIGKILL)
    assert launcher.wait_exit(None, "shell")
    assert not launcher.kill(None, "shell")
    assert [r.name for r in launcher.records([])] == ["shell"]
    # kill -9 hit the shell alone, like a crash: its child lives on in the group.
    orphans = group_members(again.pid)
    assert len(orphans) == 1
    procs.terminate(orphans, group=False, timeout=1)


def test_spawn_reports_exec_failure(tmp_path: os.PathLike[str]) -> None:
    from novanet.lab import spawn

    pidfile = os.path.join(os.fspath(tmp_path), "x.pid")
    log = os.path.join(os.fspath(tmp_path), "x.log")
    with pytest.raises(OSError, match="Permission denied|No such file"):
        spawn.spawn([os.fspath(tmp_path)], pidfile, log)
    assert not os.path.exists(pidfile)
    assert sys.executable  # the helper runs with the same interpreter
