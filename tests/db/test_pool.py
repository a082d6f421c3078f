"""The fixed-IP pool: allocation order, MACs, deallocation, leases, timeouts."""

from __future__ import annotations

import datetime

import pytest

from novanet.db import instances
from novanet.db.models import utcnow
from novanet.exception import Conflict, NoMoreFixedIps, UsageError
from novanet.ipam import networks, plan, pool, queries


@pytest.fixture
def net(db):
    (network,) = networks.create_networks(
        db, plan.plan_networks(label="n", fixed_range_v4="10.0.0.0/29", bridge="br100")
    )
    return network


def _instance(db, name="vm"):
    return instances.create_instance(
        db, display_name=name, hostname=name, host="compute-1", vif_type="tap"
    )


def _view(db, address):
    return next(r for r in queries.list_fixed_ips(db) if r.address == address)


def test_fresh_network_hands_out_dot_two_first_then_in_order(db, net):
    got = [
        pool.allocate_for_instance(db, network_id=net.id, instance_uuid=_instance(db).uuid).address
        for _ in range(5)
    ]
    assert got == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(NoMoreFixedIps, match="no more fixed IPs in network 10.0.0.0/29"):
        pool.allocate_for_instance(db, network_id=net.id, instance_uuid=_instance(db).uuid)
    # the failed attempt left no VIF behind
    assert len([r for r in queries.list_fixed_ips(db) if r.mac]) == 5


def test_requested_mac_and_taken_mac(db, net):
    a = pool.allocate_for_instance(
        db, network_id=net.id, instance_uuid=_instance(db).uuid, mac="FA:16:3E:2C:E8:EC"
    )
    assert a.mac == "fa:16:3e:2c:e8:ec"
    with pytest.raises(Conflict, match="already in use"):
        pool.allocate_for_instance(
            db, network_id=net.id, instance_uuid=_instance(db).uuid, mac="fa:16:3e:2c:e8:ec"
        )
    with pytest.raises(UsageError):
        pool.allocate_for_instance(
            db, network_id=net.id, instance_uuid=_instance(db).uuid, mac="01:00:5e:00:00:01"
        )
    assert [r.address for r in queries.list_fixed_ips(db) if r.instance_uuid] == ["10.0.0.2"]


def test_generated_macs_are_unique_and_in_oui(db, net):
    macs = {
        pool.allocate_for_instance(db, network_id=net.id, instance_uuid=_instance(db).uuid).mac
        for _ in range(5)
    }
    assert len(macs) == 5 and all(m.startswith("fa:16:3e:") for m in macs)


def test_hostsfile_rows(db, net):
    inst = _instance(db, "cirros")
    pool.allocate_for_instance(
        db, network_id=net.id, instance_uuid=inst.uuid, mac="fa:16:3e:2c:e8:ec"
    )
    hosts = queries.hosts_for_network(db, net.id)
    assert [(h.mac, h.hostname, h.address) for h in hosts] == [
        ("fa:16:3e:2c:e8:ec", "cirros", "10.0.0.2")
    ]


def test_lease_release_lifecycle(db, net):
    inst = _instance(db)
    a = pool.allocate_for_instance(db, network_id=net.id, instance_uuid=inst.uuid)
    assert pool.lease_fixed_ip(db, a.address, a.mac)
    assert _view(db, a.address).leased
    # deallocation keeps the address associated while the lease may live
    assert pool.deallocate_for_instance(db, inst.uuid) == [(a.address, a.mac, net.id)]
    row = _view(db, a.address)
    assert not row.allocated and row.leased and row.instance_uuid == inst.uuid
    assert queries.hosts_for_network(db, net.id) == []
    # dnsmasq's del frees it
    assert pool.release_fixed_ip(db, a.address, a.mac)
    row = _view(db, a.address)
    assert row.instance_uuid is None and not row.leased and row.mac is None


def test_release_while_allocated_only_clears_leased(db, net):
    a = pool.allocate_for_instance(db, network_id=net.id, instance_uuid=_instance(db).uuid)
    pool.lease_fixed_ip(db, a.address, a.mac)
    assert pool.release_fixed_ip(db, a.address, a.mac)
    row = _view(db, a.address)
    assert row.allocated and not row.leased and row.instance_uuid is not None


def test_late_del_for_reassigned_address_is_ignored(db, net):
    old = _instance(db, "old")
    a = pool.allocate_for_instance(db, network_id=net.id, instance_uuid=old.uuid)
    pool.deallocate_for_instance(db, old.uuid)
    pool.disassociate_stale(db, 600, now=utcnow() + datetime.timedelta(seconds=601))
    # the pool is now LRU: force the same address to the new instance
    new = _instance(db, "new")
    for _ in range(4):
        pool.allocate_for_instance(db, network_id=net.id, instance_uuid=_instance(db).uuid)
    b = pool.allocate_for_instance(db, network_id=net.id, instance_uuid=new.uuid)
    assert b.address == a.address and b.mac != a.mac
    pool.lease_fixed_ip(db, b.address, b.mac)
    assert not pool.release_fixed_ip(db, a.address, a.mac)  # the old guest's late del
    row = _view(db, b.address)
    assert row.instance_uuid == new.uuid and row.allocated and row.leased
    assert not pool.lease_fixed_ip(db, a.address, a.mac)  # nor a late add


def test_disassociate_timeout(db, net):
    inst = _instance(db)
    a = pool.allocate_for_instance(db, network_id=net.id, instance_uuid=inst.uuid)
    pool.deallocate_for_instance(db, inst.uuid)
    assert pool.disassociate_stale(db, 600) == []
    assert _view(db, a.address).instance_uuid == inst.uuid
    later = utcnow() + datetime.timedelta(seconds=601)
    assert pool.disassociate_stale(db, 600, now=later) == [a.address]
    assert _view(db, a.address).instance_uuid is None


def test_released_address_goes_to_the_back_of_the_queue(db, net):
    first = _instance(db)
    a = pool.allocate_for_instance(db, network_id=net.id, instance_uuid=first.uuid)
    pool.deallocate_for_instance(db, first.uuid)
    pool.free_unleased(db, first.uuid)
    nxt = pool.allocate_for_instance(db, network_id=net.id, instance_uuid=_instance(db).uuid)
    assert a.address == "10.0.0.2" and nxt.address == "10.0.0.3"


def test_free_unleased_keeps_leased(db, net):
    inst = _instance(db)
    a = pool.allocate_for_instance(db, network_id=net.id, instance_uuid=inst.uuid)
    pool.lease_fixed_ip(db, a.address, a.mac)
    pool.deallocate_for_instance(db, inst.uuid)
    assert pool.free_unleased(db, inst.uuid) == []
    assert _view(db, a.address).instance_uuid == inst.uuid


def test_reserve_unreserve(db, net):
    pool.set_reserved(db, "10.0.0.2", True)
    a = pool.allocate_for_instance(db, network_id=net.id, instance_uuid=_instance(db).uuid)
    assert a.address == "10.0.0.3"
    with pytest.raises(Conflict, match="in use"):
        pool.set_reserved(db, "10.0.0.3", True)
    with pytest.raises(Conflict, match="stays reserved"):
        pool.set_reserved(db, "10.0.0.1", False)
    pool.set_reserved(db, "10.0.0.2", False)
    assert not _view(db, "10.0.0.2").reserved


def _plan(db, sql, params):
    with db.engine.connect() as conn:
        if db.backend == "postgresql":
            # the table is tiny: make the planner show which index can give
            # the order, instead of preferring a sequential scan
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_sort = off")
            rows = conn.exec_driver_sql("EXPLAIN " + sql, params).all()
            return "\n".join(r[0] for r in rows)
        if db.backend == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()
            return "\n".join(r[-1] for r in rows)
        rows = conn.exec_driver_sql("EXPLAIN " + sql, params).mappings().all()
        return "\n".join(f"{r['key']} {r['Extra']}" for r in rows)


def test_allocation_reads_free_rows_in_order_without_sorting(db):
    """The candidate query walks an index in LRU order: no sort of the free rows.

    (Before ix_fixed_ips_free, PostgreSQL sorted all 65,000 free rows of a /16
    on every allocation: 25 ms each.)
    """
    # big enough that MariaDB's optimizer does not prefer a full scan
    (net,) = networks.create_networks(
        db, plan.plan_networks(label="big", fixed_range_v4="10.1.0.0/22", bridge="br101")
    )
    compiled = pool._CANDIDATES.compile(db.engine)
    params = compiled.construct_params({"b_network": net.id})
    positional = compiled.positiontup
    args = tuple(params[name] for name in positional) if positional else params
    plan_text = _plan(db, str(compiled), args)
    assert "Sort" not in plan_text and "TEMP B-TREE" not in plan_text, plan_text
    assert "filesort" not in plan_text, plan_text
    if db.backend == "postgresql":
        assert "ix_fixed_ips_free" in plan_text, plan_text
    elif db.backend == "sqlite":
        assert "ix_fixed_ips_pool" in plan_text, plan_text
