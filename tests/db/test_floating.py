"""Floating IPs on SQLite, MariaDB and PostgreSQL: pools, associations, races, refusals."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from novanet.db import floating, instances
from novanet.db.models import FLOATING_IPS
from novanet.exception import Conflict, NotFound
from novanet.ipam import networks, plan, pool


def _rows(db):
    with db.reader() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.select(FLOATING_IPS)).all())


def _instance(db, name="vm"):
    inst = instances.create_instance(db, display_name=name, hostname=name, host="c1", vif_type="tap")
    nets = networks.list_networks(db) or networks.create_networks(
        db, plan.plan_networks(label="n", fixed_range_v4="10.0.0.0/24", bridge="br100")
    )
    alloc = pool.allocate_for_instance(db, network_id=nets[0].id, instance_uuid=inst.uuid)
    return inst, alloc.address


def test_a_range_and_its_refusals(db):
    added = floating.create_range(db, "192.168.56.224/28", "nova", "eth1")
    assert added[0] == "192.168.56.225" and added[-1] == "192.168.56.238" and len(added) == 14
    before = _rows(db)
    with pytest.raises(Conflict, match="overlaps existing floating IPs"):
        floating.create_range(db, "192.168.56.192/26", "other", "eth1")
    with pytest.raises(Conflict, match="holds my_ip"):
        floating.create_range(db, "192.168.56.192/28", "x", "eth1", [("my_ip", "192.168.56.200")])
    _instance(db)
    with pytest.raises(Conflict, match="overlaps fixed network"):
        floating.create_range(db, "10.0.0.0/28", "x", "eth1")
    assert _rows(db) == before
    with pytest.raises(NotFound):
        floating.delete_range(db, "172.16.0.0/28")
    assert floating.delete_range(db, "192.168.56.224/30") == 2
    assert len(_rows(db)) == 12


def test_a_big_range_in_one_go(db):
    assert len(floating.create_range(db, "172.16.0.0/20", "big", "eth1")) == 4094
    assert floating.free_address(db, "big") == "172.16.0.1"


def test_associate_disassociate_and_the_listing(db):
    floating.create_range(db, "192.168.56.224/28", "nova", "eth1")
    a, a_fixed = _instance(db, "a")
    b, b_fixed = _instance(db, "b")
    new, prev = floating.associate(db, "192.168.56.230", a.uuid, "ctl")
    assert (new, prev) == (floating.Mapping("192.168.56.230", a_fixed, "eth1", a.uuid), None)
    assert floating.associate(db, "192.168.56.230", a.uuid, "ctl") == (new, None)  # idempotent
    with pytest.raises(Conflict, match="--force"):
        floating.associate(db, "192.168.56.230", b.uuid, "ctl")
    floating.associate(db, "192.168.56.226", b.uuid, "ctl", auto_assigned=True)
    assert [m.address for m in floating.mappings(db, "ctl")] == ["192.168.56.230", "192.168.56.226"]
    assert floating.of_instances(db, [a.uuid, b.uuid]) == {
        a.uuid: ["192.168.56.230"], b.uuid: ["192.168.56.226"]
    }
    row = floating.get_floating(db, "192.168.56.226")
    assert (row.fixed_address, row.instance_uuid, row.host, row.auto_assigned) == (
        b_fixed, b.uuid, "ctl", True
    )
    moved, replaced = floating.associate(db, "192.168.56.230", b.uuid, "ctl", force=True)
    assert replaced == floating.Mapping("192.168.56.230", a_fixed, "eth1", a.uuid)
    assert moved.fixed_address == b_fixed
    assert floating.disassociate(db, "192.168.56.226").fixed_address == b_fixed
    assert floating.disassociate(db, "192.168.56.226") is None
    assert floating.get_floating(db, "192.168.56.226").auto_assigned is False
    with pytest.raises(Conflict, match="is associated"):
        floating.delete_range(db, "192.168.56.224/28")
    with pytest.raises(NotFound, match="in no pool"):
        floating.associate(db, "192.168.56.100", a.uuid, "ctl")


def test_concurrent_associations_of_one_address_one_wins(db):
    floating.create_range(db, "192.168.56.224/28", "nova", "eth1")
    insts = [_instance(db, f"vm{i}")[0] for i in range(6)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(insts))

    def take(uuid: str) -> None:
        barrier.wait()
        try:
            floating.associate(db, "192.168.56.225", uuid, "ctl")
            outcomes.append("won")
        except Conflict:
            outcomes.append("lost")

    threads = [threading.Thread(target=take, args=(i.uuid,)) for i in insts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 5 + ["won"]
    assert len(floating.mappings(db, "ctl")) == 1


def test_a_fixed_ip_that_goes_leaves_the_address_unassociated(db):
    floating.create_range(db, "192.168.56.224/30", "nova", "eth1")
    a, _ = _instance(db)
    floating.associate(db, "192.168.56.225", a.uuid, "ctl")
    pool.deallocate_for_instance(db, a.uuid)
    with db.transaction() as conn:  # what network delete's cascade does
        conn.execute(sa.text("DELETE FROM fixed_ips"))
    assert floating.get_floating(db, "192.168.56.225").fixed_address is None
