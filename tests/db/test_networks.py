"""network create/list/modify/delete with nova's semantics, on every backend."""

from __future__ import annotations

import pytest

from novanet.exception import Conflict, NotFound, UsageError
from novanet.ipam import networks, plan, queries


def _create(db, cidr="10.0.0.0/24", **kw):
    kw.setdefault("label", "novanetwork")
    kw.setdefault("bridge", "br100")
    return networks.create_networks(db, plan.plan_networks(fixed_range_v4=cidr, **kw))


def test_seed_network(db):
    (net,) = _create(db, bridge_interface="eth2")
    assert (net.cidr, net.gateway, net.dhcp_server, net.dhcp_start, net.broadcast) == (
        "10.0.0.0/24",
        "10.0.0.1",
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.255",
    )
    assert net.netmask == "255.255.255.0" and net.bridge == "br100"
    rows = queries.list_fixed_ips(db)
    assert len(rows) == 256
    reserved = [r.address for r in rows if r.reserved]
    assert reserved == ["10.0.0.0", "10.0.0.1", "10.0.0.255"]
    assert not any(r.allocated or r.leased or r.instance_uuid for r in rows)


def test_overlapping_cidr_refused_and_nothing_written(db):
    _create(db)
    before = len(queries.list_fixed_ips(db))
    for cidr in ("10.0.0.0/25", "10.0.0.128/25", "10.0.0.0/16", "10.0.0.0/24"):
        with pytest.raises(Conflict, match="overlaps"):
            _create(db, cidr=cidr, bridge="br200")
    assert len(networks.list_networks(db)) == 1
    assert len(queries.list_fixed_ips(db)) == before


def test_a_bridge_has_one_port_to_the_vm_network(db):
    # networks may share a bridge (test_parity.py), but through one bridge_interface
    _create(db, bridge_interface="eth2")
    with pytest.raises(Conflict, match="bridge br100 already serves networks with bridge_interface eth2"):
        _create(db, cidr="10.9.0.0/24", bridge_interface="eth3")
    assert len(networks.list_networks(db)) == 1


def test_split_into_networks(db):
    nets = _create(db, cidr="10.0.0.0/22", num_networks=4, network_size=256)
    assert [n.cidr for n in nets] == ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"]
    # nova: manager.py _do_create_networks gave every network the one bridge
    assert [n.bridge for n in nets] == ["br100"] * 4
    assert [n.label for n in nets] == [f"novanetwork_{i}" for i in range(4)]
    assert nets[2].gateway == "10.0.2.1" and nets[2].dhcp_start == "10.0.2.2"


def test_network_size_bounds_the_range(db):
    (net,) = _create(db, cidr="10.0.0.0/16", network_size=64)
    assert net.cidr == "10.0.0.0/26"
    assert len(queries.list_fixed_ips(db)) == 64


def test_fixed_cidr_reserves_outside_addresses(db):
    _create(db, fixed_cidr="10.0.0.128/25")
    rows = queries.list_fixed_ips(db)
    free = [r.address for r in rows if not r.reserved]
    assert free[0] == "10.0.0.128" and free[-1] == "10.0.0.254"
    assert len(free) == 127


def test_custom_gateway(db):
    (net,) = _create(db, gateway="10.0.0.254")
    assert net.gateway == "10.0.0.254" and net.dhcp_start == "10.0.0.1"
    reserved = [r.address for r in queries.list_fixed_ips(db) if r.reserved]
    assert reserved == ["10.0.0.0", "10.0.0.254", "10.0.0.255"]


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"fixed_range_v4": "10.0.0.0/33"}, "not a valid IPv4 CIDR"),
        ({"fixed_range_v4": "10.0.0.1/24"}, "host bits set"),
        ({"fixed_range_v4": "banana"}, "not a CIDR"),
        ({"fixed_range_v4": "10.0.0.0/31"}, "power of two of at least 4"),
        ({"num_networks": 3, "network_size": 128}, "not big enough"),
        ({"network_size": 100}, "power of two"),
        ({"gateway": "10.0.1.1"}, "not a host address"),
        ({"gateway": "10.0.0.255"}, "not a host address"),
        ({"fixed_cidr": "10.1.0.0/24"}, "not inside"),
        ({"bridge": "a-bridge-name-too-long"}, "not a valid interface name"),
        ({"label": " "}, "must not be empty"),
        ({"multi_host": True}, "not supported"),
        ({"num_networks": 2, "network_size": 128, "gateway": "10.0.0.9"}, "single network"),
        ({"dns1": "8.8.8"}, "not an IPv4 address"),
    ],
)
def test_bad_create_refused_and_nothing_written(db, kw, message):
    args = {"label": "n", "fixed_range_v4": "10.0.0.0/24", "bridge": "br100"}
    args.update(kw)
    with pytest.raises(UsageError, match=message):
        networks.create_networks(db, plan.plan_networks(**args))
    assert networks.list_networks(db) == []


def test_find_modify_delete(db):
    (net,) = _create(db)
    assert networks.find_network(db, cidr="10.0.0.0/24").id == net.id
    assert networks.find_network(db, uuid=net.uuid).id == net.id
    with pytest.raises(NotFound):
        networks.find_network(db, cidr="10.9.0.0/24")
    changed = networks.modify_network(db, net, {"label": "renamed", "dns1": "10.0.0.53"})
    assert (changed.label, changed.dns1) == ("renamed", "10.0.0.53")
    with pytest.raises(UsageError):
        networks.modify_network(db, net, {"dns2": "nope"})
    assert networks.get_network(db, net.id).dns2 is None
    networks.delete_network(db, net)
    assert networks.list_networks(db) == [] and queries.list_fixed_ips(db) == []
