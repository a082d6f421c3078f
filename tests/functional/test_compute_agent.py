"""novanet-compute, the real program, in a namespace built like the seed's compute-1.

The controller is played by this test: it serves topic ``network`` over the
real RabbitMQ (a private vhost) with the list of instances the agent must
run, and calls the agent's topic ``compute`` like novanet-network does. The
VM network peer (namespace ``lan``) holds 10.0.0.1 (the DHCP server, with a
plain dnsmasq) and an address outside the subnet, 172.16.0.5, to show what
the per-instance chain lets through.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from novanet.rpc.objects import InstanceNetwork
from tests.lib.broker import Relay, transport
from tests.lib.netns import create, veth_between
from tests.lib.paths import world_readable_dir
from tests.lib.wait import wait_for

pytestmark = [pytest.mark.root, pytest.mark.rabbit]

BIN = Path(sys.executable).parent
# The agent runs with the machine's mount view (popen_shared), so its instance
# namespaces land in the machine's /run/netns: their names must be unique to
# this run (another test run or a lab may have instance-00000001 there).
NAME_TEMPLATE = f"nt{os.getpid()}i-%08x"


def iname(n: int) -> str:
    return NAME_TEMPLATE % n


def instance(n: int, vif_type: str = "netns") -> InstanceNetwork:
    return InstanceNetwork(
        id=n,
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        name=iname(n),
        display_name=f"vm{n}",
        host="compute-1",
        vif_type=vif_type,
        mac=f"fa:16:3e:00:00:{n:02x}",
        address=f"10.0.0.{n + 1}",
        cidr="10.0.0.0/24",
        dhcp_server="10.0.0.1",
        bridge="br100",
    )


class FakeController:
    """Topic ``network``: what novanet-network would answer the agent."""

    def __init__(self) -> None:
        from novanet.rpc import transport as rpc

        self.target = rpc.target("1.0")
        self.instances: list[InstanceNetwork] = []
        self.heartbeats = 0

    def get_host_instances(self, ctxt, host):  # type: ignore[no-untyped-def]
        return [i.to_dict() for i in self.instances if i.host == host]

    def report_state(self, ctxt, host, binary, topic):  # type: ignore[no-untyped-def]
        self.heartbeats += 1


class Host:
    def __init__(self, workdir: Path, vhost, transport) -> None:
        from novanet.rpc import transport as rpc
        from novanet.rpc.compute_api import ComputeAPI

        self.workdir = workdir
        self.cmp = create("cmp")
        self.lan = create("lan")
        veth_between(self.cmp, "eth2", self.lan, "eth0")
        # the management network, as in the seed: compute-1 at .202, gateway .101
        veth_between(self.cmp, "eth1", self.lan, "mgmt")
        self.cmp.run(["ip", "addr", "add", "192.168.56.202/24", "dev", "eth1"])
        self.cmp.run(["ip", "route", "add", "default", "via", "192.168.56.101"])
        self.lan.run(["ip", "addr", "add", "192.168.56.101/24", "dev", "mgmt"])
        self.lan.run(["ip", "addr", "add", "10.0.0.1/24", "dev", "eth0"])
        self.lan.run(["ip", "addr", "add", "172.16.0.5/32", "dev", "eth0"])
        self.relay = Relay(self.cmp, workdir)
        self.controller = FakeController()
        self.server = rpc.get_server(transport, "network", "controller-1", [self.controller])
        self.server.start()
        self.compute = ComputeAPI(transport, timeout=30)
        self.dnsmasq = self.lan.popen(
            ["dnsmasq", "--no-daemon", "--port=0", "--bind-interfaces", "--listen-address=10.0.0.1",
             "--dhcp-range=10.0.0.2,static,600s", "--leasefile-ro", "--no-hosts",
             *[f"--dhcp-host=fa:16:3e:00:00:{n:02x},10.0.0.{n + 1}" for n in range(1, 6)]],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.log = workdir / "compute.log"
        self.proc: subprocess.Popen[str] | None = None
        self.vhost = vhost

    def write_conf(self, allow_same_net: bool = True) -> Path:
        conf = self.workdir / "nova.conf"
        conf.write_text(
            f"--flat_interface=eth2\n--flat_network_bridge=br100\n--instance_name_template={NAME_TEMPLATE}\n"
            "--network_manager=nova.network.manager.FlatDHCPManager\n--host=compute-1\n"
            f"--state_path={self.workdir}/state\n--rabbit_host=127.0.0.1\n"
            f"--rabbit_virtual_host={self.vhost.name}\n--report_interval=1\n"
            f"--iptables_check_interval=1\n--allow_same_net_traffic={str(allow_same_net).lower()}\n"
            "--bridge_check_interval=1\n"
        )
        return conf

    def start(self, allow_same_net: bool = True, timeout: float = 40) -> None:
        conf = self.write_conf(allow_same_net)
        mark = self.log.read_text().count("serving RPC") if self.log.exists() else 0
        self.proc = self.cmp.popen_shared(
            [str(BIN / "novanet-compute"), "--flagfile", str(conf)],
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        wait_for(lambda: self.log.read_text().count("serving RPC") > mark, "the agent to serve RPC", timeout)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        self.proc = None
        return code

    def save(self) -> list[str]:
        return [
            line.split(" [")[0] if line.startswith(":") else line
            for line in self.cmp.run(["iptables-save", "-t", "filter"]).stdout.splitlines()
            if not line.startswith("#")
        ]

    def in_instance(self, name: str, cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", name, *cmd], capture_output=True, text=True, timeout=30, **kw)

    def ping_from_lan(self, address: str, source: str = "10.0.0.1", count: int = 1) -> bool:
        out = self.lan.run(["ping", "-c", str(count), "-W", "1", "-I", source, address], check=False)
        return out.returncode == 0

    def destroy(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.server.stop()
        self.server.wait()
        self.dnsmasq.kill()
        self.relay.stop()
        # instance namespaces are global names: remove the ones the agent made
        for n in range(1, 6):
            subprocess.run(["ip", "netns", "delete", iname(n)], capture_output=True)
        self.lan.destroy()
        self.cmp.destroy()


@pytest.fixture(scope="module")
def host(vhost):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    made_transport = transport(vhost)
    workdir = world_readable_dir("cmp")
    made = Host(workdir, vhost, made_transport)
    try:
        made.controller.instances = [instance(1)]
        made.start()
        yield made
    finally:
        made.destroy()
        made_transport.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def test_start_plugs_what_the_controller_lists(host):
    assert "master br100" in host.cmp.run(["ip", "-o", "link", "show", "vnet0"]).stdout
    assert host.cmp.run(["ip", "-4", "-o", "addr", "show", "br100"]).stdout == ""
    assert host.cmp.run(["cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"]).stdout.strip() == "1"
    eth0 = host.in_instance(iname(1), ["ip", "-o", "link", "show", "eth0"]).stdout
    assert "fa:16:3e:00:00:01" in eth0
    rules = host.cmp.run(["iptables", "-S"]).stdout.splitlines()
    assert "-A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-1" in rules
    wait_for(lambda: host.controller.heartbeats > 0, "a heartbeat")


def test_dhcp_from_the_server_then_what_the_chain_lets_in(host):
    out = host.in_instance(
        iname(1),
        ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", "/bin/true"],
        check=False,
    )
    assert "lease of 10.0.0.2 obtained" in out.stdout + out.stderr
    host.in_instance(iname(1), ["ip", "addr", "add", "10.0.0.2/24", "dev", "eth0"])
    assert host.ping_from_lan("10.0.0.2", "10.0.0.1")  # same subnet: accepted
    drops = _fallback_drops(host)
    assert not host.ping_from_lan("10.0.0.2", "172.16.0.5")  # outside the subnet: dropped
    assert _fallback_drops(host) > drops
    # busybox ping reports the EPERM of a locally generated packet that OUTPUT
    # drops, as the seed's ping did (Debian 12's iputils ping stays silent).
    local = host.cmp.run(["busybox", "ping", "-c", "1", "-W", "1", "10.0.0.2"], check=False)
    assert "sendto: Operation not permitted" in local.stderr


def _fallback_drops(host) -> int:
    out = host.cmp.run(["iptables", "-L", "nova-compute-sg-fallback", "-v", "-x", "-n"]).stdout
    return int(out.splitlines()[2].split()[0])


def test_setup_and_teardown_over_rpc(host):
    vm = instance(2, vif_type="tap")
    assert host.compute.setup_instance(vm) == {"devname": "vnet1"}
    assert "-A nova-compute-local -d 10.0.0.3/32 -j nova-compute-inst-2" in host.cmp.run(["iptables", "-S"]).stdout
    assert "tun" in host.cmp.run(["ip", "-d", "link", "show", "vnet1"]).stdout
    host.compute.teardown_instance(vm)
    assert "inst-2" not in host.cmp.run(["iptables", "-S"]).stdout
    assert host.cmp.run(["ip", "link", "show", "vnet1"], check=False).returncode != 0


def test_restart_keeps_the_instance_filtered_and_connected(host):
    before = host.save()
    stop = threading.Event()
    answered = {"inside": 0, "outside": 0, "sent": 0}

    def probe() -> None:
        while not stop.is_set():
            answered["sent"] += 1
            answered["inside"] += host.ping_from_lan("10.0.0.2", "10.0.0.1")
            answered["outside"] += host.ping_from_lan("10.0.0.2", "172.16.0.5")

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        assert host.stop() == 0
        assert host.save() == before  # SIGTERM leaves rules (and devices) in place
        host.start()
        # Keep probing through the agent's first moments of serving.
        seen = answered["sent"]
        wait_for(lambda: answered["sent"] >= seen + 2, "two more probes after the restart", 30)
    finally:
        stop.set()
        prober.join()
    assert host.save() == before
    assert answered["outside"] == 0, "the instance was reachable unfiltered during the restart"
    assert answered["inside"] == answered["sent"], answered


def test_stale_instances_are_removed_at_restart(host):
    host.compute.setup_instance(instance(3))
    assert "inst-3" in host.cmp.run(["iptables", "-S"]).stdout
    host.stop()
    # deleted on the controller while the agent was down
    host.start()
    rules = host.cmp.run(["iptables", "-S"]).stdout
    assert "inst-3" not in rules and "10.0.0.4" not in rules
    assert "inst-1" in rules
    assert iname(3) not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = host.cmp.run(["ip", "-o", "link"]).stdout
    assert links.count("vnet") == 1


def test_allow_same_net_traffic_false(host):
    host.stop()
    host.start(allow_same_net=False)
    try:
        chain = host.cmp.run(["iptables", "-S", "nova-compute-inst-1"]).stdout
        assert "-s 10.0.0.0/24 -j ACCEPT" not in chain
        assert not host.ping_from_lan("10.0.0.2", "10.0.0.1")
        out = host.in_instance(
            iname(1),
            ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", "/bin/true"],
            check=False,
        )
        assert "lease of 10.0.0.2 obtained" in out.stdout + out.stderr  # DHCP still gets in
    finally:
        host.stop()
        host.start()


# What QEMU does with a tap: open it by name (TUNSETIFF with the flags it was
# made with) and keep the fd. Each line on stdin writes one broadcast frame;
# the answer is "ok" or the errno (77, EBADFD, once the tap was deleted).
TAP_HOLDER = """
import fcntl, os, struct, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", sys.argv[1].encode(), 0x0002 | 0x1000))
frame = bytes.fromhex("ffffffffffff" "fa163e000004" "88b5") + bytes(46)
print("open", flush=True)
for _ in sys.stdin:
    try:
        os.write(fd, frame)
        print("ok", flush=True)
    except OSError as exc:
        print(exc.errno, flush=True)
"""


def _ifindex(host, name: str, netns: str | None = None) -> int:
    ns = ["ip", "netns", "exec", netns] if netns else ["ip", "netns", "exec", host.cmp.name]
    out = subprocess.run([*ns, "cat", f"/sys/class/net/{name}/ifindex"], capture_output=True, text=True)
    return int(out.stdout) if out.returncode == 0 else -1


def _ports(host) -> set[str]:
    out = host.cmp.run(["ip", "-o", "link", "show", "master", "br100"], check=False).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_a_deleted_bridge_comes_back_with_every_device_unchanged(host):
    """issue 11: `ip link del br100` on a compute host, then again across an agent restart."""
    tap = instance(4, vif_type="tap")
    host.controller.instances = [instance(1), tap]
    devname = host.compute.setup_instance(tap)["devname"]
    guest = ["ip", "-4", "addr", "show", "eth0"]
    if "10.0.0.2/24" not in host.in_instance(iname(1), guest).stdout:
        host.in_instance(iname(1), ["ip", "addr", "add", "10.0.0.2/24", "dev", "eth0"])
    holder = host.cmp.popen_shared(
        [sys.executable, "-c", TAP_HOLDER, devname], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline().strip() == "open"

        def frame() -> str:
            holder.stdin.write("x\n")
            holder.stdin.flush()
            return holder.stdout.readline().strip()

        assert frame() == "ok"
        devices = {"vnet0": _ifindex(host, "vnet0"), devname: _ifindex(host, devname)}
        eth0 = _ifindex(host, "eth0", iname(1))
        assert host.ping_from_lan("10.0.0.2")

        def unchanged() -> None:
            assert {name: _ifindex(host, name) for name in devices} == devices
            assert _ifindex(host, "eth0", iname(1)) == eth0
            assert "10.0.0.2/24" in host.in_instance(iname(1), guest).stdout
            assert frame() == "ok", "the tap QEMU holds open was replaced"
            wait_for(lambda: host.ping_from_lan("10.0.0.2"), "the instance to answer pings", 10)

        # At run time: the periodic check puts the bridge and its ports back.
        host.cmp.run(["ip", "link", "del", "br100"])
        wait_for(lambda: _ports(host) == {"eth2", *devices}, "br100 with all its ports", 20)
        unchanged()

        # Deleted while the agent is down: its restart re-attaches, replaces nothing.
        assert host.stop() == 0
        host.cmp.run(["ip", "link", "del", "br100"])
        host.start()
        wait_for(lambda: _ports(host) == {"eth2", *devices}, "br100 with all its ports", 20)
        unchanged()
        assert "replacing incomplete VIF" not in host.log.read_text()
    finally:
        holder.kill()
        holder.wait()
        host.controller.instances = [instance(1)]
        host.compute.teardown_instance(tap)
