"""VIF devices (tap and netns) against the fake kernel."""

from __future__ import annotations

import pytest

from novanet.exception import Conflict
from novanet.linux.devices import VifDevices, host_mac
from novanet.linux.fakes.netlink import FakeIpLib
from novanet.linux.netlink import NetlinkError

MAC = "fa:16:3e:2c:e8:ec"
MAC2 = "fa:16:3e:00:00:02"


@pytest.fixture
def ip() -> FakeIpLib:
    fake = FakeIpLib()
    fake.add_link("eth0", up=True)  # the host's own eth0
    fake.create_bridge("br100")
    fake.set_up("br100")
    return fake


@pytest.fixture
def vifs(ip: FakeIpLib, tmp_path: object) -> VifDevices:
    return VifDevices(ip, str(tmp_path))


def test_host_mac_replaces_first_byte() -> None:
    assert host_mac("FA:16:3E:2C:E8:EC") == "fe:16:3e:2c:e8:ec"
    with pytest.raises(ValueError):
        host_mac("fa:16:3e:2c:e8")


def test_tap_plug(ip: FakeIpLib, vifs: VifDevices) -> None:
    assert vifs.plug("tap", MAC, "br100") == "vnet0"
    tap = ip.link("vnet0")
    assert tap is not None
    assert (tap.kind, tap.mac, tap.master, tap.up) == ("tap", "fe:16:3e:2c:e8:ec", "br100", True)


def test_plug_is_idempotent(ip: FakeIpLib, vifs: VifDevices) -> None:
    vifs.plug_tap(MAC, "br100")
    vifs.plug_netns(MAC2, "br100", "instance-00000002")
    before = (ip.dump(), ip.dump("instance-00000002"))
    assert vifs.plug_tap(MAC, "br100") == "vnet0"
    assert vifs.plug_netns(MAC2, "br100", "instance-00000002") == "vnet1"
    assert (ip.dump(), ip.dump("instance-00000002")) == before


def test_tap_plug_reattaches_a_detached_device(ip: FakeIpLib, vifs: VifDevices) -> None:
    vifs.plug_tap(MAC, "br100")
    ip.set_master("vnet0", None)
    assert vifs.plug_tap(MAC, "br100") == "vnet0"
    assert ip.link("vnet0").master == "br100"  # type: ignore[union-attr]


def test_netns_plug(ip: FakeIpLib, vifs: VifDevices) -> None:
    name = vifs.plug_netns(MAC, "br100", "instance-00000001")
    assert name == "vnet0"
    host = ip.link("vnet0")
    assert host is not None
    assert (host.kind, host.mac, host.master, host.up) == (
        "veth",
        "fe:16:3e:2c:e8:ec",
        "br100",
        True,
    )
    guest = ip.link("eth0", "instance-00000001")
    assert guest is not None and guest.mac == MAC and guest.up
    assert ip.link("lo", "instance-00000001").up  # type: ignore[union-attr]
    # the host's own eth0 is untouched and no temporary device is left
    assert [link.name for link in ip.links()] == ["lo", "eth0", "br100", "vnet0"]


def test_names_are_allocated_lowest_free_first(ip: FakeIpLib, vifs: VifDevices) -> None:
    assert vifs.plug_tap(MAC, "br100") == "vnet0"
    assert vifs.plug_tap(MAC2, "br100") == "vnet1"
    vifs.unplug("vnet0")
    assert vifs.plug_netns("fa:16:3e:00:00:03", "br100", "ns3") == "vnet0"
    assert [(v.name, v.vif_type, v.mac) for v in vifs.list()] == [
        ("vnet0", "netns", "fe:16:3e:00:00:03"),
        ("vnet1", "tap", "fe:16:3e:00:00:02"),
    ]


def test_unplug_deletes_link_and_namespace(ip: FakeIpLib, vifs: VifDevices) -> None:
    vifs.plug_netns(MAC, "br100", "instance-00000001")
    vifs.unplug("vnet0", "instance-00000001")
    assert ip.link("vnet0") is None
    assert not ip.netns_exists("instance-00000001")
    vifs.unplug("vnet0", "instance-00000001")  # idempotent


def test_unplug_by_mac(ip: FakeIpLib, vifs: VifDevices) -> None:
    vifs.plug_tap(MAC, "br100")
    assert vifs.unplug_mac(MAC) == "vnet0"
    assert vifs.list() == []
    assert vifs.unplug_mac(MAC) is None


def test_failed_plug_leaves_nothing_behind(ip: FakeIpLib, vifs: VifDevices) -> None:
    ip.fail_next["configure_in_netns"] = NetlinkError("boom")
    with pytest.raises(NetlinkError):
        vifs.plug_netns(MAC, "br100", "instance-00000001")
    assert vifs.list() == []
    assert ip.links("t") == []
    assert [link.name for link in ip.links(netns="instance-00000001")] == ["lo"]
    # and a retry works
    assert vifs.plug_netns(MAC, "br100", "instance-00000001") == "vnet0"


def test_half_plugged_netns_vif_is_rebuilt(ip: FakeIpLib, vifs: VifDevices) -> None:
    vifs.plug_netns(MAC, "br100", "instance-00000001")
    ip.delete_netns("instance-00000001")  # also deletes the pair
    ip.create_veth("vnet0", "tvnet0", mac=host_mac(MAC), peer_mac=MAC)  # crash mid-plug
    assert vifs.plug_netns(MAC, "br100", "instance-00000001") == "vnet0"
    assert ip.link("eth0", "instance-00000001").mac == MAC  # type: ignore[union-attr]
    assert ip.link("tvnet0") is None


def test_mac_used_by_a_veth_is_not_reused_for_a_tap(vifs: VifDevices) -> None:
    vifs.plug_netns(MAC, "br100", "instance-00000001")
    with pytest.raises(Conflict, match="already used by vnet0"):
        vifs.plug_tap(MAC, "br100")


def test_mac_used_by_a_tap_is_not_reused_for_a_veth(ip: FakeIpLib, vifs: VifDevices) -> None:
    vifs.plug_tap(MAC, "br100")
    with pytest.raises(Conflict, match="already used by vnet0, a tap device"):
        vifs.plug_netns(MAC, "br100", "instance-00000001")
    assert ip.link("vnet0").kind == "tap"  # type: ignore[union-attr]


def test_plug_dispatch_validates(vifs: VifDevices) -> None:
    with pytest.raises(ValueError, match="unknown VIF type"):
        vifs.plug("macvtap", MAC, "br100")
    with pytest.raises(ValueError, match="needs the namespace"):
        vifs.plug("netns", MAC, "br100")
    with pytest.raises(ValueError, match="invalid network namespace name"):
        vifs.plug("netns", MAC, "br100", "../etc")
