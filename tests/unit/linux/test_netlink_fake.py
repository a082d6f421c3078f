"""The fake kernel follows the rules the bridge and VIF code depend on.

tests/functional/test_bridge.py runs the same sequence on the real kernel
and compares, so the fake cannot drift from what Linux does.
"""

from __future__ import annotations

import pytest

from novanet.linux.fakes.netlink import FakeIpLib, FakeSysctl
from novanet.linux.netlink import (
    AddressInfo,
    AlreadyExists,
    LinkNotFound,
    NetlinkError,
    NetnsNotFound,
    RouteInfo,
)
from novanet.linux.sysctl import SysctlError


def addr(cidr: str) -> AddressInfo:
    return AddressInfo.parse(cidr)


@pytest.fixture
def ip() -> FakeIpLib:
    fake = FakeIpLib()
    fake.add_link("eth2", up=True)
    return fake


def test_secondaries_are_listed_after_primaries(ip: FakeIpLib) -> None:
    for cidr in ("10.0.0.5/24", "10.0.0.6/24", "172.16.0.5/16"):
        ip.add_address("eth2", addr(cidr))
    listed = ip.addresses("eth2")
    assert [str(a) for a in listed] == ["10.0.0.5/24", "172.16.0.5/16", "10.0.0.6/24"]
    assert [a.secondary for a in listed] == [False, False, True]
    with pytest.raises(AlreadyExists):
        ip.add_address("eth2", addr("10.0.0.5/24"))


def test_deleting_a_primary_takes_its_secondaries_and_routes(ip: FakeIpLib) -> None:
    ip.add_address("eth2", addr("10.0.0.5/24"))
    ip.add_address("eth2", addr("10.0.0.6/24"))
    ip.add_address("eth2", addr("172.16.0.5/16"))
    ip.add_route(RouteInfo.parse("default", "eth2", "10.0.0.254"))
    ip.add_route(RouteInfo.parse("10.9.0.0/16", "eth2", prefsrc="10.0.0.5"))
    assert ip.delete_address("eth2", addr("10.0.0.5/24"))
    assert [str(a) for a in ip.addresses("eth2")] == ["172.16.0.5/16"]
    # the prefix route and the prefsrc route went; the gateway route stays
    assert sorted(str(r) for r in ip.routes("eth2")) == [
        "172.16.0.0/16 dev eth2",
        "default via 10.0.0.254 dev eth2",
    ]
    assert not ip.delete_address("eth2", addr("10.0.0.6/24"))
    ip.delete_address("eth2", addr("172.16.0.5/16"))
    assert ip.routes("eth2") == []  # last address gone: every route through it


def test_route_rules(ip: FakeIpLib) -> None:
    with pytest.raises(NetlinkError, match="unreachable"):
        ip.add_route(RouteInfo.parse("default", "eth2", "10.0.0.254"))
    ip.add_address("eth2", addr("10.0.0.5/24"))
    ip.add_route(RouteInfo.parse("default", "eth2", "10.0.0.254"))
    with pytest.raises(AlreadyExists):
        ip.add_route(RouteInfo.parse("default", "eth2", "10.0.0.253"))
    ip.add_route(RouteInfo.parse("default", "eth2", "10.0.0.253", metric=10))
    ip.add_link("eth3")
    ip.add_address("eth3", addr("10.1.0.5/24"))
    with pytest.raises(NetlinkError, match="down"):
        ip.add_route(RouteInfo.parse("10.2.0.0/16", "eth3", "10.1.0.1"))
    assert ip.delete_route(RouteInfo.parse("default", "eth2", "10.0.0.254"))
    assert not ip.delete_route(RouteInfo.parse("default", "eth2", "10.0.0.254"))


def test_veth_into_namespace(ip: FakeIpLib) -> None:
    ip.create_veth("vnet0", "tmp0", mac="fe:16:3e:00:00:01", peer_mac="fa:16:3e:00:00:01")
    assert ip.ensure_netns("inst")
    assert not ip.ensure_netns("inst")
    ip.move_to_netns("tmp0", "inst")
    assert ip.link("tmp0") is None
    ip.configure_in_netns("inst", "tmp0", new_name="eth0")
    guest = ip.link("eth0", "inst")
    assert guest is not None and guest.up and guest.mac == "fa:16:3e:00:00:01"
    assert ip.link("vnet0").link_netnsid is not None  # type: ignore[union-attr]
    assert ip.list_netns() == ["inst"]
    ip.delete_netns("inst")
    assert ip.link("vnet0") is None  # the pair died with the namespace
    with pytest.raises(NetnsNotFound):
        ip.links(netns="inst")


def test_moving_flushes_addresses_and_leaves_the_bridge(ip: FakeIpLib) -> None:
    ip.create_bridge("br0")
    ip.create_veth("v0", "v1")
    ip.set_master("v0", "br0")
    ip.set_up("v0")
    ip.add_address("v0", addr("10.0.0.5/24"))
    ip.ensure_netns("ns")
    ip.move_to_netns("v0", "ns")
    moved = ip.link("v0", "ns")
    assert moved is not None and not moved.up and moved.master is None
    assert ip.addresses("v0", "ns") == []


def test_deleting_a_bridge_releases_ports_and_one_veth_end_takes_the_other(ip: FakeIpLib) -> None:
    ip.create_bridge("br0")
    ip.create_veth("v0", "v1")
    ip.set_master("v0", "br0")
    assert ip.delete_link("br0")
    assert ip.link("v0").master is None  # type: ignore[union-attr]
    ip.delete_link("v1")
    assert ip.link("v0") is None
    assert not ip.delete_link("v0")


def test_errors(ip: FakeIpLib) -> None:
    with pytest.raises(LinkNotFound, match="interface nope does not exist"):
        ip.set_up("nope")
    with pytest.raises(AlreadyExists):
        ip.create_tap("eth2")
    with pytest.raises(NetlinkError, match="not a bridge"):
        ip.bridge_settings("eth2")
    with pytest.raises(ValueError):
        ip.create_tap("a-name-longer-than-15")


def test_fake_sysctl() -> None:
    sysctl = FakeSysctl(br_netfilter=False)
    assert sysctl.enable_ip_forward()
    assert not sysctl.enable_ip_forward()
    with pytest.raises(SysctlError):
        sysctl.get("net.bridge.bridge-nf-call-iptables")
