"""The controller with several networks, network hosts, priorities and share_dhcp_address.

nova: manager.py _do_create_networks (num_networks on one bridge),
setup_networks_on_host (a network served by its host), linux_net.py
isolate_dhcp_address (share_dhcp_address; test_linux_net.py test_isolated_host).
"""

from __future__ import annotations

import pytest

from novanet.exception import NoMoreFixedIps
from novanet.ipam import networks, plan
from novanet.linux.ebtables import Ebtables


def _create(db, cidr, **kw):
    return networks.create_networks(
        db, plan.plan_networks(label=kw.pop("label", "n"), fixed_range_v4=cidr, **kw)
    )


def test_networks_of_one_bridge_share_it_and_one_dnsmasq(controller):
    # `network create --num_networks 2` after the seed's network: both on br100
    _create(controller.db, "10.0.4.0/23", bridge="br100", bridge_interface="eth2", num_networks=2)
    m = controller.manager
    m.init_host()
    addresses = [str(a.interface) for a in controller.ip.addresses("br100")]
    assert addresses == ["10.0.0.1/24", "10.0.4.1/24", "10.0.5.1/24"]  # the first network's first
    (dhcp,) = controller.dhcp.enabled.values()
    assert [s.cidr for s in dhcp.subnets] == ["10.0.0.0/24", "10.0.4.0/24", "10.0.5.0/24"]
    # instances of every network of the bridge are the bridge's dnsmasq's hosts
    for name in ("a", "b"):
        m.create_instance(display_name=name, host="compute-1", vif_type="tap")
    assert [h.address for h in controller.dhcp.hosts[1]] == ["10.0.0.2", "10.0.0.3"]
    assert m.init_host() is None and len(controller.ip.addresses("br100")) == 3


def test_allocation_follows_priority_then_falls_through_when_full(controller):
    _create(controller.db, "10.0.4.0/30", bridge="br100", bridge_interface="eth2", priority=1)
    m = controller.manager
    m.init_host()
    first = m.create_instance(display_name="a", host="compute-1", vif_type="tap")
    assert first.address == "10.0.4.2" and first.cidr == "10.0.4.0/30"  # priority 1 first
    second = m.create_instance(display_name="b", host="compute-1", vif_type="tap")
    assert second.address == "10.0.0.2"  # the /30 has one host address: the next network
    for name in range(252):  # the rest of 10.0.0.2 .. 10.0.0.254
        m.create_instance(display_name=f"x{name}", host="compute-1", vif_type="tap")
    with pytest.raises(NoMoreFixedIps, match="any of the 2 networks"):
        m.create_instance(display_name="none", host="compute-1", vif_type="tap")


def test_a_network_given_to_another_host_is_not_served_here(controller):
    m = controller.manager
    controller.ip.add_link("eth3", up=True)
    _create(controller.db, "10.1.0.0/24", bridge="br101", bridge_interface="eth3")
    m.init_host()
    assert sorted(controller.dhcp.enabled) == [1, 2]
    net = networks.find_network(controller.db, cidr="10.1.0.0/24")
    networks.modify_network(controller.db, net, {"host": "controller-2"})
    assert m.refresh_networks() == ["network 10.1.0.0/24 removed"]
    assert sorted(controller.dhcp.enabled) == [1]
    assert "-s 10.1.0.0/24" not in " ".join(controller.iptables.listing("nat"))
    networks.modify_network(controller.db, net, {"host": ""})  # --disassociate-host
    assert m.refresh_networks() == ["network 10.1.0.0/24 set up"]
    assert sorted(controller.dhcp.enabled) == [1, 2]


class FakeEbtables:
    """ebtables' filter table: -D fails for a missing rule, -I puts a rule first."""

    def __init__(self) -> None:
        self.chains: dict[str, list[tuple[str, ...]]] = {"INPUT": [], "OUTPUT": [], "FORWARD": []}

    def __call__(self, cmd, check=True, **_kw):
        assert cmd[:4] == ["ebtables", "--concurrent", "-t", "filter"], cmd
        op, chain, rule = cmd[4], cmd[5], tuple(cmd[6:])
        rules = self.chains[chain]
        if op == "-D":
            if rule not in rules:
                assert not check
                return "", "Bad rule (does a matching rule exist in that chain?)"
            rules.remove(rule)
        else:
            rules.insert(0, rule)
        return "", ""


def test_share_dhcp_address_isolates_the_dhcp_address_from_the_wire(controller):
    # nova: test_linux_net.py test_isolated_host (share_dhcp_address=True)
    fake = FakeEbtables()
    controller.manager.ebtables = Ebtables(execute=fake)
    controller.conf.set_override("share_dhcp_address", True)
    controller.manager.init_host()
    controller.manager.init_host()  # converges: each rule once
    assert fake.chains == {
        "INPUT": [("-p", "ARP", "-i", "eth2", "--arp-ip-dst", "10.0.0.1", "-j", "DROP")],
        "OUTPUT": [("-p", "ARP", "-o", "eth2", "--arp-ip-src", "10.0.0.1", "-j", "DROP")],
        "FORWARD": [
            ("-p", "IPv4", "-o", "eth2", "--ip-protocol", "udp")
            + ("--ip-destination-port", "67:68", "-j", "DROP"),
            ("-p", "IPv4", "-i", "eth2", "--ip-protocol", "udp")
            + ("--ip-destination-port", "67:68", "-j", "DROP"),
        ],
    }


def test_without_share_dhcp_address_no_ebtables_rule(controller):
    fake = FakeEbtables()
    controller.manager.ebtables = Ebtables(execute=fake)
    controller.manager.init_host()
    assert fake.chains == {"INPUT": [], "OUTPUT": [], "FORWARD": []}
