"""nova-manage's network fields and nova's allocation options, on every backend.

nova: manager.py create_networks/_do_create_networks/_create_fixed_ips,
delete_network (NetworkHasProject), manage.py NetworkCommands.modify,
test_manager.py test_mac_conflicts.
"""

from __future__ import annotations

import pytest

from novanet.db import instances
from novanet.exception import Conflict, UsageError
from novanet.ipam import networks, plan, pool, queries
from novanet.network import leases


def _create(db, cidr="10.0.0.0/24", **kw):
    kw.setdefault("label", "novanetwork")
    kw.setdefault("bridge", "br100")
    return networks.create_networks(db, plan.plan_networks(fixed_range_v4=cidr, **kw))


def _free(db, cidr):
    net = networks.find_network(db, cidr=cidr)
    return [r.address for r in queries.list_fixed_ips(db) if r.network == net.cidr and not r.reserved]


def test_num_networks_share_one_bridge_and_a_later_network_may_join_it(db):
    nets = _create(db, cidr="10.0.0.0/23", num_networks=2, bridge_interface="eth2")
    assert [(n.cidr, n.bridge, n.bridge_interface) for n in nets] == [
        ("10.0.0.0/24", "br100", "eth2"),
        ("10.0.1.0/24", "br100", "eth2"),
    ]
    (third,) = _create(db, cidr="10.0.8.0/24", bridge_interface="eth2")
    assert networks.sharing_bridge(db, third.id) == [n.id for n in nets] + [third.id]
    # one port per bridge: modifying it moves every network of the bridge
    networks.modify_network(db, nets[0], {"bridge_interface": "eth3"})
    assert {n.bridge_interface for n in networks.list_networks(db)} == {"eth3"}


def test_allowed_start_and_end(db):
    # nova: _do_create_networks (gateway = allowed_start, reserved below/above the range)
    (net,) = _create(db, allowed_start="10.0.0.10", allowed_end="10.0.0.20")
    assert (net.gateway, net.dhcp_server, net.dhcp_start) == ("10.0.0.10", "10.0.0.10", "10.0.0.11")
    assert _free(db, "10.0.0.0/24") == [f"10.0.0.{i}" for i in range(11, 21)]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"allowed_start": "10.0.1.5"}, "not a host address of 10.0.0.0/24"),
        ({"allowed_start": "10.0.0.20", "allowed_end": "10.0.0.10"}, "must come after"),
        ({"allowed_end": "10.0.0.255"}, "not a host address"),
        ({"uuid": "not-a-uuid"}, "is not a UUID"),
        ({"num_networks": 2, "cidr": "10.0.0.0/23", "allowed_start": "10.0.0.9"}, "single network"),
        ({"num_networks": 2, "cidr": "10.0.0.0/23", "uuid": "6b1f3a94-9f57-4d9e-8a56-2d3c4b1e0f11"}, "single network"),
        ({"project_id": "a\nb"}, "not a project id"),
    ],
)
def test_bad_create_arguments_write_nothing(db, kw, message):
    with pytest.raises(UsageError, match=message):
        _create(db, **kw)
    assert networks.list_networks(db) == []


def test_uuid_project_and_priority_are_kept(db):
    uuid = "6b1f3a94-9f57-4d9e-8a56-2d3c4b1e0f11"
    (net,) = _create(db, uuid=uuid.upper(), project_id="demo", priority=5)
    assert (net.uuid, net.project_id, net.priority) == (uuid, "demo", 5)
    with pytest.raises(Conflict, match=f"uuid {uuid} exists"):
        _create(db, cidr="10.1.0.0/24", bridge="br101", uuid=uuid)


def test_project_association_and_delete(db):
    (net,) = _create(db)
    net = networks.modify_network(db, net, {"project_id": "demo", "host": "controller-1"})
    assert (net.project_id, net.host) == ("demo", "controller-1")
    # nova: delete_network refused a network of a project (NetworkHasProject)
    with pytest.raises(Conflict, match="disassociated from project demo"):
        networks.delete_network(db, net)
    net = networks.modify_network(db, net, {"project_id": ""})  # --disassociate-project
    assert net.project_id is None and net.host == "controller-1"
    networks.delete_network(db, net)
    assert networks.list_networks(db) == []


def test_allocation_order_priority_then_id(db):
    a, b, c = (
        _create(db, cidr=f"10.0.{i}.0/24", bridge=f"br{i}", priority=p)[0]
        for i, p in ((1, None), (2, 7), (3, 2))
    )
    assert [n.id for n in networks.allocation_order([a, b, c])] == [c.id, b.id, a.id]


def test_mac_attempts_follow_create_unique_mac_address_attempts(db):
    # nova: test_manager.py test_mac_conflicts (a collision first, then a free MAC)
    (net,) = _create(db)
    taken = "fa:16:3e:00:00:01"
    pool.allocate_for_instance(db, network_id=net.id, instance_uuid=_instance(db).uuid, mac=taken)

    def macs(*values):
        it = iter(values)
        return lambda: next(it)

    uuid = _instance(db).uuid
    with pytest.raises(Conflict, match="in 1 attempts"):
        pool.allocate_for_instance(
            db, network_id=net.id, instance_uuid=uuid, mac_attempts=1, new_mac=macs(taken)
        )
    assert [r.mac for r in queries.list_fixed_ips(db) if r.mac] == [taken]  # nothing left behind
    got = pool.allocate_for_instance(
        db, network_id=net.id, instance_uuid=uuid, mac_attempts=2,
        new_mac=macs(taken, "fa:16:3e:00:00:02"),
    )
    assert got.mac == "fa:16:3e:00:00:02"


def test_dnsmasq_init_gets_the_leases_of_every_network_of_its_bridge(db):
    first, second = _create(db, cidr="10.0.0.0/23", num_networks=2)
    for net in (first, second):
        alloc = pool.allocate_for_instance(db, network_id=net.id, instance_uuid=_instance(db).uuid)
        assert pool.lease_fixed_ip(db, alloc.address, alloc.mac)
    lines = leases.lease_lines(db, first.id, 86400).splitlines()
    assert [line.split()[2] for line in lines] == ["10.0.0.2", "10.0.1.2"]


def _instance(db):
    return instances.create_instance(
        db, display_name="vm", hostname="vm", host="compute-1", vif_type="tap"
    )
