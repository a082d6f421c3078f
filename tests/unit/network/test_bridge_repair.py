"""The controller's bridge deleted or changed by hand: repaired, dnsmasq restarted when needed."""

from __future__ import annotations

from novanet.linux.bridge import BridgeManager
from novanet.linux.iptables.manager import IptablesManager
from novanet.linux.netlink import AddressInfo
from novanet.network.manager import CONTROLLER_TABLES, NetworkManager

GATEWAY = "10.0.0.1/24"


def bridge_state(controller) -> tuple[list[str], str | None]:
    return (
        [str(a.interface) for a in controller.ip.addresses("br100")],
        controller.ip.link("eth2").master,
    )


def test_a_deleted_bridge_comes_back_with_its_port_and_gateway_and_dnsmasq_restarts(controller):
    controller.manager.init_host()
    # A fresh host: the bridge and its address are new, so dnsmasq is (re)started.
    assert controller.dhcp.restarts == [1]
    controller.dhcp.restarts.clear()
    controller.ip.delete_link("br100")
    assert controller.ip.link("eth2").master is None

    repaired = controller.manager.check_bridges()

    assert bridge_state(controller) == ([GATEWAY], "br100")
    assert controller.ip.link("br100").up
    assert controller.dhcp.restarts == [1]
    assert any("create bridge br100" in line for line in repaired)
    assert repaired[-1] == "br100: dnsmasq restarted (its address had gone)"
    assert controller.manager.check_bridges() == []  # converged
    assert controller.dhcp.restarts == [1]


def test_a_gateway_address_deleted_by_hand_comes_back_first(controller):
    controller.manager.init_host()
    controller.dhcp.restarts.clear()
    controller.ip.add_address("br100", AddressInfo.parse("192.0.2.5/24"))  # someone else's
    controller.ip.delete_address("br100", AddressInfo.parse(GATEWAY, "10.0.0.255"))
    controller.manager.check_bridges()
    assert bridge_state(controller)[0] == [GATEWAY, "192.0.2.5/24"]
    assert controller.dhcp.restarts == [1]


def test_a_port_taken_off_the_bridge_is_put_back_without_restarting_dnsmasq(controller):
    controller.manager.init_host()
    controller.dhcp.restarts.clear()
    controller.ip.set_master("eth2", None)
    assert any("attach eth2 to br100" in line for line in controller.manager.check_bridges())
    assert bridge_state(controller) == ([GATEWAY], "br100")
    assert controller.dhcp.restarts == []


def test_a_restart_after_the_bridge_was_deleted_restarts_dnsmasq(controller, tmp_path):
    controller.manager.init_host()
    controller.dhcp.restarts.clear()
    controller.ip.delete_link("br100")
    # novanet-network starts again: the dnsmasq still running lost its address
    again = NetworkManager(
        controller.conf,
        controller.db,
        bridges=BridgeManager(controller.ip, str(tmp_path / "lock"), controller.sysctl),
        iptables=IptablesManager("network", controller.iptables, tables=CONTROLLER_TABLES),
        dhcp=controller.dhcp,
        compute=controller.compute,
    )
    again.init_host()
    assert bridge_state(controller) == ([GATEWAY], "br100")
    assert controller.dhcp.restarts == [1]
    # and a restart with the bridge intact adopts dnsmasq (no restart)
    controller.dhcp.restarts.clear()
    again.init_host()
    assert controller.dhcp.restarts == []
