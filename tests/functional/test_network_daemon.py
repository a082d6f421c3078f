"""novanet-network, the real program, in a namespace built like the seed's controller-1.

Topology (all namespaces of this test): ``ctl`` has eth1 192.168.56.200/24
(its peer is the gateway 192.168.56.101 in ``gw``) and eth2 without an
address, whose peer is eth0 of ``vm``, a guest on the VM network. RabbitMQ
comes through a relay into ``ctl``; the test talks to the same private vhost
from outside, as novanet-manage does on a real controller.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from novanet.db import instances
from novanet.db.api import Database
from novanet.ipam import queries
from tests.lib.broker import Relay, transport
from tests.lib.netns import create, veth_between
from tests.lib.paths import SEED, world_readable_dir
from tests.lib.wait import wait_for

pytestmark = [pytest.mark.root, pytest.mark.rabbit]

BIN = Path(sys.executable).parent
MAC = "fa:16:3e:2c:e8:ec"


class Controller:
    def __init__(self, tmp: Path, vhost) -> None:
        self.tmp = tmp
        self.ctl = create("ctl")
        self.gw = create("gw")
        self.vm = create("vm")
        veth_between(self.ctl, "eth1", self.gw, "eth1")
        veth_between(self.ctl, "eth2", self.vm, "eth0")
        self.ctl.run(["ip", "addr", "add", "192.168.56.200/24", "dev", "eth1"])
        self.ctl.run(["ip", "route", "add", "default", "via", "192.168.56.101"])
        self.ctl.run(["ip", "link", "set", "eth2", "promisc", "on"])
        self.gw.run(["ip", "addr", "add", "192.168.56.101/24", "dev", "eth1"])
        self.vm.run(["ip", "link", "set", "eth0", "address", MAC])
        self.relay = Relay(self.ctl, tmp)
        self.state = tmp / "state"
        self.flagfile = tmp / "nova.conf"
        seed_lines = (SEED / "controller-nova.conf").read_text()
        self.flagfile.write_text(
            seed_lines
            + "--my_ip=192.168.56.200\n--dmz_cidr=10.128.0.0/24\n--host=controller-1\n"
            + f"--state_path={self.state}\n--rabbit_host=127.0.0.1\n"
            + f"--rabbit_virtual_host={vhost.name}\n--dnsmasq_check_interval=1\n"
            + "--iptables_check_interval=1\n--report_interval=1\n--bridge_check_interval=1\n"
        )
        self.manage("db", "sync")
        self.manage(
            "network", "create", "--label", "novanetwork", "--fixed_range_v4", "10.0.0.0/24",
            "--bridge", "br100", "--bridge_interface", "eth2",
        )
        self.db = Database(f"sqlite:///{self.state}/novanet.sqlite")
        self.proc: subprocess.Popen[str] | None = None
        self.log = tmp / "network.log"

    def manage(self, *args: str) -> str:
        out = subprocess.run(
            [str(BIN / "novanet-manage"), "--flagfile", str(self.flagfile), *args],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def start(self) -> None:
        # The log is appended to across restarts: wait for this run's line.
        mark = self.log.read_text().count("serving RPC") if self.log.exists() else 0
        log = open(self.log, "a")  # noqa: SIM115 - kept by the child
        self.proc = self.ctl.popen(
            [str(BIN / "novanet-network"), "--flagfile", str(self.flagfile)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: self.log.read_text().count("serving RPC") > mark,
            "novanet-network to serve RPC",
            30,
        )

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        self.proc = None
        return code

    def dnsmasq_pid(self) -> int | None:
        path = self.state / "networks" / "nova-br100.pid"
        try:
            pid = int(path.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def iptables(self, *args: str) -> list[str]:
        return self.ctl.run(["iptables", *args]).stdout.splitlines()

    def save(self) -> list[str]:
        # counters and comments differ between dumps; rules and order must not
        return [
            line.split(" [")[0] if line.startswith(":") else line
            for line in self.ctl.run(["iptables-save"]).stdout.splitlines()
            if not line.startswith("#")
        ]

    def dhcp(self, timeout: int = 10) -> str:
        out = self.vm.run(
            ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", "/bin/true"],
            check=False, timeout=timeout + 5,
        )
        return out.stdout + out.stderr

    def fixed(self, address: str):
        return next(r for r in queries.list_fixed_ips(self.db) if r.address == address)

    def destroy(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.relay.stop()
        self.db.dispose()
        for ns in (self.vm, self.gw, self.ctl):
            ns.destroy()


def started(cls: type[Controller], name: str, vhost: str) -> Iterator[Controller]:
    """A module fixture's body: a started controller of ``cls``, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    workdir = world_readable_dir(name)
    made = cls(workdir, vhost)
    try:
        made.start()
        yield made
    finally:
        made.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def controller(vhost):
    yield from started(Controller, "ctl", vhost)


def _seed(name: str) -> list[str]:
    """The seed's listing, nova-api-* chains included: novanet-network installs them."""
    return (SEED / name).read_text().splitlines()


def _rpc(vhost):
    from novanet.rpc.network_api import NetworkAPI

    made = transport(vhost)
    return made, NetworkAPI(made, timeout=20)


def test_the_seed_controller(controller):
    br100 = controller.ctl.run(["ip", "-4", "-o", "addr", "show", "br100"]).stdout.splitlines()
    assert "inet 10.0.0.1/24 brd 10.0.0.255 scope global br100" in br100[0]
    assert "master br100" in controller.ctl.run(["ip", "-o", "link", "show", "eth2"]).stdout
    assert controller.ctl.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
    stp = controller.ctl.run(["cat", "/sys/class/net/br100/bridge/stp_state"]).stdout.strip()
    assert stp == "0"
    assert controller.iptables("-S") == _seed("controller-iptables-filter.txt")
    assert controller.iptables("-t", "nat", "-S") == _seed("controller-iptables-nat.txt")
    networks = controller.state / "networks"
    assert (networks / "nova-br100.conf").read_text() == ""
    pid = controller.dnsmasq_pid()
    argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:-1]
    expected = [
        arg.replace("/var/lib/nova/networks", str(networks))
        .replace("/usr/bin/nova-dhcpbridge", str(BIN / "novanet-dhcpbridge"))
        .replace("120s", "86400s")
        for arg in (SEED / "controller-dnsmasq-argv.txt").read_text().split()
    ]
    assert argv == expected + ["--no-hosts", "--dhcp-authoritative"]


def test_allocation_is_leased_to_a_real_client_and_released(controller, vhost):
    transport, api = _rpc(vhost)
    try:
        inst = instances.create_instance(
            controller.db, display_name="cirros", hostname="cirros", host="compute-1", vif_type="tap"
        )
        port = api.allocate_for_instance(instance_uuid=inst.uuid, mac=MAC)
        assert port["address"] == "10.0.0.2"
        hostsfile = controller.state / "networks" / "nova-br100.conf"
        wait_for(lambda: hostsfile.read_text() == f"{MAC},cirros.novalocal,10.0.0.2\n", "the hostsfile line", 5)
        output = controller.dhcp()
        assert "lease of 10.0.0.2 obtained" in output, output
        wait_for(lambda: controller.fixed("10.0.0.2").leased, "the lease to be recorded")
        api.deallocate_for_instance(instance_uuid=inst.uuid)
        assert hostsfile.read_text() == ""
        # dnsmasq got the DHCPRELEASE and told novanet-dhcpbridge `del`
        wait_for(lambda: controller.fixed("10.0.0.2").instance_uuid is None, "the address to be freed")
        assert not controller.fixed("10.0.0.2").leased
    finally:
        transport.cleanup()


def test_dnsmasq_killed_comes_back_and_keeps_leases(controller, vhost):
    transport, api = _rpc(vhost)
    try:
        inst = instances.create_instance(
            controller.db, display_name="vm", hostname="vm", host="compute-1", vif_type="tap"
        )
        address = api.allocate_for_instance(instance_uuid=inst.uuid, mac=MAC)["address"]
        assert f"lease of {address} obtained" in controller.dhcp()
        wait_for(lambda: controller.fixed(address).leased, "the lease")
        old = controller.dnsmasq_pid()
        os.kill(old, signal.SIGKILL)
        new = wait_for(lambda: (p := controller.dnsmasq_pid()) and p != old and p, "a new dnsmasq", 10)
        assert new != old
        # the new dnsmasq learnt the lease from `init` and renews it
        assert f"lease of {address} obtained" in controller.dhcp()
        assert controller.fixed(address).leased
        api.deallocate_for_instance(instance_uuid=inst.uuid)
    finally:
        transport.cleanup()


def test_rule_deleted_by_hand_is_restored(controller):
    before = controller.iptables("-S")
    controller.ctl.run(["iptables", "-D", "nova-network-INPUT", "-i", "br100", "-p", "udp", "-m", "udp", "--dport", "67", "-j", "ACCEPT"])
    controller.ctl.run(["iptables", "-t", "nat", "-F", "nova-network-snat"])
    wait_for(lambda: controller.iptables("-S") == before, "the filter rule to come back", 10)
    wait_for(lambda: controller.iptables("-t", "nat", "-S") == _seed("controller-iptables-nat.txt"), "nat", 10)


def test_sigterm_leaves_everything_and_restart_converges(controller):
    controller.ctl.run(["iptables", "-N", "foreign"])
    controller.ctl.run(["iptables", "-A", "INPUT", "-j", "foreign"])
    controller.ctl.run(["iptables", "-A", "foreign", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
    before = controller.save()
    pid = controller.dnsmasq_pid()
    assert controller.stop() == 0
    assert controller.save() == before
    assert controller.dnsmasq_pid() == pid
    assert "10.0.0.1/24" in controller.ctl.run(["ip", "-4", "addr", "show", "br100"]).stdout
    controller.start()
    after = controller.save()
    assert after == before  # no duplicate, nothing reordered, the foreign rule kept
    assert controller.dnsmasq_pid() == pid  # adopted (SIGHUP), not a second dnsmasq
    filter_rules = controller.iptables("-S")
    assert filter_rules.index("-A INPUT -j nova-network-INPUT") < filter_rules.index("-A INPUT -j foreign")


def test_a_deleted_bridge_comes_back_and_dnsmasq_serves_again(controller, vhost):
    """issue 11: `ip link del br100` on the controller, at run time and while it is down."""
    transport, api = _rpc(vhost)
    try:
        inst = instances.create_instance(
            controller.db, display_name="vm", hostname="vm", host="compute-1", vif_type="tap"
        )
        address = api.allocate_for_instance(instance_uuid=inst.uuid, mac=MAC)["address"]
        # active, as a finished create leaves it: the restart below must not
        # roll it back as a create interrupted by a crash
        instances.update_instance(controller.db, inst.id, state="active")
        assert f"lease of {address} obtained" in controller.dhcp()
        controller.vm.run(["ip", "addr", "add", f"{address}/24", "dev", "eth0"])

        def repaired(old_pid: int) -> bool:
            first = controller.ctl.run(["ip", "-4", "-o", "addr", "show", "br100"], check=False)
            eth2 = controller.ctl.run(["ip", "-o", "link", "show", "eth2"]).stdout
            pid = controller.dnsmasq_pid()
            return (
                "inet 10.0.0.1/24 brd 10.0.0.255" in first.stdout.split("\n")[0]
                and "master br100" in eth2
                and pid is not None
                and pid != old_pid
            )

        def serving() -> None:
            assert f"lease of {address} obtained" in controller.dhcp()  # DHCP answered
            ping = ["ping", "-c", "1", "-W", "1", address]
            wait_for(lambda: controller.ctl.run(ping, check=False).returncode == 0, "a ping", 10)
            assert controller.fixed(address).leased

        old = controller.dnsmasq_pid()
        controller.ctl.run(["ip", "link", "del", "br100"])
        wait_for(lambda: repaired(old), "br100, eth2, 10.0.0.1 and a new dnsmasq", 20)
        serving()

        old = controller.dnsmasq_pid()
        assert controller.stop() == 0
        controller.ctl.run(["ip", "link", "del", "br100"])
        controller.start()
        wait_for(lambda: repaired(old), "br100, eth2, 10.0.0.1 and a new dnsmasq", 20)
        serving()
        api.deallocate_for_instance(instance_uuid=inst.uuid)
    finally:
        controller.vm.run(["ip", "addr", "flush", "dev", "eth0"], check=False)
        transport.cleanup()
