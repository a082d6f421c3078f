"""Anti-spoofing in the seed's datacenter: real attacks from guests, the real daemons.

One lab for the module (metadata on): the attacker ``cirros`` (10.0.0.2,
netns VIF) and ``victim`` on compute-1, ``far`` on compute-2, and ``tapper``,
an instance on compute-1 with a tap VIF whose frames this test writes into
the tap as QEMU would. Forged frames are sent by tests/lib/frames.py in the
guest (or the tap's node); a watcher in the receiving namespace reads until
the honest marker frame that ends each burst, so a drop is observed, not
assumed after a sleep. The same attacks succeed without the table
(tests/functional/test_antispoof.py runs them both ways).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

import pytest

from novanet.lab.cloud import Cloud
from novanet.lab.instances import Booted, Instance, guest_prefix
from tests.e2e.helpers import E2E, Pinger, renewed, running_cloud, wait_for
from tests.lib import frames as fr

pytestmark = E2E

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMES = os.path.join(TESTS, "lib", "frames.py")
CHECK_INTERVAL = 2  # the lab's iptables_check_interval
ZERO = "00:00:00:00:00:00"

World = tuple[Cloud, Booted, Booted, Booted, Instance]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_cloud(metadata=True) as cloud:
        cirros = cloud.instances.boot("cirros", "compute-1", "fa:16:3e:2c:e8:ec")
        victim = cloud.instances.boot("victim", "compute-1")
        far = cloud.instances.boot("far", "compute-2")
        tapper = cloud.instances.create("tapper", "compute-1", vif_type="tap")
        yield cloud, cirros, victim, far, tapper


def prefix(inst: Instance | None) -> list[str]:
    return guest_prefix(inst) if inst is not None else []


class Watch:
    """tests/lib/frames.py watching an interface of a node or guest until a marker."""

    def __init__(
        self,
        cloud: Cloud,
        node: str,
        inst: Instance | None,
        iface: str,
        tag: str,
        needle: bytes = b"",
        seconds: int = 30,
    ) -> None:
        argv = [*prefix(inst), sys.executable, FRAMES, "watch", iface, tag, str(seconds)]
        self.proc = subprocess.Popen(
            cloud.lab.command(node, [*argv, *([needle.hex()] if needle else [])]),
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def frames(self, timeout: float = 90) -> list[bytes]:
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, "the honest marker never arrived: the port passes nothing"
        return [bytes.fromhex(line) for line in out.split()]


def send(cloud: Cloud, inst: Instance, frames: Sequence[bytes]) -> None:
    """Frames out of an instance's eth0 (a netns guest) or into its tap (no guest runs on it)."""
    hexes = [frame.hex() for frame in frames]
    if is_tap(cloud, inst):
        cloud.lab.execute(inst.host, [sys.executable, FRAMES, "tap", str(inst.device), *hexes])
    else:
        argv = [*guest_prefix(inst), sys.executable, FRAMES, "send", "eth0", *hexes]
        cloud.lab.execute(inst.host, argv)


def is_tap(cloud: Cloud, inst: Instance) -> bool:
    out, _ = cloud.lab.execute(inst.host, ["ip", "-d", "link", "show", str(inst.device)])
    return "tun type tap" in out


def br100_mac(cloud: Cloud) -> str:
    out, _ = cloud.lab.execute("controller-1", ["cat", "/sys/class/net/br100/address"])
    return out.strip()


def static_neighbour(cloud: Cloud, address: str, mac: str) -> None:
    argv = ["ip", "neigh", "replace", address, "lladdr", mac, "dev", "br100", "nud", "permanent"]
    cloud.lab.execute("controller-1", argv)


def neighbour(cloud: Cloud, node: str, inst: Instance | None, dev: str, address: str) -> str:
    out, _ = cloud.lab.execute(node, [*prefix(inst), "ip", "neigh", "show", address, "dev", dev])
    words = out.split()
    return words[words.index("lladdr") + 1] if "lladdr" in words else ""


def ip_of(inst: Instance) -> str:
    assert inst.address is not None
    return inst.address


def attack(cloud: Cloud, attacker: Instance, forged: Sequence[bytes], tag: str) -> list[bytes]:
    """Send ``forged`` then a marker from ``attacker``; the forged frames that arrived."""
    watch = Watch(cloud, "controller-1", None, "br100", tag)
    assert attacker.mac is not None
    send(cloud, attacker, [*forged, fr.marker(attacker.mac, ip_of(attacker), tag)])
    got = watch.frames()
    return [frame for frame in forged if fr.contains(got, frame[12:])]


@pytest.mark.parametrize("who", ["cirros", "tapper"], ids=["netns", "tap"])
def test_another_source_ip_is_dropped(world: World, who: str) -> None:
    cloud, cirros, _, _, tapper = world
    attacker = cirros.instance if who == "cirros" else tapper
    assert attacker.mac is not None
    # A static neighbour on the controller: only IP filtering can stop this.
    static_neighbour(cloud, "10.0.0.77", attacker.mac)
    try:
        ping = fr.icmp_echo("10.0.0.77", "10.0.0.1", 77, 1)
        forged = fr.ether(br100_mac(cloud), attacker.mac, fr.ETH_P_IP, ping)
        assert attack(cloud, attacker, [forged], f"ip-{who}") == []
        if who == "cirros":  # and as the guest itself would do it
            script = (
                "ip addr add 10.0.0.77/32 dev eth0; ping -c 2 -W 2 -I 10.0.0.77 10.0.0.1; rc=$?; "
                "ip addr del 10.0.0.77/32 dev eth0; exit $rc"
            )
            _, _, code = cloud.instances.run_in("cirros", ["sh", "-c", script])
            assert code != 0, "the controller answered a guest using another address"
    finally:
        cloud.lab.execute("controller-1", ["ip", "neigh", "del", "10.0.0.77", "dev", "br100"])
    assert cloud.instances.ping("controller-1", "cirros").ok


@pytest.mark.parametrize("who", ["cirros", "tapper"], ids=["netns", "tap"])
def test_another_mac_is_dropped(world: World, who: str) -> None:
    cloud, cirros, victim, _, tapper = world
    attacker = cirros.instance if who == "cirros" else tapper
    source = ip_of(attacker)
    forged = [
        fr.ether(fr.BROADCAST, mac, fr.ETH_P_IP, fr.udp(source, "10.0.0.255", 7, 7, mac.encode()))
        for mac in (str(victim.instance.mac), "fa:16:3e:aa:bb:cc")
    ]
    assert attack(cloud, attacker, forged, f"mac-{who}") == []
    if who == "cirros":  # the guest changes its MAC for real: it is cut off until it puts it back
        mac = str(cirros.instance.mac)
        cloud.instances.run_in(
            "cirros", ["ip", "link", "set", "eth0", "address", "fa:16:3e:aa:bb:cc"]
        )
        try:
            assert not cloud.instances.ping("cirros", "10.0.0.1", count=2).ok
        finally:
            cloud.instances.run_in("cirros", ["ip", "link", "set", "eth0", "address", mac])
        assert wait_for(lambda: cloud.instances.ping("cirros", "10.0.0.1", count=1).ok, 10)


@pytest.mark.parametrize("who", ["cirros", "tapper"], ids=["netns", "tap"])
def test_arp_cannot_move_anybodys_neighbour_entry(world: World, who: str) -> None:
    cloud, cirros, victim, far, tapper = world
    attacker = cirros.instance if who == "cirros" else tapper
    mac, gateway = str(attacker.mac), br100_mac(cloud)
    v_ip, v_mac = ip_of(victim.instance), str(victim.instance.mac)
    # Entries the attacker wants: the controller's for the victim, the
    # victim's and far's for the gateway. No lock time: ARP would move them at once.
    cloud.lab.execute("controller-1", ["sysctl", "-qw", "net.ipv4.neigh.br100.locktime=0"])
    for guest in ("victim", "far"):
        cloud.instances.run_in(guest, ["sysctl", "-qw", "net.ipv4.neigh.eth0.locktime=0"])
        assert cloud.instances.ping(guest, "10.0.0.1", count=1).ok
    assert cloud.instances.ping("controller-1", "victim", count=1).ok
    forged = [
        fr.ether(fr.BROADCAST, mac, fr.ETH_P_ARP, fr.arp(1, mac, v_ip, ZERO, v_ip)),  # gratuitous
        fr.ether(gateway, mac, fr.ETH_P_ARP, fr.arp(2, mac, v_ip, gateway, "10.0.0.1")),  # reply
        fr.ether(fr.BROADCAST, mac, fr.ETH_P_ARP, fr.arp(1, mac, "10.0.0.1", ZERO, "10.0.0.1")),
        fr.ether(v_mac, mac, fr.ETH_P_ARP, fr.arp(2, mac, "10.0.0.1", v_mac, v_ip)),
    ]
    far_watch = Watch(cloud, "compute-2", far.instance, "eth0", f"arp-{who}")
    assert attack(cloud, attacker, forged, f"arp-{who}") == []
    far_watch.frames()
    assert neighbour(cloud, "controller-1", None, "br100", v_ip) == v_mac
    assert neighbour(cloud, "compute-1", victim.instance, "eth0", "10.0.0.1") == gateway
    assert neighbour(cloud, "compute-2", far.instance, "eth0", "10.0.0.1") == gateway
    assert cloud.instances.ping("controller-1", "victim", count=1).ok


def test_a_rogue_dhcp_server_in_a_guest_answers_nobody(world: World) -> None:
    cloud, cirros, _, _, _ = world
    conf = os.path.join(cloud.lab.paths.guests_dir("compute-1"), "rogue-udhcpd.conf")
    with open(conf, "w") as handle:
        handle.write(
            "start 10.0.0.200\nend 10.0.0.210\ninterface eth0\n"
            f"lease_file {conf}.leases\noption subnet 255.255.255.0\noption router 10.0.0.2\n"
        )
    open(f"{conf}.leases", "w").close()
    # What the rogue's port hands the bridge, and what reaches the newcomer:
    # the rogue's offers carry "router 10.0.0.2".
    rogue_router = bytes.fromhex("03040a000002")
    device = str(cirros.instance.device)
    sent = Watch(cloud, "compute-1", None, device, "rogue", needle=rogue_router, seconds=90)
    # -a 0: no ARP check of the address first, so the rogue answers at once.
    argv = [*guest_prefix(cirros.instance), "busybox", "udhcpd", "-f", "-a", "0", conf]
    cloud.lab.start_process("compute-1", "rogue-udhcpd", argv)
    newcomer = cloud.instances.create("newcomer", "compute-1")
    received = Watch(cloud, "compute-1", newcomer, "eth0", "rogue", needle=rogue_router, seconds=90)
    try:
        lease = cloud.instances.start_guest(newcomer)
        # dnsmasq's answer: the fixed IP and the real gateway, not the rogue's pool.
        assert lease.address == f"{ip_of(newcomer)}/24" and lease.router == "10.0.0.1"
        assert renewed(cloud, Booted(newcomer, lease, 0.0))
    finally:
        cloud.lab.stop_process("compute-1", "rogue-udhcpd")
        send(
            cloud,
            cirros.instance,
            [fr.marker(str(cirros.instance.mac), ip_of(cirros.instance), "rogue")],
        )
    assert sent.frames(), "the rogue server sent no offer: the test proved nothing"
    assert received.frames() == [], "the rogue's offers reached the new instance"
    cloud.instances.delete("newcomer")


def test_no_guest_can_release_anothers_lease(world: World) -> None:
    # dnsmasq knows a client by the DHCP message's chaddr, not by who sent it.
    cloud, cirros, victim, _, _ = world
    v_ip, v_mac = ip_of(victim.instance), str(victim.instance.mac)
    release = fr.dhcp(1, v_mac, 0x5EED, 7, ciaddr=v_ip, server="10.0.0.1")
    packet = fr.udp(ip_of(cirros.instance), "10.0.0.1", 68, 67, release)
    forged = fr.ether(br100_mac(cloud), str(cirros.instance.mac), fr.ETH_P_IP, packet)
    assert attack(cloud, cirros.instance, [forged], "release") == []
    rows = {r["address"]: r for r in cloud.novanet.manage_json("fixed", "list")}
    assert rows[v_ip]["leased"] is True


def test_a_borrowed_address_reads_no_metadata(world: World) -> None:
    cloud, cirros, victim, _, _ = world
    v_ip = ip_of(victim.instance)
    url = "http://169.254.169.254/2009-04-04/meta-data/instance-id"
    get = [sys.executable, FRAMES, "get"]
    own, _, code = cloud.instances.run_in("cirros", [*get, ip_of(cirros.instance), url, "10"])
    assert code == 0 and own == f"i-{cirros.instance.id:08x}"  # its own: fine
    # As if the controller's ARP entry for the victim had been poisoned, and
    # the attacker holds the victim's address: only IP filtering stands.
    static_neighbour(cloud, v_ip, str(cirros.instance.mac))
    cloud.instances.run_in("cirros", ["ip", "addr", "add", f"{v_ip}/32", "dev", "eth0"])
    try:
        out, err, code = cloud.instances.run_in("cirros", [*get, v_ip, url, "5"])
        assert code != 0 and f"i-{victim.instance.id:08x}" not in out, out + err
    finally:
        cloud.instances.run_in("cirros", ["ip", "addr", "del", f"{v_ip}/32", "dev", "eth0"])
        cloud.lab.execute("controller-1", ["ip", "neigh", "del", v_ip, "dev", "br100"])


def test_honest_traffic_and_renewals(world: World) -> None:
    cloud, cirros, victim, far, _ = world
    for source, destination in (("cirros", "far"), ("far", "victim"), ("controller-1", "cirros"),
                                ("cirros", "192.168.56.101")):  # fmt: skip
        result = cloud.instances.ping(source, destination, count=2)
        assert result.ok, result.output
    assert renewed(cloud, cirros) and renewed(cloud, far)


def test_the_table_flushed_by_hand_comes_back(world: World) -> None:
    cloud, cirros, _, _, _ = world

    def table() -> str:
        out, _ = cloud.lab.execute("compute-1", ["nft", "list", "table", "bridge", "novanet"])
        return out

    assert f'"{cirros.instance.device}" . {cirros.instance.mac}' in table()
    cloud.lab.execute("compute-1", ["nft", "flush", "table", "bridge", "novanet"])
    started = time.monotonic()
    assert wait_for(lambda: "jump vif" in table(), CHECK_INTERVAL + 10)
    print(
        f"rules back after {time.monotonic() - started:.1f} s (iptables_check_interval {CHECK_INTERVAL} s)"
    )
    packet = fr.udp("10.0.0.66", "10.0.0.255", 7, 7, b"x")
    forged = fr.ether(fr.BROADCAST, str(cirros.instance.mac), fr.ETH_P_IP, packet)
    assert attack(cloud, cirros.instance, [forged], "flushed") == []


def test_an_agent_restart_under_ping_and_a_flood_lets_nothing_through(world: World) -> None:
    cloud, cirros, _, _, _ = world
    mac, gateway = str(cirros.instance.mac), br100_mac(cloud)
    forged = fr.ether(gateway, mac, fr.ETH_P_IP, fr.icmp_echo("10.0.0.78", "10.0.0.1", 78, 1))
    watch = Watch(cloud, "controller-1", None, "br100", "restart", needle=forged[14:], seconds=120)
    flooder = [sys.executable, FRAMES, "flood", "eth0", "60", forged.hex()]
    flood = cloud.lab.start_process(
        "compute-1", "flood", [*guest_prefix(cirros.instance), *flooder]
    )
    pinger = Pinger(cloud, "controller-1", ip_of(cirros.instance))
    try:
        assert wait_for(lambda: pinger.replies(), 5), "no reply before the restart"
        cloud.novanet.restart(cloud.novanet.find("compute-1", "compute"))
        count = len(pinger.replies())
        assert wait_for(lambda: len(pinger.replies()) > count + 2, 10), "no replies after restart"
    finally:
        cloud.lab.stop_process("compute-1", "flood")
        transmitted, received, _ = pinger.stop()
        send(cloud, cirros.instance, [fr.marker(mac, ip_of(cirros.instance), "restart")])
    assert flood.pid and watch.frames() == [], "forged frames got through during the restart"
    assert transmitted - received <= 1, f"lost {transmitted - received} of {transmitted} pings"
