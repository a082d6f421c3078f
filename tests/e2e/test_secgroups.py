"""Security groups with real traffic: the lab's two compute hosts, novanet's real daemons.

allow_same_net_traffic=false, so nothing but the groups opens an instance:
``web`` (compute-1) listens on tcp 22 and 23 (socat in its namespace);
``client`` (compute-2) connects. Every change is made with novanet-manage,
which returns once novanet-network told the hosts concerned; the traffic
is then checked at once (with a short bound for the loaded machine).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from novanet.lab.cloud import Cloud
from novanet.lab.instances import Instance, guest_prefix
from tests.e2e.helpers import E2E, running_cloud, wait_for

pytestmark = E2E

SET_PREFIX = "nova-compute-group-"


@dataclass
class World:
    cloud: Cloud
    web: Instance
    client: Instance
    src_id: int

    def manage(self, *args: str) -> str:
        return self.cloud.novanet.manage(*args)

    def connects(self, port: int) -> bool:
        """A tcp connection from client to web:port gets web's banner."""
        argv = [*guest_prefix(self.client), "timeout", "5", "socat", "-T", "2", "STDIO",
                f"TCP:{self.web.address}:{port},connect-timeout=2"]
        out, _ = self.cloud.lab.execute("compute-2", argv, check=False, log_errors=False, input="")
        return out.strip() == f"open-{port}"

    def pings(self) -> bool:
        return self.cloud.instances.ping(self.client.name, self.web.name, count=1, wait=2).ok

    def chain(self) -> list[str]:
        out, _ = self.cloud.lab.execute(
            "compute-1", ["iptables", "-S", f"nova-compute-inst-{self.web.id}"]
        )
        return out.splitlines()[1:]

    def members(self, host: str) -> set[str]:
        out, _ = self.cloud.lab.execute(host, ["ipset", "list", f"{SET_PREFIX}{self.src_id}"])
        return {line.strip() for line in out.split("Members:")[1].splitlines() if line.strip()}

    def sets(self, host: str) -> str:
        return self.cloud.lab.execute(host, ["ipset", "save"])[0]


def _boot(cloud: Cloud, name: str, host: str, *groups: str) -> Instance:
    args = ["instance", "create", "--name", name, "--host", host, "--vif-type", "netns"]
    for group in groups:
        args += ["--security-group", group]
    inst = Instance.from_row(cloud.novanet.manage_json(*args)[0])
    cloud.instances.start_guest(inst)
    return inst


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_cloud({"allow_same_net_traffic": "false"}, metadata=False) as cloud:
        manage = cloud.novanet.manage
        manage("secgroup", "create", "web", "--description", "web servers")
        manage("secgroup", "create", "src")
        manage("secgroup", "add-rule", "web", "tcp", "22", "22", "0.0.0.0/0")
        web = _boot(cloud, "web", "compute-1", "web")
        client = _boot(cloud, "client", "compute-2")
        for port in (22, 23):
            cloud.lab.start_process(
                "compute-1",
                f"listen-{port}",
                [*guest_prefix(web), "socat", f"TCP-LISTEN:{port},fork,reuseaddr",
                 f"SYSTEM:echo open-{port}"],
            )
        src_id = cloud.novanet.manage_json("secgroup", "show", "src")[0]["id"]
        world = World(cloud, web, client, src_id)
        assert wait_for(lambda: world.connects(22), 10), "the listener did not start"
        yield world


def test_a_tcp_port_opens_and_its_neighbour_stays_closed(world: World) -> None:
    assert world.connects(22)
    assert not world.connects(23)
    n = world.web.id
    assert world.chain() == [
        f"-A nova-compute-inst-{n} -m state --state INVALID -j DROP",
        f"-A nova-compute-inst-{n} -m state --state RELATED,ESTABLISHED -j ACCEPT",
        f"-A nova-compute-inst-{n} -j nova-compute-provider",
        f"-A nova-compute-inst-{n} -s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT",
        f"-A nova-compute-inst-{n} -p tcp -m tcp --dport 22 -j ACCEPT",
        f"-A nova-compute-inst-{n} -j nova-compute-sg-fallback",
    ]
    # the client is in default, which has no rules: exactly the seed's chain there
    out, _ = world.cloud.lab.execute("compute-2", ["iptables", "-S"])
    assert f"-A nova-compute-inst-{world.client.id} -j nova-compute-sg-fallback" in out
    assert "-j ACCEPT" not in [r for r in out.splitlines() if "tcp" in r and "inst-" in r]


def test_an_icmp_rule_added_live(world: World) -> None:
    assert not world.pings()
    out = world.manage("secgroup", "add-rule", "web", "icmp", "-1", "-1", "0.0.0.0/0")
    assert "applied on: compute-1" in out
    assert wait_for(world.pings, 5)


def test_a_group_rule_follows_members_on_the_other_host(world: World) -> None:
    world.manage("secgroup", "add-group-rule", "web", "src", "tcp", "23", "23")
    assert f"-m set --match-set {SET_PREFIX}{world.src_id} src -m tcp --dport 23" in " ".join(
        world.chain()
    )
    assert world.members("compute-1") == set() and not world.connects(23)
    out = world.manage("instance", "add-secgroup", "client", "src")
    # the member's set lives where the rule is (compute-1); compute-2 has no rule naming it
    assert "applied on: compute-1" in out
    assert world.members("compute-1") == {world.client.address}
    assert f"{SET_PREFIX}{world.src_id}" not in world.sets("compute-2")
    assert wait_for(lambda: world.connects(23), 5)
    world.manage("instance", "remove-secgroup", "client", "src")
    assert world.members("compute-1") == set()
    assert wait_for(lambda: not world.connects(23), 5)
    world.manage("instance", "add-secgroup", "client", "src")  # for the restart below
    assert wait_for(lambda: world.connects(23), 5)


def test_an_agent_restart_keeps_every_rule_and_set(world: World) -> None:
    chain, sets = world.chain(), world.sets("compute-1")
    daemon = world.cloud.novanet.find("compute-1", "compute")
    world.cloud.novanet.restart(daemon)
    assert world.chain() == chain
    assert world.sets("compute-1") == sets
    assert world.connects(22) and world.connects(23) and world.pings()


def test_a_rule_deleted(world: World) -> None:
    world.manage("secgroup", "delete-rule", "web", "tcp", "22", "22", "0.0.0.0/0")
    assert wait_for(lambda: not world.connects(22), 5)
    assert world.connects(23)
    assert not any("--dport 22 " in rule for rule in world.chain())


def test_refused_changes_touch_no_host(world: World) -> None:
    chain, sets = world.chain(), world.sets("compute-1")
    for args in (
        ("secgroup", "add-rule", "web", "tcp", "0", "70000", "0.0.0.0/0"),
        ("secgroup", "add-rule", "web", "icmp", "-1", "-1", "0.0.0.0/0"),  # a duplicate
        ("secgroup", "delete", "src"),  # in use
        ("secgroup", "add-group-rule", "web", "nope", "tcp", "1", "1"),
    ):
        out = world.cloud.novanet.manage(*args, check=False)
        assert "applied on" not in out
    assert world.chain() == chain and world.sets("compute-1") == sets


def test_deleting_the_last_rule_naming_a_group_removes_its_set(world: World) -> None:
    world.manage("secgroup", "delete-group-rule", "web", "src", "tcp", "23", "23")
    assert f"{SET_PREFIX}{world.src_id}" not in world.sets("compute-1")
    assert wait_for(lambda: not world.connects(23), 5)
    # the metadata key security-groups and instance show name the groups
    shown = world.cloud.novanet.manage_json("instance", "show", "client")[0]
    assert shown["security_groups"] == ["default", "src"]
