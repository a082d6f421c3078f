"""novanet-lab's processes, guests and teardown (also after a crash)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from novanet import exception
from novanet.lab import fabric, relay
from novanet.lab import lab as lab_mod
from novanet.linux import procfs
from tests.functional import test_lab_fabric as fabric_tests
from tests.functional.test_lab_fabric import LabFactory, ping, plug_instance, run, unique_lab_name
from tests.lib import netns as netns_lib
from tests.lib.wait import poll

pytestmark = pytest.mark.root

# The same fixtures as the fabric tests (labs under a temporary base, always removed).
lab_factory = fabric_tests.lab_factory
lab = fabric_tests.lab


def read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    return bool(poll(predicate, timeout, 0.02))


def alive(pid: int) -> bool:
    stat = procfs.stat(pid)
    return stat is not None and stat.alive


def cmdlines_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if text.encode() in handle.read() and alive(int(entry)):
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def assert_no_leftovers(lab: lab_mod.Lab) -> None:
    prefix = f"nl-{lab.lab_id}-"
    assert not os.path.exists(lab.paths.lab_dir)
    assert not [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in listed
    with open("/proc/self/mountinfo") as handle:
        mountinfo = handle.read()
    assert lab.paths.lab_dir not in mountinfo and prefix not in mountinfo
    assert cmdlines_mentioning(lab.paths.lab_dir) == []


# A tiny TCP server (http.server would stall on a reverse DNS lookup in a node).
SERVER = """
import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 8000))
s.listen()
while True:
    c, peer = s.accept()
    print("request from", peer[0], flush=True)
    c.sendall(b"hello from " + os.environ["LAB_MARK"].encode() + b"\\n")
    c.close()
"""


def test_process_launcher(lab: lab_mod.Lab) -> None:
    argv = [sys.executable, "-c", SERVER, "192.168.56.202"]
    record = lab.start_process("compute-1", "web", argv, env={"LAB_MARK": "web-1"})
    netns = fabric.netns_path(lab.topology.netns("compute-1"))
    assert os.stat(f"/proc/{record.pid}/ns/net") == os.stat(netns)
    assert os.stat(f"/proc/{record.pid}/ns/mnt") == os.stat(lab.paths.mnt_file("compute-1"))
    with open(f"/proc/{record.pid}/environ", "rb") as handle:
        assert b"LAB_MARK=web-1" in handle.read().split(b"\0")
    assert wait_for(lambda: relay.listening(record.pid, "192.168.56.202", 8000))
    page = run(lab, "controller-1", "timeout", "5", "busybox", "nc", "192.168.56.202", "8000")
    assert page == "hello from web-1\n"
    assert wait_for(lambda: "request from 192.168.56.200" in read(record.log))

    with pytest.raises(exception.Conflict):
        lab.start_process("compute-1", "web", argv)

    restarted = lab.restart_process("compute-1", "web")
    assert restarted.pid != record.pid and not alive(record.pid)
    assert lab.process_running("compute-1", "web")
    with open(record.log) as handle:
        assert handle.read().count("--- novanet-lab ") == 2  # the old run's log is kept

    assert lab.kill_process("compute-1", "web")
    assert wait_for(lambda: not alive(restarted.pid))
    assert not lab.process_running("compute-1", "web")
    assert not lab.stop_process("compute-1", "web")
    status = lab.status()["nodes"][1]["processes"]
    assert [(p["name"], p["running"]) for p in status] == [("web", False)]


def test_missing_program_is_reported(lab: lab_mod.Lab) -> None:
    with pytest.raises(exception.NotFound, match="/nonexistent/program"):
        lab.start_process("compute-2", "ghost", ["/nonexistent/program"])
    assert not lab.process_running("compute-2", "ghost")
    # On the machine itself the helper's own exec fails and says why.
    with pytest.raises(exception.NotFound):
        lab.start_process(None, "ghost", ["no-such-program-anywhere"])


def test_instance_namespace_survives_its_creator(lab: lab_mod.Lab) -> None:
    code = (
        "import time\n"
        "from novanet.linux.netns import NamespaceFiles\n"  # as the compute agent does
        "NamespaceFiles().create('instance-00000007')\n"
        "print('namespace', 'created', flush=True)\n"
        "time.sleep(600)\n"
    )
    record = lab.start_process("compute-1", "agent", [sys.executable, "-c", code])
    assert wait_for(lambda: "namespace created" in read(record.log))
    assert lab.instances("compute-1") == ["instance-00000007"]
    lab.kill_process("compute-1", "agent")  # kill -9, like a crash
    assert wait_for(lambda: not alive(record.pid))
    out = run(lab, "compute-1", "ip", "netns", "exec", "instance-00000007", "ip", "-o", "link")
    assert "lo:" in out
    assert "instance-00000007" not in os.listdir("/run/netns")
    assert lab.instances("compute-2") == []


def test_down_removes_everything(lab_factory: LabFactory, netns: netns_lib.Namespace) -> None:
    lab = lab_factory()
    plug_instance(lab, "compute-1", "instance-00000001", "fa:16:3e:00:00:31", "10.0.0.31/24")
    sleeper = lab.start_process(
        "compute-1",
        "sleeper",
        ["nsenter", "--net=/run/netns/instance-00000001", "--", "sleep", "600"],
    )
    # Witnesses: veth pairs from a test namespace into the instance namespace
    # and into a node namespace vanish only when the kernel frees those.
    netns.run(["ip", "link", "add", "wit0", "type", "veth", "peer", "name", "w0", "netns",
               str(sleeper.pid)])  # fmt: skip
    netns.run(["ip", "link", "add", "wit1", "type", "veth", "peer", "name", "w1", "netns",
               lab.topology.netns("compute-2")])  # fmt: skip
    # A program the lab did not record, started in a node's mount view.
    stray = subprocess.Popen(lab.command("gateway", ["sleep", "600"]))
    relays = [lab.process(None, relay.NAME), lab.process("controller-1", relay.NAME)]
    try:
        removed = lab.down()
    finally:
        stray.poll()
    assert "netns " + lab.topology.fabric_netns in removed
    assert stray.wait(timeout=5) == -signal.SIGTERM
    assert not alive(sleeper.pid)
    assert all(r is not None and not alive(r.pid) for r in relays)

    def gone(dev: str) -> bool:
        return netns.run(["ip", "link", "show", dev], check=False).returncode != 0

    assert wait_for(lambda: gone("wit0") and gone("wit1")), "namespaces still alive"
    assert_no_leftovers(lab)
    assert lab.down() == []  # idempotent


def test_down_without_records(lab_factory: LabFactory) -> None:
    """A crash can lose the JSON records: pid files and names are enough."""
    lab = lab_factory()
    record = lab.start_process("controller-1", "sleeper", ["sleep", "600"])
    os.unlink(lab.paths.state_file)
    for directory in (lab.paths.pids_dir(None), lab.paths.pids_dir("controller-1")):
        for entry in os.listdir(directory):
            if entry.endswith(".json"):
                os.unlink(os.path.join(directory, entry))
    lab.down()
    assert not alive(record.pid)
    assert_no_leftovers(lab)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.2, 0.3])
def test_down_after_up_was_killed(delay: float) -> None:
    """kill -9 `novanet-lab up` at several stages (after it wrote its state file)."""
    fabric_tests.require_root()
    name = unique_lab_name()
    base = fabric_tests.TEST_BASE
    lab = lab_mod.Lab(name, base)
    proc = subprocess.Popen(
        [sys.executable, "-m", "novanet.cmd.lab", "--base-dir", base, "up", "--name", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: os.path.exists(lab.paths.state_file), timeout=10)
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lab.down()
    assert_no_leftovers(lab)
    # `up` may have died inside rabbitmqctl add_vhost: down waited for it and deleted the vhost.
    vhosts = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert lab.vhost not in vhosts


def test_guest_dhcp_from_plain_dnsmasq(lab: lab_mod.Lab) -> None:
    for cmd in (
        ["ip", "link", "add", "br100", "type", "bridge", "forward_delay", "0"],
        ["ip", "link", "set", "eth2", "master", "br100"],
        ["ip", "link", "set", "br100", "up"],
        ["ip", "addr", "add", "10.0.0.1/24", "brd", "10.0.0.255", "dev", "br100"],
    ):
        run(lab, "controller-1", *cmd)
    node_dir = lab.paths.node_dir("controller-1")
    dnsmasq = lab.start_process(
        "controller-1",
        "dnsmasq",
        [
            "dnsmasq", "--no-daemon", "--conf-file=", "--port=0", "--bind-interfaces",
            "--listen-address=10.0.0.1", "--except-interface=lo",
            "--dhcp-range=10.0.0.2,static,120s", "--dhcp-host=fa:16:3e:2c:e8:ec,10.0.0.2",
            "--dhcp-option=6,10.0.0.1", f"--dhcp-leasefile={node_dir}/dnsmasq.leases",
            f"--pid-file={node_dir}/dnsmasq.pid",
        ],
    )  # fmt: skip
    plug_instance(lab, "compute-1", "instance-00000001", "fa:16:3e:2c:e8:ec", None)

    lease = lab.guest_dhcp("compute-1", "instance-00000001", hostname="cirros")
    assert (lease.address, lease.ip, lease.router, lease.dns) == (
        "10.0.0.2/24",
        "10.0.0.2",
        "10.0.0.1",
        ("10.0.0.1",),
    )
    assert "lease of 10.0.0.2 obtained" in lease.console.lower()
    assert "adding dns 10.0.0.1" in lease.console
    inst = ["ip", "netns", "exec", "instance-00000001"]
    addr = run(lab, "compute-1", *inst, "ip", "-4", "-o", "addr", "show", "eth0")
    assert "inet 10.0.0.2/24 brd 10.0.0.255 scope global eth0" in addr
    routes = run(lab, "compute-1", *inst, "ip", "-4", "route").splitlines()
    assert routes[0].startswith("default via 10.0.0.1 dev eth0")
    resolv = os.path.join(lab.paths.guests_dir("compute-1"), "instance-00000001", "resolv.conf")
    with open(resolv) as handle:
        assert handle.read() == "nameserver 10.0.0.1\n"
    assert ping(lab, "controller-1", "10.0.0.2")
    assert wait_for(lambda: "DHCPACK(br100) 10.0.0.2 fa:16:3e:2c:e8:ec cirros" in read(dnsmasq.log))

    # A guest whose MAC dnsmasq does not know gets nothing (static range only).
    plug_second = [
        ["ip", "netns", "add", "instance-00000002"],
        ["ip", "link", "add", "vnet1", "type", "veth", "peer", "name", "eth0", "netns",
         "instance-00000002"],
        ["ip", "link", "set", "vnet1", "master", "br100", "up"],
        ["ip", "netns", "exec", "instance-00000002", "ip", "link", "set", "eth0", "up"],
    ]  # fmt: skip
    for cmd in plug_second:
        run(lab, "compute-1", *cmd)
    with pytest.raises(exception.ProcessExecutionError):
        lab.guest_dhcp("compute-1", "instance-00000002", timeout=1)

    # A guest that keeps its DHCP client running, renewing like cirros does.
    again = lab.start_guest_dhcp("compute-1", "instance-00000001")
    assert again.address == "10.0.0.2/24"
    assert lab.process_running("compute-1", "udhcpc-instance-00000001")
