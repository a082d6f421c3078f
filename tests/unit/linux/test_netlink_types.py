"""Plain data and helpers of novanet.linux.netlink."""

from __future__ import annotations

import threading
from ipaddress import IPv4Address, IPv4Interface

import pytest

from novanet.linux import netlink
from novanet.linux.netlink import AddressInfo, RouteInfo


def test_address_text_and_identity() -> None:
    gw = AddressInfo.parse("10.0.0.1/24", "10.0.0.255")
    assert str(gw) == "10.0.0.1/24 brd 10.0.0.255"
    assert gw.same_address(AddressInfo.parse("10.0.0.1/24"))
    assert gw != AddressInfo.parse("10.0.0.1/24")
    assert not gw.same_address(AddressInfo.parse("10.0.0.1/16"))


def test_default_broadcast() -> None:
    assert netlink.default_broadcast(IPv4Interface("10.0.0.1/24")) == IPv4Address("10.0.0.255")
    assert netlink.default_broadcast(IPv4Interface("10.0.0.1/31")) is None


def test_route_text_and_key() -> None:
    route = RouteInfo.parse("default", "eth2", "10.0.0.254", metric=100)
    assert str(route) == "default via 10.0.0.254 dev eth2 metric 100"
    assert route.is_default
    moved = route.on("br100")
    assert moved.device == "br100" and moved.key() == route.key()
    assert RouteInfo.parse("10.1.0.0/16", "eth2").scope == netlink.SCOPE_LINK


@pytest.mark.parametrize("name", ["", "a" * 16, "a/b", "a b", "eth0:1", ".."])
def test_bad_interface_names(name: str) -> None:
    with pytest.raises(ValueError):
        netlink.check_ifname(name)


def test_mac_normalisation() -> None:
    assert netlink.normalize_mac("FA-16-3E-2C-E8-EC") == "fa:16:3e:2c:e8:ec"
    with pytest.raises(ValueError):
        netlink.normalize_mac("fa:16:3e:2c:e8:eg")


def test_executor_hook_is_replaceable() -> None:
    def in_another_thread(func):  # type: ignore[no-untyped-def]
        box = []
        worker = threading.Thread(target=lambda: box.append(func()))
        worker.start()
        worker.join()
        return box[0]

    try:
        netlink.set_default_executor(in_another_thread)
        assert netlink.default_executor()(threading.get_ident) != threading.get_ident()
    finally:
        netlink.set_default_executor(None)
    assert netlink.default_executor()(threading.get_ident) == threading.get_ident()
