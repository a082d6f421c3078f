"""Floating IPs on the controller with stateful fakes: rules, addresses, conntrack, restarts.

The rules are nova's floating_forward_rules (Essex's form, see
novanet/network/floating_rules.py), asserted as the fake kernel lists them
(``iptables -t nat -S``).
"""

from __future__ import annotations

import pytest

from novanet.db import floating as floating_db
from novanet.db import instances
from novanet.db.floating import Mapping
from novanet.exception import Conflict, NotFound
from novanet.linux.iptables.normalise import normalise_rule
from novanet.linux.netlink import NetlinkError
from novanet.network.floating_rules import floating_rules, snat_rules, with_floating
from novanet.network.manager import NetworkManager

POOL = "192.168.56.224/28"
FLOAT = "192.168.56.225"


def nat(controller) -> list[str]:
    return controller.iptables.listing("nat")


def eth1(controller) -> list[str]:
    return [str(a.interface) for a in controller.ip.addresses("eth1")]


def floating_lines(controller) -> list[str]:
    return [line for line in nat(controller) if "192.168.56.22" in line or "192.168.56.23" in line]


@pytest.fixture
def cloud(controller):
    floating_db.create_range(controller.db, POOL, "nova", "eth1")
    controller.manager.init_host()
    return controller


def boot(controller, name="vm"):
    return controller.manager.create_instance(display_name=name, host="compute-1", vif_type="tap")


# -- pure rules ---------------------------------------------------------------------


def test_rules_are_novas_in_the_kernels_spelling():
    rules = floating_rules([Mapping(FLOAT, "10.0.0.2", "eth1")])["nat"]
    # nova: test_linux_net.py test_floating_forward_rules (Essex's form, see floating_rules.py)
    assert rules == {
        "PREROUTING": ["-d 192.168.56.225/32 -j DNAT --to-destination 10.0.0.2"],
        "OUTPUT": ["-d 192.168.56.225/32 -j DNAT --to-destination 10.0.0.2"],
        "float-snat": ["-s 10.0.0.2/32 -j SNAT --to-source 192.168.56.225"],
    }
    # what iptables -S prints: the normaliser leaves them as they are
    assert all(normalise_rule(r) == r for chain in rules.values() for r in chain)


def test_rules_follow_association_order_and_come_after_the_seeds():
    maps = [Mapping("1.1.1.9", "10.0.0.3", "eth1"), Mapping("1.1.1.2", "10.0.0.9", "eth1")]
    merged = with_floating({"nat": {"PREROUTING": ["seed"]}}, floating_rules(maps))
    assert merged["nat"]["PREROUTING"] == [
        "seed",
        "-d 1.1.1.9/32 -j DNAT --to-destination 10.0.0.3",
        "-d 1.1.1.2/32 -j DNAT --to-destination 10.0.0.9",
    ]


def test_force_snat_range_as_nova():
    assert snat_rules("10.0.0.0/24", "192.168.56.200", []) == [
        "-s 10.0.0.0/24 -j SNAT --to-source 192.168.56.200"
    ]
    assert snat_rules("10.0.0.0/24", "192.168.56.200", ["8.8.0.0/16", "1.0.0.0/8"]) == [
        "-s 10.0.0.0/24 -d 8.8.0.0/16 -j SNAT --to-source 192.168.56.200",
        "-s 10.0.0.0/24 -d 1.0.0.0/8 -j SNAT --to-source 192.168.56.200",
    ]


def test_force_snat_range_reaches_the_controllers_snat_chain(controller):
    controller.conf.set_override("force_snat_range", ["8.8.0.0/16"])
    controller.manager.init_host()
    snat = [line for line in nat(controller) if line.startswith("-A nova-network-snat")]
    assert snat == [
        "-A nova-network-snat -j nova-network-float-snat",
        "-A nova-network-snat -s 10.0.0.0/24 -d 8.8.0.0/16 -j SNAT --to-source 192.168.56.200",
    ]


# -- associate / disassociate -----------------------------------------------------------


def test_associate_puts_address_and_rules_in_place_then_disassociate_removes_all(cloud):
    seed = nat(cloud)
    vm = boot(cloud)
    cloud.conf.set_override("send_arp_for_ha", True)
    done = cloud.manager.associate_floating_ip(FLOAT, vm.uuid)
    assert done["fixed_address"] == vm.address == "10.0.0.2" and done["host"] == "controller-1"
    assert f"{FLOAT}/32" in eth1(cloud)
    assert floating_lines(cloud) == [
        "-A nova-network-OUTPUT -d 192.168.56.225/32 -j DNAT --to-destination 10.0.0.2",
        "-A nova-network-PREROUTING -d 192.168.56.225/32 -j DNAT --to-destination 10.0.0.2",
        "-A nova-network-float-snat -s 10.0.0.2/32 -j SNAT --to-source 192.168.56.225",
    ]
    # the seed's rules are all still there, in their order
    assert [line for line in nat(cloud) if line in seed] == seed
    assert cloud.manager.floating_kernel.arp.sent == [("eth1", FLOAT, 3)]
    [row] = [r for r in floating_db.list_floating(cloud.db) if r.address == FLOAT]
    assert (row.fixed_address, row.instance_uuid, row.host) == ("10.0.0.2", vm.uuid, "controller-1")

    ct = cloud.manager.floating_kernel.conntrack
    ct.add("192.168.56.101", FLOAT, "10.0.0.2", "192.168.56.101")  # DNATed in
    ct.add("10.0.0.2", "192.168.56.101", "192.168.56.101", FLOAT)  # SNATed out
    ct.add("10.0.0.1", "10.0.0.2", "10.0.0.2", "10.0.0.1")  # the controller's own: kept
    cloud.manager.disassociate_floating_ip(FLOAT)
    assert floating_lines(cloud) == [] and nat(cloud) == seed
    assert f"{FLOAT}/32" not in eth1(cloud)
    assert [(e.orig_src, e.orig_dst) for e in ct.entries] == [("10.0.0.1", "10.0.0.2")]
    assert floating_db.get_floating(cloud.db, FLOAT).fixed_address is None
    with pytest.raises(Conflict, match="not associated"):
        cloud.manager.disassociate_floating_ip(FLOAT)


def test_a_second_association_appends_so_the_first_rules_stay_in_place(cloud):
    a, b = boot(cloud, "a"), boot(cloud, "b")
    cloud.manager.associate_floating_ip("192.168.56.230", a.uuid)
    cloud.manager.associate_floating_ip("192.168.56.226", b.uuid)
    pre = [line for line in nat(cloud) if line.startswith("-A nova-network-PREROUTING")]
    assert pre[1:] == [
        "-A nova-network-PREROUTING -d 192.168.56.230/32 -j DNAT --to-destination 10.0.0.2",
        "-A nova-network-PREROUTING -d 192.168.56.226/32 -j DNAT --to-destination 10.0.0.3",
    ]


def test_refusals_change_nothing(cloud):
    a, b = boot(cloud, "a"), boot(cloud, "b")
    cloud.manager.associate_floating_ip(FLOAT, a.uuid)
    before = (nat(cloud), eth1(cloud), floating_db.list_floating(cloud.db))
    with pytest.raises(NotFound, match="in no pool"):
        cloud.manager.associate_floating_ip("192.168.56.100", a.uuid)
    with pytest.raises(Conflict, match=f"associated with instance {a.uuid}.*--force"):
        cloud.manager.associate_floating_ip(FLOAT, b.uuid)
    with pytest.raises(Conflict, match="no fixed IP"):
        cloud.manager.associate_floating_ip("192.168.56.226", "7b1c4f8e-0000-4000-8000-000000000000")
    assert (nat(cloud), eth1(cloud), floating_db.list_floating(cloud.db)) == before
    # again with the same instance: nothing to do
    assert cloud.manager.associate_floating_ip(FLOAT, a.uuid)["changed"] is False
    assert (nat(cloud), eth1(cloud)) == before[:2]


def test_force_moves_the_address_and_drops_the_old_mappings_flows(cloud):
    a, b = boot(cloud, "a"), boot(cloud, "b")
    cloud.manager.associate_floating_ip(FLOAT, a.uuid)
    ct = cloud.manager.floating_kernel.conntrack
    ct.add("192.168.56.101", FLOAT, a.address, "192.168.56.101")
    cloud.manager.associate_floating_ip(FLOAT, b.uuid, force=True)
    lines = floating_lines(cloud)
    assert len(lines) == 3 and all(a.address not in line for line in lines)
    assert ct.entries == [] and eth1(cloud).count(f"{FLOAT}/32") == 1


def test_a_kernel_failure_rolls_the_association_back(cloud):
    vm = boot(cloud)
    before = nat(cloud)
    cloud.ip.fail_next["add_address"] = NetlinkError("cannot add address: Operation not permitted")
    with pytest.raises(NetlinkError):
        cloud.manager.associate_floating_ip(FLOAT, vm.uuid)
    assert nat(cloud) == before and f"{FLOAT}/32" not in eth1(cloud)
    assert floating_db.get_floating(cloud.db, FLOAT).fixed_address is None
    assert cloud.manager.floating_mappings() == []


# -- lifecycle -----------------------------------------------------------------------


def test_deleting_the_instance_disassociates_and_auto_assigned_go_back(cloud):
    cloud.conf.set_override("auto_assign_floating_ip", True)
    vm = boot(cloud)
    assert floating_db.of_instances(cloud.db, [vm.uuid])[vm.uuid] == ["192.168.56.225"]
    row = floating_db.get_floating(cloud.db, "192.168.56.225")
    assert row.auto_assigned and row.fixed_address == vm.address
    cloud.manager.delete_instance(vm.uuid)
    row = floating_db.get_floating(cloud.db, "192.168.56.225")
    assert (row.fixed_address, row.host, row.auto_assigned) == (None, None, False)
    assert floating_lines(cloud) == [] and "192.168.56.225/32" not in eth1(cloud)


def test_auto_assign_with_an_empty_pool_still_creates(controller):
    controller.conf.set_override("auto_assign_floating_ip", True)
    controller.manager.init_host()
    vm = boot(controller)
    assert instances.get_by_uuid(controller.db, vm.uuid).state == "active"


def test_an_explicit_address_in_use_is_refused_before_anything_is_created(cloud):
    a = boot(cloud, "a")
    cloud.manager.associate_floating_ip(FLOAT, a.uuid)
    with pytest.raises(Conflict, match="associated"):
        cloud.manager.create_instance(
            display_name="b", host="compute-1", vif_type="tap", floating_ip=FLOAT
        )
    assert [i.display_name for i in instances.list_instances(cloud.db)] == ["a"]
    b = cloud.manager.create_instance(
        display_name="b", host="compute-1", vif_type="tap", floating_ip=""
    )
    assert floating_db.of_instances(cloud.db, [b.uuid])[b.uuid] == ["192.168.56.226"]


def test_restart_adopts_without_duplicates_and_repairs_by_hand_changes(cloud):
    vm = boot(cloud)
    cloud.manager.associate_floating_ip(FLOAT, vm.uuid)
    listing = nat(cloud)
    old = cloud.manager
    restarted = NetworkManager(
        cloud.conf, cloud.db, bridges=old.bridges, iptables=old.iptables, dhcp=cloud.dhcp,
        compute=cloud.compute, floating_kernel=old.floating_kernel,
    )
    cloud.dhcp.provider = restarted.hosts
    restarted.init_host()
    assert nat(cloud) == listing and eth1(cloud).count(f"{FLOAT}/32") == 1
    # by hand: the address deleted, a stale pool address left behind
    from novanet.network.floating import host_address

    cloud.ip.delete_address("eth1", host_address(FLOAT))
    cloud.ip.add_address("eth1", host_address("192.168.56.238"))
    repaired = restarted.check_floating()
    assert repaired == [
        f"{FLOAT}/32 added to eth1",
        "192.168.56.238/32 removed from eth1 (not associated)",
    ]
    assert [a for a in eth1(cloud) if a.endswith("/32")] == [f"{FLOAT}/32"]
    assert restarted.check_floating() == []
