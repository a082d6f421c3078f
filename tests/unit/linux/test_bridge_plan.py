"""The bridge/gateway plan, checked on the end state it leaves in the fake kernel."""

from __future__ import annotations

import pytest

from novanet.exception import Conflict, NotFound
from novanet.linux.bridge import BridgeManager
from novanet.linux.bridge_plan import (
    AddAddress,
    BridgeState,
    CreateBridge,
    SetBridgeSettings,
    SetMaster,
    SetUp,
    plan_bridge,
    plan_gateway,
)
from novanet.linux.fakes.netlink import FakeIpLib, FakeSysctl
from novanet.linux.netlink import (
    PROTO_KERNEL,
    AddressInfo,
    BridgeSettings,
    LinkInfo,
    RouteInfo,
)
from novanet.linux.sysctl import BridgeNetfilterMissing


def addr(cidr: str, brd: str | None = None) -> AddressInfo:
    return AddressInfo.parse(cidr, brd)


@pytest.fixture
def ip() -> FakeIpLib:
    fake = FakeIpLib()
    fake.add_link("eth2", up=True, mac="08:00:27:8f:87:fa")
    return fake


@pytest.fixture
def manager(ip: FakeIpLib, tmp_path: object) -> BridgeManager:
    return BridgeManager(ip, str(tmp_path), FakeSysctl())


def seed_eth2(ip: FakeIpLib) -> None:
    """eth2 with 10.0.0.5/24, a secondary, a default and a static route."""
    ip.add_address("eth2", addr("10.0.0.5/24", "10.0.0.255"))
    ip.add_address("eth2", addr("10.0.0.6/24", "10.0.0.255"))
    ip.add_address("eth2", addr("172.16.0.5/16"))
    ip.add_route(RouteInfo.parse("default", "eth2", "10.0.0.254"))
    ip.add_route(RouteInfo.parse("10.50.0.0/16", "eth2", "172.16.0.1", metric=50))


def ips(ip: FakeIpLib, dev: str) -> list[str]:
    return [str(a) for a in ip.addresses(dev)]


def static_routes(ip: FakeIpLib, dev: str) -> list[str]:
    return sorted(str(r) for r in ip.routes(dev) if r.proto != PROTO_KERNEL)


# -- pure plans -------------------------------------------------------------------


def test_absent_bridge_is_created_up_with_stp_off_and_no_delay() -> None:
    steps = plan_bridge(BridgeState(bridge=None), "br100")
    assert steps == [
        CreateBridge("br100", BridgeSettings(stp=False, forward_delay=0.0)),
        SetUp("br100"),
    ]


def test_present_bridge_with_stp_on_is_fixed() -> None:
    link = LinkInfo("br100", 5, kind="bridge", up=True)
    state = BridgeState(bridge=link, settings=BridgeSettings(stp=True, forward_delay=15.0))
    assert plan_bridge(state, "br100") == [
        SetBridgeSettings("br100", BridgeSettings(stp=False, forward_delay=0.0))
    ]


def test_down_interface_is_enslaved_and_brought_up() -> None:
    state = BridgeState(
        bridge=LinkInfo("br100", 5, kind="bridge", up=True),
        settings=BridgeSettings(stp=False, forward_delay=0.0),
        interface=LinkInfo("eth2", 3, up=False),
    )
    assert plan_bridge(state, "br100", "eth2") == [SetMaster("eth2", "br100"), SetUp("eth2")]


def test_a_non_bridge_device_is_refused() -> None:
    with pytest.raises(Conflict, match="br100 exists and is not a bridge"):
        plan_bridge(BridgeState(bridge=LinkInfo("br100", 5, kind="veth")), "br100")


def test_an_interface_of_another_bridge_is_refused() -> None:
    state = BridgeState(bridge=None, interface=LinkInfo("eth2", 3, up=True, master="br-other"))
    with pytest.raises(Conflict, match="eth2 is already a port of br-other"):
        plan_bridge(state, "br100", "eth2")


def test_gateway_on_empty_bridge_is_just_added() -> None:
    gw = addr("10.0.0.1/24", "10.0.0.255")
    assert plan_gateway("br100", [], [], gw) == [AddAddress("br100", gw)]


def test_gateway_already_first_needs_nothing() -> None:
    gw = addr("10.0.0.1/24", "10.0.0.255")
    assert plan_gateway("br100", [gw, addr("10.0.0.9/24", "10.0.0.255")], [], gw) == []


# -- applied to the fake kernel ---------------------------------------------------


def test_ensure_bridge_creates_and_enslaves(ip: FakeIpLib, manager: BridgeManager) -> None:
    manager.ensure_bridge("br100", "eth2")
    bridge = ip.link("br100")
    assert bridge is not None and bridge.kind == "bridge" and bridge.up
    assert ip.bridge_settings("br100") == BridgeSettings(stp=False, forward_delay=0.0)
    eth2 = ip.link("eth2")
    assert eth2 is not None and eth2.master == "br100" and eth2.up
    assert ip.addresses("br100") == []


def test_ensure_bridge_moves_addresses_and_routes(ip: FakeIpLib, manager: BridgeManager) -> None:
    seed_eth2(ip)
    manager.ensure_bridge("br100", "eth2")
    assert ips(ip, "eth2") == []
    assert ip.routes("eth2") == []
    assert ips(ip, "br100") == [
        "10.0.0.5/24 brd 10.0.0.255",
        "172.16.0.5/16",
        "10.0.0.6/24 brd 10.0.0.255",
    ]
    assert static_routes(ip, "br100") == [
        "10.50.0.0/16 via 172.16.0.1 dev br100 metric 50",
        "default via 10.0.0.254 dev br100",
    ]


def test_ensure_bridge_is_idempotent(ip: FakeIpLib, manager: BridgeManager) -> None:
    seed_eth2(ip)
    manager.ensure_bridge("br100", "eth2")
    before = ip.dump()
    assert manager.ensure_bridge("br100", "eth2") == []
    assert ip.dump() == before


def test_ensure_bridge_without_interface(ip: FakeIpLib, manager: BridgeManager) -> None:
    manager.ensure_bridge("br100", None)
    assert ip.link("br100") is not None
    assert ip.link("eth2") is not None and ip.link("eth2").master is None  # type: ignore[union-attr]


def test_missing_flat_interface_is_a_clear_error(manager: BridgeManager) -> None:
    with pytest.raises(NotFound, match="flat interface eth9 does not exist"):
        manager.ensure_bridge("br100", "eth9")


def test_gateway_becomes_first_and_keeps_others_and_routes(
    ip: FakeIpLib, manager: BridgeManager
) -> None:
    seed_eth2(ip)
    manager.ensure_bridge("br100", "eth2")
    manager.ensure_gateway("br100", "10.0.0.1/24")
    assert ips(ip, "br100") == [
        "10.0.0.1/24 brd 10.0.0.255",
        "172.16.0.5/16",
        "10.0.0.5/24 brd 10.0.0.255",
        "10.0.0.6/24 brd 10.0.0.255",
    ]
    assert static_routes(ip, "br100") == [
        "10.50.0.0/16 via 172.16.0.1 dev br100 metric 50",
        "default via 10.0.0.254 dev br100",
    ]
    before = ip.dump()
    assert manager.ensure_gateway("br100", "10.0.0.1/24", "10.0.0.255") == []
    assert ip.dump() == before


def test_gateway_with_another_prefix_or_broadcast_is_replaced(
    ip: FakeIpLib, manager: BridgeManager
) -> None:
    manager.ensure_bridge("br100", "eth2")
    ip.add_address("br100", addr("10.0.0.1/16", "10.0.255.255"))
    ip.add_address("br100", addr("192.168.9.1/24"))
    manager.ensure_gateway("br100", "10.0.0.1/24", "10.0.0.255")
    assert ips(ip, "br100") == ["10.0.0.1/24 brd 10.0.0.255", "192.168.9.1/24"]


def test_gateway_present_but_not_first(ip: FakeIpLib, manager: BridgeManager) -> None:
    manager.ensure_bridge("br100", "eth2")
    ip.add_address("br100", addr("192.168.9.1/24"))
    ip.add_address("br100", addr("10.0.0.1/24", "10.0.0.255"))
    ip.add_route(RouteInfo.parse("default", "br100", "192.168.9.254"))
    manager.ensure_gateway("br100", "10.0.0.1/24")
    assert ips(ip, "br100") == ["10.0.0.1/24 brd 10.0.0.255", "192.168.9.1/24"]
    assert static_routes(ip, "br100") == ["default via 192.168.9.254 dev br100"]


def test_gateway_on_missing_bridge(manager: BridgeManager) -> None:
    with pytest.raises(NotFound, match="bridge br100 does not exist"):
        manager.ensure_gateway("br100", "10.0.0.1/24")


def test_controller_setup_sets_ip_forward(ip: FakeIpLib, tmp_path: object) -> None:
    sysctl = FakeSysctl()
    manager = BridgeManager(ip, str(tmp_path), sysctl)
    manager.setup_controller("br100", "eth2", "10.0.0.1/24", "10.0.0.255")
    assert sysctl.get("net.ipv4.ip_forward") == "1"
    assert ips(ip, "br100") == ["10.0.0.1/24 brd 10.0.0.255"]


def test_compute_setup_leaves_bridge_without_address(ip: FakeIpLib, tmp_path: object) -> None:
    sysctl = FakeSysctl()
    sysctl.values["net.bridge.bridge-nf-call-iptables"] = "0"
    BridgeManager(ip, str(tmp_path), sysctl).setup_compute("br100", "eth2")
    assert ip.addresses("br100") == []
    assert ip.link("eth2").master == "br100"  # type: ignore[union-attr]
    assert sysctl.get("net.bridge.bridge-nf-call-iptables") == "1"
    assert sysctl.get("net.ipv4.ip_forward") == "0"


def test_compute_setup_refuses_without_br_netfilter(ip: FakeIpLib, tmp_path: object) -> None:
    manager = BridgeManager(ip, str(tmp_path), FakeSysctl(br_netfilter=False))
    with pytest.raises(BridgeNetfilterMissing, match="br_netfilter"):
        manager.setup_compute("br100", "eth2")
    assert ip.link("br100") is None
