"""The compute agent with fakes: the seed's chain, plug order, resync, refusal to start."""

from __future__ import annotations

import dataclasses

import pytest

from novanet import conf as novanet_conf
from novanet.compute.manager import ComputeManager, template_pattern
from novanet.exception import UsageError
from novanet.linux.bridge import BridgeManager
from novanet.linux.devices import VifDevices
from novanet.linux.fakes.iptables import FakeIptables
from novanet.linux.fakes.netlink import FakeIpLib, FakeSysctl
from novanet.linux.iptables.manager import IptablesManager
from novanet.linux.sysctl import BridgeNetfilterMissing
from novanet.rpc.objects import InstanceNetwork
from tests.lib.paths import SEED

CIRROS = InstanceNetwork(
    id=9,
    uuid="5357143d-66f5-446c-a82f-86648ebb3842",
    name="instance-00000009",
    display_name="cirros",
    host="compute-1",
    vif_type="netns",
    mac="fa:16:3e:2c:e8:ec",
    address="10.0.0.2",
    cidr="10.0.0.0/24",
    dhcp_server="10.0.0.1",
    bridge="br100",
)


@dataclasses.dataclass
class Agent:
    manager: ComputeManager
    ip: FakeIpLib
    iptables: FakeIptables
    sysctl: FakeSysctl


def make_agent(tmp_path, ip=None, fake=None, br_netfilter=True, **overrides) -> Agent:
    conf = novanet_conf.new_conf()
    conf([])
    for name, value in {"flat_interface": "eth2", "flat_network_bridge": "br100", "host": "compute-1", **overrides}.items():
        conf.set_override(name, value)
    if ip is None:
        ip = FakeIpLib()
        ip.add_link("eth2", up=True)
    sysctl = FakeSysctl(br_netfilter=br_netfilter)
    fake = fake or FakeIptables()
    manager = ComputeManager(
        conf,
        bridges=BridgeManager(ip, str(tmp_path / "lock"), sysctl),
        iptables=IptablesManager("compute", fake),
        vifs=VifDevices(ip, str(tmp_path / "lock")),
        namespaces=ip,
    )
    return Agent(manager, ip, fake, sysctl)


@pytest.fixture
def agent(tmp_path):
    a = make_agent(tmp_path)
    a.manager.init_host()
    a.manager.resync([])
    return a


def test_seed_listing_after_setup(agent):
    devname = agent.manager.setup_instance(CIRROS)
    assert devname == "vnet0"
    assert agent.iptables.listing("filter") == (SEED / "compute-1-iptables-filter.txt").read_text().splitlines()
    vnet = agent.ip.link("vnet0")
    assert vnet.master == "br100" and vnet.mac == "fe:16:3e:2c:e8:ec"
    guest = agent.ip.link("eth0", netns="instance-00000009")
    assert guest.mac == "fa:16:3e:2c:e8:ec" and guest.up
    assert agent.ip.addresses("br100") == []  # a compute host's bridge has no address


def test_without_same_net_traffic(tmp_path):
    a = make_agent(tmp_path, allow_same_net_traffic=False)
    a.manager.init_host()
    a.manager.resync([CIRROS])
    chain = a.iptables.chain("nova-compute-inst-9")
    assert "-s 10.0.0.0/24 -j ACCEPT" not in " ".join(chain)
    assert "-A nova-compute-inst-9 -s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT" in a.iptables.listing("filter")


def test_teardown_removes_device_namespace_and_chain(agent):
    agent.manager.setup_instance(CIRROS)
    agent.manager.teardown_instance(CIRROS)
    listing = agent.iptables.listing("filter")
    assert not any("inst-9" in line or "10.0.0.2" in line for line in listing)
    assert agent.ip.link("vnet0") is None
    assert "instance-00000009" not in agent.ip.list_netns()
    agent.manager.teardown_instance(CIRROS)  # idempotent


def test_refuses_to_start_without_bridge_netfilter(tmp_path):
    a = make_agent(tmp_path, br_netfilter=False)
    with pytest.raises(BridgeNetfilterMissing):
        a.manager.init_host()


def test_refuses_without_a_bridge_name(tmp_path):
    a = make_agent(tmp_path, flat_network_bridge=None)
    with pytest.raises(UsageError, match="flat_network_bridge"):
        a.manager.init_host()


def test_restart_keeps_instances_and_removes_stale_ones(tmp_path):
    first = make_agent(tmp_path)
    first.manager.init_host()
    first.manager.resync([])
    other = dataclasses.replace(
        CIRROS, id=10, uuid="0b7e40a4-5e52-4b5b-9a2b-0e8b8d0f7c11", name="instance-0000000a",
        mac="fa:16:3e:00:00:0a", address="10.0.0.3",
    )
    first.manager.setup_instance(CIRROS)
    first.manager.setup_instance(other)
    before = first.iptables.listing("filter")
    restores_before = len(first.iptables.restores)
    # the agent restarts: a new process, the same kernel; instance 10 was deleted meanwhile
    second = make_agent(tmp_path, ip=first.ip, fake=first.iptables)
    second.manager.init_host()
    summary = second.manager.resync([CIRROS])
    after = second.iptables.listing("filter")
    assert after == [line for line in before if "inst-10" not in line and "10.0.0.3" not in line]
    assert summary == {"instances": 1, "plugged": 0, "removed": 2}  # vnet1 and its namespace
    assert second.ip.link("vnet0").mac == "fe:16:3e:2c:e8:ec"
    assert second.ip.link("vnet1") is None
    assert second.ip.list_netns() == ["instance-00000009"]
    # the surviving instance's chain was never rewritten: only the stale one went
    for text in first.iptables.restores[restores_before:]:
        assert ":nova-compute-inst-9 " not in text


def test_resync_replugs_a_device_removed_by_hand(agent):
    agent.manager.setup_instance(CIRROS)
    agent.ip.delete_link("vnet0")
    agent.manager.resync([CIRROS])
    assert agent.ip.link("vnet0").master == "br100"


def test_template_pattern():
    pattern = template_pattern("instance-%08x")
    assert pattern.match("instance-0000000a") and not pattern.match("instance-x")
    assert not pattern.match("nt123x4") and template_pattern("vm-%d").match("vm-12")


def test_resync_plugs_the_others_when_one_cannot_be_plugged(agent):
    """A full bridge (or any plug error) for one instance keeps neither the rest down
    nor that instance unfiltered; the next resync plugs it."""
    from novanet.linux.netlink import NetlinkError

    other = dataclasses.replace(
        CIRROS, id=10, uuid="0b7e40a4-5e52-4b5b-9a2b-0e8b8d0f7c11", name="instance-0000000a",
        vif_type="tap", mac="fa:16:3e:00:00:0a", address="10.0.0.3",
    )
    agent.ip.fail_next["create_veth"] = NetlinkError("cannot create veth pair: the bridge is full", 54)
    summary = agent.manager.resync([CIRROS, other])
    assert summary == {"instances": 2, "plugged": 1, "removed": 0, "failed": 1}
    assert agent.ip.link("vnet0").mac == "fe:16:3e:00:00:0a"  # the tap one got plugged
    listing = agent.iptables.listing("filter")
    assert any("-A nova-compute-inst-9 " in line for line in listing)  # filtered meanwhile
    assert agent.manager.resync([CIRROS, other]) == {"instances": 2, "plugged": 1, "removed": 0}
    assert agent.ip.link("eth0", netns="instance-00000009").mac == CIRROS.mac


def test_resync_with_a_list_read_before_a_create_or_delete_leaves_those_alone(agent):
    """The periodic resync reads the controller's list, then converges; an instance
    plugged (or deleted) in between must not be removed (or plugged back)."""
    other = dataclasses.replace(
        CIRROS, id=10, uuid="0b7e40a4-5e52-4b5b-9a2b-0e8b8d0f7c11", name="instance-0000000a",
        mac="fa:16:3e:00:00:0a", address="10.0.0.3",
    )
    agent.manager.setup_instance(CIRROS)
    since = agent.manager.generation
    listed = [CIRROS]  # what the controller answered
    agent.manager.setup_instance(other)  # created meanwhile
    agent.manager.teardown_instance(CIRROS)  # deleted meanwhile
    agent.manager.resync(listed, since=since)
    assert "instance-0000000a" in agent.ip.list_netns()
    assert "instance-00000009" not in agent.ip.list_netns()
    listing = agent.iptables.listing("filter")
    assert any(line.startswith("-A nova-compute-inst-10 ") for line in listing)
    assert not any("inst-9 " in line for line in listing)
    # a later resync with a fresh list converges as usual
    agent.manager.resync([], since=agent.manager.generation)
    assert agent.ip.list_netns() == []
