"""Anti-spoofing against real forged frames on a real bridge (no daemons).

Namespaces: ``host`` holds br100 with the uplink eth2 (to ``lan``, the
gateway 10.0.0.1), two veth instance ports vnet0/vnet1 (guests ``a`` and
``b``) and a tap vnet2 written to as QEMU would; and a second bridge
br-other whose port is even named vnet9 (guests ``c`` and ``d``), which
is no instance port. The table is the agent's own (PortFilter over the real
kernel). Each attack is also run with the table deleted (``control``),
which shows the frames do get through without it: the test can fail.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from novanet.compute import antispoof
from novanet.linux.iptables.manager import IptablesManager
from novanet.linux.iptables.runner import IptablesRunner
from novanet.linux.nftables.backend import NftKernel
from novanet.linux.nftables.generation import SharedGeneration
from novanet.linux.nftables.table import NftTable
from novanet.rpc.objects import InstanceNetwork
from tests.lib import frames as fr
from tests.lib.netns import Namespace, create, veth_between
from tests.lib.wait import wait_for

pytestmark = [pytest.mark.root]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAN_MAC, A_MAC, B_MAC, T_MAC = (
    "02:00:00:00:00:01", "fa:16:3e:00:00:02", "fa:16:3e:00:00:03", "fa:16:3e:00:00:04",
)  # fmt: skip
LAN_IP, A_IP, B_IP, T_IP = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"
FENCE_MACS = ("02:00:00:00:fe:01", "02:00:00:00:fe:02")  # never sent by anyone


def instance(n: int, mac: str, address: str) -> InstanceNetwork:
    return InstanceNetwork(
        id=n, uuid=f"00000000-0000-4000-8000-{n:012d}", name=f"instance-{n:08x}",
        display_name=f"vm{n}", host="host", vif_type="netns", mac=mac, address=address,
        cidr="10.0.0.0/24", dhcp_server=LAN_IP, bridge="br100",
    )  # fmt: skip


PORTS = {"vnet0": instance(2, A_MAC, A_IP), "vnet1": instance(3, B_MAC, B_IP),
         "vnet2": instance(4, T_MAC, T_IP)}  # fmt: skip


@dataclass
class World:
    host: Namespace
    lan: Namespace
    a: Namespace
    b: Namespace
    c: Namespace
    d: Namespace
    ports: antispoof.PortFilter

    def filtered(self, on: bool) -> None:
        if on:
            self.ports.converge(PORTS)
        else:
            self.ports.disable()
            self.ports = antispoof.PortFilter(NftTable(antispoof.TABLE, NftKernel(self.host.name)))


def guest(name: Namespace, mac: str, cidr: str) -> None:
    name.run(["ip", "link", "set", "eth0", "address", mac])
    name.run(["ip", "addr", "add", cidr, "dev", "eth0"])
    # An attacker just waits out the ARP lock time; the control runs must not have to.
    name.run(["sysctl", "-qw", "net.ipv4.neigh.eth0.locktime=0"])


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    made: list[Namespace] = []
    try:
        host, lan, a, b, c, d = (create(tag) for tag in ("h", "l", "a", "b", "c", "d"))
        made += [host, lan, a, b, c, d]
        ports = antispoof.PortFilter(NftTable(antispoof.TABLE, NftKernel(host.name)))
        ports.converge(PORTS)  # in place before any port is on the bridge
        for bridge in ("br100", "br-other"):
            host.run(["ip", "link", "add", bridge, "type", "bridge", "forward_delay", "0"])
            host.run(["ip", "link", "set", bridge, "up"])
        for port, peer, bridge in (("eth2", lan, "br100"), ("vnet0", a, "br100"),
                                   ("vnet1", b, "br100"), ("vnet9", c, "br-other"),
                                   ("up9", d, "br-other")):  # fmt: skip
            veth_between(host, port, peer, "eth0")
            host.run(["ip", "link", "set", port, "master", bridge])
        host.run(["ip", "tuntap", "add", "vnet2", "mode", "tap"])
        host.run(["ip", "link", "set", "vnet2", "address", "fe:16:3e:00:00:04"])
        host.run(["ip", "link", "set", "vnet2", "master", "br100", "up"])
        guest(lan, LAN_MAC, f"{LAN_IP}/24")
        guest(a, A_MAC, f"{A_IP}/24")
        guest(b, B_MAC, f"{B_IP}/24")
        guest(c, "02:00:00:00:09:01", "10.9.0.1/24")
        guest(d, "02:00:00:00:09:02", "10.9.0.2/24")
        yield World(host, lan, a, b, c, d, ports)
    finally:
        for ns in reversed(made):
            ns.destroy()


@pytest.fixture(params=[True, False], ids=["filtered", "control"])
def filtering(request: pytest.FixtureRequest, world: World) -> Iterator[bool]:
    world.filtered(request.param)
    try:
        yield request.param
    finally:
        world.filtered(True)


def from_port(world: World, port: str, forged: list[bytes], tag: str) -> None:
    """Send ``forged`` then an honest marker into the bridge through an instance port."""
    if port == "vnet2":
        burst = [*forged, fr.marker(T_MAC, T_IP, tag)]
        argv = [sys.executable, "-m", "tests.lib.frames", "tap", "vnet2", *(f.hex() for f in burst)]
        subprocess.run(["ip", "netns", "exec", world.host.name, *argv], check=True, cwd=ROOT)
    else:
        fr.send(world.a.name, "eth0", [*forged, fr.marker(A_MAC, A_IP, tag)])


def seen_at(world: World, ns: Namespace, send: object, tag: str) -> list[bytes]:
    watcher = fr.Watcher(ns.name, "eth0")
    try:
        send()  # type: ignore[operator]
        got = watcher.until(tag)
    finally:
        watcher.close()
    assert got is not None, f"the honest marker {tag} never arrived: the port passes nothing"
    return got


def test_honest_traffic_flows(world: World) -> None:
    world.a.run(["ping", "-c", "1", "-W", "5", LAN_IP])
    world.a.run(["ping", "-c", "1", "-W", "5", B_IP])
    world.lan.run(["ping", "-c", "1", "-W", "5", B_IP])


@pytest.mark.parametrize("port", ["vnet0", "vnet2"], ids=["veth", "tap"])
def test_another_source_ip(world: World, filtering: bool, port: str) -> None:
    mac = A_MAC if port == "vnet0" else T_MAC
    forged = fr.ether(LAN_MAC, mac, fr.ETH_P_IP, fr.icmp_echo("10.0.0.77", LAN_IP, 77, 1))
    got = seen_at(
        world, world.lan, lambda: from_port(world, port, [forged], f"ip-{port}"), f"ip-{port}"
    )
    assert fr.contains(got, forged[14:]) is not filtering


@pytest.mark.parametrize("port", ["vnet0", "vnet2"], ids=["veth", "tap"])
def test_another_source_mac(world: World, filtering: bool, port: str) -> None:
    ip = A_IP if port == "vnet0" else T_IP
    # B's MAC (stealing its forwarding entry) and a made-up one.
    forged = [
        fr.ether(fr.BROADCAST, mac, fr.ETH_P_IP, fr.udp(ip, "10.0.0.255", 7, 7, mac.encode()))
        for mac in (B_MAC, "fa:16:3e:aa:bb:cc")
    ]
    with fdb_events(world.host) as events:
        got = seen_at(
            world, world.lan, lambda: from_port(world, port, forged, f"mac-{port}"), f"mac-{port}"
        )
    assert fr.contains(got, forged[0][12:]) is not filtering
    assert fr.contains(got, forged[1][12:]) is not filtering
    # The bridge learns a source MAC after the prerouting hook: a dropped
    # frame never moved B's forwarding entry to the attacker's port. (Read
    # as the bridge's events, not as its table afterwards: B's own next
    # frame moves its entry back at once.)
    moved = [line for line in events if line.startswith(f"{B_MAC} dev {port} ")]
    assert bool(moved) is not filtering, events
    world.b.run(["ping", "-c", "1", "-W", "5", LAN_IP])  # B's entry back on its port


@contextlib.contextmanager
def fdb_events(ns: Namespace) -> Iterator[list[str]]:
    """The lines of ``bridge monitor fdb`` while the block runs, all of them read.

    A static entry added and deleted before and after fences the monitor's
    output: once its line is read, every earlier event has been too.
    """
    proc = ns.popen(["bridge", "monitor", "fdb"], stdout=subprocess.PIPE)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def fence(mac: str) -> None:
        ns.run(["bridge", "fdb", "add", mac, "dev", "vnet0", "master", "static"])
        ns.run(["bridge", "fdb", "del", mac, "dev", "vnet0", "master"])
        wait_for(lambda: any(mac in line for line in list(lines)), f"the fdb event of {mac}", 10)

    try:
        fence(FENCE_MACS[0])
        events: list[str] = []
        yield events
        fence(FENCE_MACS[1])
        events.extend(lines)
    finally:
        proc.terminate()
        proc.wait()
        reader.join(10)


def neighbour(ns: Namespace, address: str) -> str:
    out = ns.run(["ip", "neigh", "show", address, "dev", "eth0"]).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else ""


def test_arp_claiming_other_addresses(world: World, filtering: bool) -> None:
    # The gateway knows B, B knows the gateway: the entries an attacker wants to move.
    world.b.run(["ping", "-c", "1", "-W", "5", LAN_IP])
    world.lan.run(["ping", "-c", "1", "-W", "5", B_IP])
    assert neighbour(world.lan, B_IP) == B_MAC and neighbour(world.b, LAN_IP) == LAN_MAC
    zero = "00:00:00:00:00:00"
    forged = [
        # A's own Ethernet source with somebody else's MAC as ARP sender
        fr.ether(fr.BROADCAST, A_MAC, fr.ETH_P_ARP, fr.arp(1, B_MAC, B_IP, zero, B_IP)),
        # gratuitous ARP for B's address, a reply to the gateway claiming it
        fr.ether(fr.BROADCAST, A_MAC, fr.ETH_P_ARP, fr.arp(1, A_MAC, B_IP, zero, B_IP)),
        fr.ether(LAN_MAC, A_MAC, fr.ETH_P_ARP, fr.arp(2, A_MAC, B_IP, LAN_MAC, LAN_IP)),
        # the same for the gateway's address, towards B
        fr.ether(fr.BROADCAST, A_MAC, fr.ETH_P_ARP, fr.arp(1, A_MAC, LAN_IP, zero, LAN_IP)),
        fr.ether(B_MAC, A_MAC, fr.ETH_P_ARP, fr.arp(2, A_MAC, LAN_IP, B_MAC, B_IP)),
    ]  # fmt: skip
    honest = [
        fr.ether(fr.BROADCAST, A_MAC, fr.ETH_P_ARP, fr.arp(1, A_MAC, A_IP, zero, A_IP)),
        fr.ether(fr.BROADCAST, A_MAC, fr.ETH_P_ARP, fr.arp(1, A_MAC, "0.0.0.0", zero, A_IP)),
    ]  # fmt: skip
    at_b = fr.Watcher(world.b.name, "eth0")
    try:
        got = seen_at(
            world, world.lan, lambda: from_port(world, "vnet0", forged + honest, "arp"), "arp"
        )
        got_b = at_b.until("arp")
    finally:
        at_b.close()
    assert got_b is not None
    assert fr.contains(got, honest[0][12:]) and fr.contains(got, honest[1][12:])
    for frame in forged:
        assert fr.contains(got + got_b, frame[12:42]) is not filtering
    moved = neighbour(world.lan, B_IP) == A_MAC, neighbour(world.b, LAN_IP) == A_MAC
    assert moved == ((False, False) if filtering else (True, True))
    world.lan.run(["ip", "neigh", "flush", "dev", "eth0"])
    world.b.run(["ip", "neigh", "flush", "dev", "eth0"])


def test_dhcp_server_messages_and_requests_for_others(world: World, filtering: bool) -> None:
    offer = fr.dhcp(2, B_MAC, 0x1234, 2, yiaddr="10.0.0.99")
    release = fr.dhcp(1, B_MAC, 0x77, 7)  # DHCPRELEASE of B's lease, sent by A
    forged = [
        fr.ether(fr.BROADCAST, A_MAC, fr.ETH_P_IP, fr.udp(A_IP, "255.255.255.255", 67, 68, offer)),
        # any source port, straight to the client's port
        fr.ether(B_MAC, A_MAC, fr.ETH_P_IP, fr.udp(A_IP, B_IP, 1067, 68, offer)),
        fr.ether(LAN_MAC, A_MAC, fr.ETH_P_IP, fr.udp(A_IP, LAN_IP, 68, 67, release)),
    ]
    discover = fr.dhcp(1, A_MAC, 0x4321, 1)
    renewal = fr.dhcp(1, A_MAC, 0x4322, 3)
    honest = [
        fr.ether(
            fr.BROADCAST, A_MAC, fr.ETH_P_IP, fr.udp("0.0.0.0", "255.255.255.255", 68, 67, discover)
        ),
        fr.ether(LAN_MAC, A_MAC, fr.ETH_P_IP, fr.udp(A_IP, LAN_IP, 68, 67, renewal)),
    ]
    at_lan = fr.Watcher(world.lan.name, "eth0")
    try:
        got = seen_at(
            world, world.b, lambda: from_port(world, "vnet0", [*forged, *honest], "dhcp"), "dhcp"
        )
        got_lan = at_lan.until("dhcp")
    finally:
        at_lan.close()
    assert got_lan is not None
    assert all(fr.contains(got_lan, frame[14:]) for frame in honest)
    for frame in forged:
        assert fr.contains(got + got_lan, frame[14:]) is not filtering


def test_other_ethertypes(world: World, filtering: bool) -> None:
    ipv6 = fr.ether(
        fr.BROADCAST, A_MAC, fr.ETH_P_IPV6, bytes.fromhex("6000000000083aff") + b"\0" * 40
    )
    tagged = fr.ether(
        fr.BROADCAST, A_MAC, fr.ETH_P_8021Q,
        bytes.fromhex("00050800") + fr.udp("10.0.0.66", "10.0.0.255", 7, 7, b"tagged"),
    )  # fmt: skip
    got = seen_at(
        world, world.lan, lambda: from_port(world, "vnet0", [ipv6, tagged], "types"), "types"
    )
    assert fr.contains(got, ipv6[12:]) is not filtering
    assert fr.contains(got, b"tagged") is not filtering


def test_ports_that_are_not_instance_ports_are_left_alone(world: World) -> None:
    # From the uplink: any MAC and address (the gateway forwards for others).
    outside = fr.ether(
        fr.BROADCAST,
        "02:00:00:00:99:99",
        fr.ETH_P_IP,
        fr.udp("192.0.2.1", "10.0.0.255", 7, 7, b"out"),
    )
    got = seen_at(
        world,
        world.a,
        lambda: fr.send(world.lan.name, "eth0", [outside, fr.marker(LAN_MAC, LAN_IP, "up")]),
        "up",
    )
    assert fr.contains(got, outside[12:])
    # A port named vnet9 on another bridge: not ours.
    other = fr.ether(
        fr.BROADCAST, "02:00:00:00:99:98", fr.ETH_P_IP, fr.udp("10.0.0.2", "10.9.0.255", 7, 7, b"o")
    )
    burst = [other, fr.marker("02:00:00:00:09:01", "10.9.0.1", "br")]
    got = seen_at(world, world.d, lambda: fr.send(world.c.name, "eth0", burst), "br")
    assert fr.contains(got, other[12:])


def test_the_table_is_replaced_atomically_under_a_flood(world: World) -> None:
    """Each new NftTable writes the table whole at its first look (an agent restart)."""
    forged = fr.ether(LAN_MAC, A_MAC, fr.ETH_P_IP, fr.icmp_echo("10.0.0.77", LAN_IP, 99, 1))
    watcher = fr.Watcher(world.lan.name, "eth0")
    done = threading.Event()

    def flood() -> None:
        while not done.is_set():
            fr.send(world.a.name, "eth0", [forged] * 200)

    sender = threading.Thread(target=flood)
    sender.start()
    try:
        for _ in range(15):
            restarted = antispoof.PortFilter(NftTable(antispoof.TABLE, NftKernel(world.host.name)))
            restarted.ensure(PORTS)
            restarted.table.close()
    finally:
        done.set()
        sender.join()
    fr.send(world.a.name, "eth0", [fr.marker(A_MAC, A_IP, "flood")])
    got = watcher.until("flood")
    watcher.close()
    assert got is not None and not fr.contains(got, forged[14:])


def test_drop_counters_are_not_drift(world: World) -> None:
    world.ports.converge(PORTS)
    forged = fr.ether(LAN_MAC, A_MAC, fr.ETH_P_IP, fr.icmp_echo("10.0.0.78", LAN_IP, 78, 1))
    seen_at(world, world.lan, lambda: from_port(world, "vnet0", [forged] * 5, "count"), "count")
    listing = world.host.run(["nft", "list", "chain", "bridge", "novanet", "vif_ip"]).stdout
    assert 'packets 0 bytes 0 drop comment "source IP is not the instance\'s"' not in listing
    world.host.run(["iptables", "-N", "novanet-test-commit"])  # somebody commits something
    world.host.run(["iptables", "-X", "novanet-test-commit"])
    assert world.ports.check() == []  # read, and found as it was written


def test_drift_is_repaired(world: World) -> None:
    world.ports.converge(PORTS)
    world.host.run(["nft", "flush", "table", "bridge", "novanet"])
    assert world.ports.check()[0].endswith("(its rules or sets were changed) with 12 element(s)")
    world.host.run(
        ["nft", "delete", "element", "bridge", "novanet", "vif_ips", '{ "vnet1" . 10.0.0.3 }']
    )
    world.host.run(
        ["nft", "add", "element", "bridge", "novanet", "vif_ips", '{ "vnet0" . 10.0.0.77 }']
    )
    assert world.ports.check() == [
        'table bridge novanet: removed vif_ips { "vnet0" . 10.0.0.77 }',
        'table bridge novanet: added vif_ips { "vnet1" . 10.0.0.3 }',
    ]
    world.host.run(["nft", "delete", "table", "bridge", "novanet"])
    assert world.ports.check()[0].endswith("(it was missing) with 12 element(s)")
    assert world.ports.check() == []
    forged = fr.ether(LAN_MAC, A_MAC, fr.ETH_P_IP, fr.icmp_echo("10.0.0.79", LAN_IP, 79, 1))
    got = seen_at(
        world, world.lan, lambda: from_port(world, "vnet0", [forged], "repaired"), "repaired"
    )
    assert not fr.contains(got, forged[14:])


def test_the_iptables_manager_keeps_trusting_its_view(world: World) -> None:
    """Our element commits are hidden from its change probe; anybody else's are not."""
    generation = SharedGeneration(world.host.name)
    runner = IptablesRunner("nft", netns=world.host.name, generation=generation)
    iptables = IptablesManager("compute", runner)
    ports = antispoof.PortFilter(NftTable(antispoof.TABLE, NftKernel(world.host.name, generation)))
    try:
        iptables.full_sync()
        ports.converge(PORTS)
        with iptables.defer_apply():
            iptables.ipv4["filter"].add_chain("inst-1")
            iptables.ipv4["filter"].set_rules("inst-1", ["-j DROP"])
        view = iptables.view("filter")
        assert view.current(runner.token())
        ports.filter("vnet5", instance(5, "fa:16:3e:00:00:05", "10.0.0.5"))
        ports.unfilter("fa:16:3e:00:00:05")
        assert view.current(runner.token()), "our own anti-spoofing commits look like drift"
        world.host.run(["iptables", "-N", "novanet-test-commit"])
        assert not view.current(runner.token())
        world.host.run(["iptables", "-X", "novanet-test-commit"])
        assert iptables.check_and_repair() == [] and wait_for(
            lambda: iptables.view("filter").current(runner.token()), "a settled view", 5
        )
    finally:
        iptables.ipv4["filter"].remove_chain("inst-1")
        iptables.apply()
        iptables.close()
        ports.table.close()
