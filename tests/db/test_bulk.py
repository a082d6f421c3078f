"""Large networks on every backend: every row written by the database itself, right."""

from __future__ import annotations

import ipaddress

import pytest
import sqlalchemy as sa

from novanet.db.models import FIXED_IPS
from novanet.exception import UsageError
from novanet.ipam import networks, plan, pool


def test_a_slash_16_has_every_address_in_order_with_its_flags(db):
    progress: list[tuple[int, int]] = []
    (net,) = networks.create_networks(
        db,
        plan.plan_networks(
            label="big", fixed_range_v4="10.0.0.0/16", bridge="br100",
            gateway="10.0.0.9", fixed_cidr="10.0.128.0/17",
        ),
        progress=lambda done, total: progress.append((done, total)),
    )
    with db.reader() as conn:
        rows = conn.execute(
            sa.select(FIXED_IPS.c.address, FIXED_IPS.c.reserved, FIXED_IPS.c.allocated,
                      FIXED_IPS.c.leased, FIXED_IPS.c.instance_uuid, FIXED_IPS.c.host)
            .where(FIXED_IPS.c.network_id == net.id)
            .order_by(FIXED_IPS.c.id)
        ).all()
    expected = [str(a) for a in ipaddress.IPv4Network("10.0.0.0/16")]
    assert [r[0] for r in rows] == expected  # ids follow addresses
    free = [r[0] for r in rows if not r[1]]
    assert free[0] == "10.0.128.0" and free[-1] == "10.0.255.254" and len(free) == 32767
    assert {"10.0.0.0", "10.0.0.9", "10.0.255.255"} <= {r[0] for r in rows if r[1]}
    assert not any(r[2] or r[3] or r[4] or r[5] for r in rows)
    assert progress[-1] == (65536, 65536) and len(progress) > 1
    # and the pool hands out the first free address
    got = pool.allocate_for_instance(db, network_id=net.id, instance_uuid="0" * 36)
    assert got.address == "10.0.128.0"


def test_networks_split_from_one_range_each_get_their_rows(db):
    nets = networks.create_networks(
        db, plan.plan_networks(label="n", fixed_range_v4="10.1.0.0/22", bridge="br100", num_networks=4)
    )
    with db.reader() as conn:
        counts = dict(conn.execute(
            sa.select(FIXED_IPS.c.network_id, sa.func.count()).group_by(FIXED_IPS.c.network_id)
        ).all())
        last = conn.execute(
            sa.select(FIXED_IPS.c.address).where(FIXED_IPS.c.network_id == nets[3].id)
            .order_by(FIXED_IPS.c.id.desc()).limit(1)
        ).scalar()
    assert counts == {n.id: 256 for n in nets} and last == "10.1.3.255"


def test_larger_than_max_network_size_is_refused_before_anything(db):
    with pytest.raises(UsageError, match="more than max_network_size"):
        plan.plan_networks(label="x", fixed_range_v4="10.0.0.0/8", bridge="br100", max_network_size=65536)
    assert networks.list_networks(db) == []
