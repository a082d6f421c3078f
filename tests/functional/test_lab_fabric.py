"""novanet-lab's fabric: the seed's nodes, segments, relay; labs side by side.

Every lab here lives under a temporary base directory with a name unique to
the test run, and is removed by ``down`` even when the test fails.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from novanet.lab import lab as lab_mod
from novanet.lab import relay

pytestmark = pytest.mark.root

_COUNTER = itertools.count()
LabFactory = Callable[[], lab_mod.Lab]


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network and mount namespaces)")


# One base directory for the labs of every test run: names are unique per run
# (t<pid>-<n>), and after a crashed run
# `novanet-lab --base-dir /run/novanet-lab-tests down --all` removes leftovers.
TEST_BASE = os.environ.get("NOVANET_LAB_TEST_DIR", "/run/novanet-lab-tests")


def unique_lab_name() -> str:
    return f"t{os.getpid()}-{next(_COUNTER)}"


@pytest.fixture
def lab_factory() -> Iterator[LabFactory]:
    """Builds labs (``up``) and removes them all after the test."""
    require_root()
    base = TEST_BASE
    made: list[lab_mod.Lab] = []

    def make() -> lab_mod.Lab:
        lab = lab_mod.Lab(unique_lab_name(), base)
        made.append(lab)
        lab.up(vhost=False)  # wires only: no daemon here needs the lab's RabbitMQ vhost
        return lab

    try:
        yield make
    finally:
        for lab in made:
            lab.down()


@pytest.fixture
def lab(lab_factory: LabFactory) -> lab_mod.Lab:
    return lab_factory()


def run(lab: lab_mod.Lab, node: str, *cmd: str) -> str:
    """Run a command in a node; fail the test with its output if it fails."""
    out, _ = lab.execute(node, list(cmd))
    return out


def ping(lab: lab_mod.Lab, node: str, address: str, wait: int = 2) -> bool:
    argv = ["busybox", "ping", "-c", "1", "-W", str(wait), address]
    out, _ = lab.execute(node, argv, check=False, log_errors=False)
    return " 0% packet loss" in out


def root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def amqp_handshake(lab: lab_mod.Lab, node: str, host: str) -> bytes:
    """Send the AMQP 0-9-1 protocol header from a node; return the first frame."""
    code = (
        "import socket,sys\n"
        f"s = socket.create_connection(({host!r}, 5672), timeout=5)\n"
        "s.sendall(b'AMQP\\x00\\x00\\x09\\x01')\n"
        "sys.stdout.write(s.recv(4096).hex())\n"
    )
    out = run(lab, node, sys.executable, "-c", code)
    return bytes.fromhex(out.strip())


def is_connection_start(frame: bytes) -> bool:
    # Method frame (type 1) on channel 0 carrying class 10 (connection), method 10 (start).
    return (
        len(frame) > 11
        and frame[0] == 1
        and frame[1:3] == b"\0\0"
        and frame[7:11] == (b"\x00\x0a\x00\x0a")
    )


def test_nodes_look_like_the_seed(lab: lab_mod.Lab) -> None:
    links = {i["name"]: i for i in lab.status()["nodes"][0]["interfaces"]}
    assert links["eth1"]["mac"] == "08:00:27:9d:c4:b0"
    assert links["eth1"]["ipv4"] == ["192.168.56.200/24"]
    assert links["eth2"]["mac"] == "08:00:27:8f:87:fa"
    assert links["eth2"]["up"] and links["eth2"]["promisc"] and links["eth2"]["ipv4"] == []

    addr = run(lab, "compute-1", "ip", "-4", "-o", "addr", "show", "eth1")
    assert "inet 192.168.56.202/24 brd 192.168.56.255 scope global eth1" in addr
    link = run(lab, "compute-1", "ip", "link", "show", "eth1")
    assert "link/ether 08:00:27:ee:49:bd" in link
    eth2 = run(lab, "compute-1", "ip", "link", "show", "eth2")
    assert "PROMISC" in eth2 and "08:00:27:15:85:17" in eth2
    assert "inet" not in run(lab, "compute-1", "ip", "-4", "addr", "show", "eth2")

    routes = run(lab, "compute-2", "ip", "-4", "route", "show").splitlines()
    assert "default via 192.168.56.101 dev eth1 metric 100 " in routes
    assert any(r.startswith("169.254.0.0/16 dev eth1 scope link metric 1000") for r in routes)
    assert run(lab, "compute-1", "hostname").strip() == "compute-1"
    code = "import socket; print(socket.gethostname())"
    assert run(lab, "controller-1", sys.executable, "-c", code).strip() == "controller-1"
    assert socket.gethostname() not in ("controller-1", "compute-1")
    gw_routes = run(lab, "gateway", "ip", "-4", "route", "show")
    assert "default" not in gw_routes and "10.0.0.0" not in gw_routes


def test_management_segment_pings(lab: lab_mod.Lab) -> None:
    assert ping(lab, "controller-1", "192.168.56.202")
    assert ping(lab, "controller-1", "192.168.56.203")
    assert ping(lab, "controller-1", "192.168.56.101")
    assert ping(lab, "compute-1", "192.168.56.200")
    # The VM segment carries no addresses yet: nothing answers there.
    assert not ping(lab, "compute-1", "10.0.0.1", wait=1)


def plug_instance(lab: lab_mod.Lab, node: str, name: str, mac: str, cidr: str | None) -> None:
    """br100 with eth2 and an instance namespace on it, built by hand with ip."""
    cmds = [
        ["ip", "link", "add", "br100", "type", "bridge", "forward_delay", "0", "stp_state", "0"],
        ["ip", "link", "set", "eth2", "master", "br100"],
        ["ip", "link", "set", "br100", "up"],
        ["ip", "netns", "add", name],
        ["ip", "link", "add", "vnet0", "type", "veth", "peer", "name", "eth0", "netns", name],
        ["ip", "link", "set", "vnet0", "master", "br100", "up"],
        ["ip", "netns", "exec", name, "ip", "link", "set", "eth0", "address", mac, "up"],
        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
    ]
    if cidr:
        cmds.append(["ip", "netns", "exec", name, "ip", "addr", "add", cidr, "dev", "eth0"])
    for cmd in cmds:
        run(lab, node, *cmd)


def test_vm_segment_joins_instances_of_both_computes(lab: lab_mod.Lab) -> None:
    # The same instance name on two nodes: each node has its own /run/netns.
    plug_instance(lab, "compute-1", "instance-00000001", "fa:16:3e:00:00:11", "10.0.0.11/24")
    plug_instance(lab, "compute-2", "instance-00000001", "fa:16:3e:00:00:12", "10.0.0.12/24")
    in_inst = ["ip", "netns", "exec", "instance-00000001"]
    out = run(lab, "compute-1", *in_inst, "busybox", "ping", "-c", "2", "-W", "2", "10.0.0.12")
    assert " 0% packet loss" in out
    neigh = run(lab, "compute-1", *in_inst, "ip", "neigh", "show", "10.0.0.12")
    assert "fa:16:3e:00:00:12" in neigh  # resolved by ARP across the fabric: L2

    listed = run(lab, "compute-1", "ip", "netns", "list").splitlines()
    assert [line.split()[0] for line in listed] == ["instance-00000001"]
    assert run(lab, "controller-1", "ip", "netns", "list").strip() == ""
    assert lab.instances("compute-2") == ["instance-00000001"]
    # Nothing leaks into the machine's /run/netns.
    assert "instance-00000001" not in os.listdir("/run/netns")


def test_rabbitmq_relay_answers_from_compute(lab: lab_mod.Lab) -> None:
    frame = amqp_handshake(lab, "compute-1", "192.168.56.200")
    assert is_connection_start(frame), frame[:16]
    # The controller-side relay listens on the management address only.
    record = lab.process("controller-1", relay.NAME)
    assert record is not None
    assert relay.listening(record.pid, "192.168.56.200", 5672)
    assert not relay.listening(record.pid, "0.0.0.0", 5672)


def test_nothing_in_the_root_namespace(lab_factory: LabFactory) -> None:
    before = root_links()
    lab = lab_factory()
    assert root_links() == before
    # The relay's machine side runs in the root namespace but holds no lab
    # address: nothing in the root namespace has a 192.168.56.x or 10.x socket.
    root_side = lab.process(None, relay.NAME)
    assert root_side is not None
    assert os.stat(f"/proc/{root_side.pid}/ns/net") == os.stat("/proc/self/ns/net")
    assert is_connection_start(amqp_handshake(lab, "gateway", "192.168.56.200"))
    with open("/proc/self/net/tcp") as handle:
        local = [line.split()[1] for line in list(handle)[1:]]
    assert not [a for a in local if a.split(":")[0].endswith(("38A8C0", "0A"))], local


def test_two_labs_side_by_side(lab_factory: LabFactory) -> None:
    first = lab_factory()
    second = lab_factory()
    for lab in (first, second):
        plug_instance(lab, "compute-1", "instance-00000001", "fa:16:3e:00:00:21", "10.0.0.21/24")
        assert ping(lab, "compute-1", "192.168.56.200")
        assert is_connection_start(amqp_handshake(lab, "compute-2", "192.168.56.200"))
    # The fabrics are separate: the same addresses and MACs exist in both.
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(second.paths.amqp_socket)
    sock.close()
    first.down()
    assert not first.exists()
    assert ping(second, "compute-1", "192.168.56.200")
    assert is_connection_start(amqp_handshake(second, "compute-1", "192.168.56.200"))
    assert second.instances("compute-1") == ["instance-00000001"]


def test_cli_up_exec_status_down(tmp_path: os.PathLike[str]) -> None:
    require_root()
    name = unique_lab_name()
    base = os.fspath(tmp_path)
    cli = [sys.executable, "-m", "novanet.cmd.lab", "--base-dir", base]

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60)

    try:
        up = call("up", "--bare", "--name", name)
        assert up.returncode == 0, up.stderr
        again = call("up", "--name", name)
        assert again.returncode == 1 and "exists" in again.stderr
        hostname = call("exec", "--name", name, "compute-2", "ip", "-4", "-o", "addr")
        assert "192.168.56.203/24" in hostname.stdout
        assert call("exec", "--name", name, "compute-1", "false").returncode == 1
        bad = call("exec", "--name", name, "compute-9", "true")
        assert bad.returncode == 1 and "compute-9" in bad.stderr
        status = json.loads(call("status", "--name", name, "--format", "json").stdout)
        assert status["ready"] is True
        assert [n["name"] for n in status["nodes"]] == [
            "controller-1",
            "compute-1",
            "compute-2",
            "gateway",
        ]
        text = call("status", "--name", name).stdout
        assert "192.168.56.200/24" in text and "amqp-relay" in text
        logs = call("logs", "--name", name)
        assert logs.returncode == 0 and "amqp-relay.log" in logs.stdout
        other = call("up", "--bare", "--name", name + "b")
        assert other.returncode == 0, other.stderr
    finally:
        down = call("down", "--all")
    assert down.returncode == 0, down.stderr
    assert "lab " + name + ": removed" in down.stdout and name + "b: removed" in down.stdout
    assert not os.path.exists(base) or os.listdir(base) == []
    assert call("down", "--name", name).returncode == 0
