"""Floating IPs with real traffic from the lab's outside gateway (192.168.56.101).

``web`` (compute-1, group ``web``: tcp 22 and icmp from anywhere) is created
with ``--floating-ip 192.168.56.230``; the gateway reaches it on that
address exactly as the group allows, the guest sees the gateway's own
address, and leaves with its floating address. Every check is made right
after the novanet-manage command that caused it returned (it returns once
the controller's kernel state is in place); repairs are awaited with a bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from novanet.lab import daemons
from novanet.lab.cloud import Cloud
from novanet.lab.floating import tcp
from novanet.lab.instances import Instance
from tests.e2e.helpers import E2E, running_cloud, unique_rules, wait_for

pytestmark = E2E

FLOAT = "192.168.56.230"
GATEWAY = "192.168.56.101"


@dataclass
class World:
    cloud: Cloud
    web: Instance

    def manage(self, *args: str) -> str:
        return self.cloud.novanet.manage(*args)

    def ping(self) -> bool:
        return self.cloud.instances.ping("gateway", FLOAT, count=1, wait=2).ok

    def tcp_in(self, port: int, seconds: float = 5) -> tuple[str, str]:
        """(what the gateway got, the peer the guest saw) connecting to FLOAT:port."""
        return tcp(self.cloud.instances.run_in, self.web.name, "gateway", FLOAT, port, seconds)

    def tcp_out(self) -> str:
        """The address the gateway sees when the guest connects to it."""
        got, peer = tcp(self.cloud.instances.run_in, "gateway", self.web.name, GATEWAY, 9000)
        assert got == "hello", got
        return peer

    def nat(self) -> list[str]:
        out, _ = self.cloud.lab.execute("controller-1", ["iptables", "-t", "nat", "-S"])
        return [line for line in out.splitlines() if f"{FLOAT}/32" in line or f" {FLOAT}" in line]

    def eth1(self) -> list[str]:
        out, _ = self.cloud.lab.execute("controller-1", ["ip", "-4", "-o", "addr", "show", "eth1"])
        return [line.split()[3] for line in out.splitlines()]

    def row(self) -> dict[str, object]:
        rows = self.cloud.novanet.manage_json("floating", "list")
        return next(r for r in rows if r["address"] == FLOAT)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_cloud(metadata=False) as cloud:
        manage = cloud.novanet.manage
        manage("secgroup", "create", "web")
        manage("secgroup", "add-rule", "web", "tcp", "22", "22", "0.0.0.0/0")
        manage("secgroup", "add-rule", "web", "icmp", "-1", "-1", "0.0.0.0/0")
        args = ["instance", "create", "--name", "web", "--host", "compute-1", "--vif-type",
                "netns", "--security-group", "web", "--floating-ip", FLOAT]
        created = cloud.novanet.manage_json(*args)[0]
        assert created["floating_ip"] == FLOAT
        web = Instance.from_row(created)
        cloud.instances.start_guest(web)
        yield World(cloud, web)


def test_reachable_exactly_as_the_groups_allow(world: World) -> None:
    assert world.ping()
    assert world.tcp_in(22) == ("hello", GATEWAY)  # the guest sees the true client
    got, peer = world.tcp_in(23, seconds=3)
    assert got != "hello" and peer == "timeout"  # no rule: dropped in inst-N
    world.manage("secgroup", "add-rule", "web", "tcp", "23", "23", "192.168.56.0/24")
    assert world.tcp_in(23) == ("hello", GATEWAY)
    world.manage("secgroup", "delete-rule", "web", "tcp", "23", "23", "192.168.56.0/24")
    assert world.tcp_in(23, seconds=3)[1] == "timeout"


def test_the_guest_leaves_with_its_floating_address(world: World) -> None:
    assert world.tcp_out() == FLOAT
    row = world.row()
    assert row["fixed_address"] == world.web.address and row["host"] == "controller-1"


def test_kept_across_a_network_restart_without_duplicates(world: World) -> None:
    before = world.nat()
    assert len(before) == 3
    world.cloud.novanet.restart(world.cloud.novanet.find("controller-1", daemons.NETWORK))
    assert world.nat() == before and world.eth1().count(f"{FLOAT}/32") == 1
    saved, _ = world.cloud.lab.execute("controller-1", ["iptables-save"])
    assert unique_rules(saved.splitlines())
    assert world.ping()


def test_hand_deletions_come_back(world: World) -> None:
    run = world.cloud.lab.execute
    run("controller-1", ["ip", "addr", "del", f"{FLOAT}/32", "dev", "eth1"])
    run("controller-1", ["iptables", "-t", "nat", "-D", "nova-network-PREROUTING", "-d",
                         f"{FLOAT}/32", "-j", "DNAT", "--to-destination", world.web.address])
    assert not world.ping()
    # iptables_check_interval is 10 s in the lab
    assert wait_for(lambda: f"{FLOAT}/32" in world.eth1() and len(world.nat()) == 3, 40)
    assert world.ping()


def test_disassociation_then_deletion_undo_everything(world: World) -> None:
    world.manage("floating", "disassociate", FLOAT)
    assert world.nat() == [] and f"{FLOAT}/32" not in world.eth1()
    assert not world.ping()
    assert world.tcp_out() == "192.168.56.200"  # the fixed range's SNAT again
    world.manage("floating", "associate", FLOAT, "web")
    assert world.ping()
    world.manage("instance", "delete", "web")
    assert world.nat() == [] and f"{FLOAT}/32" not in world.eth1()
    row = world.row()
    assert (row["fixed_address"], row["instance_uuid"], row["host"]) == (None, None, None)
    assert not world.ping()
