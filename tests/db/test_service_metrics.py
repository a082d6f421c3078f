"""The scrape-time counts and `service disable/enable` on every backend."""

from __future__ import annotations

from novanet.db import instances, services
from novanet.ipam import networks, plan, pool
from novanet.network.metrics import address_counts, instances_per_host


def test_address_counts_and_instances_per_host(db):
    (net,) = networks.create_networks(
        db, plan.plan_networks(label="n", fixed_range_v4="10.0.0.0/24", bridge="br100")
    )
    for i, host in enumerate(("compute-1", "compute-1", "compute-2")):
        inst = instances.create_instance(
            db, display_name=f"vm{i}", hostname=f"vm{i}", host=host, vif_type="tap"
        )
        alloc = pool.allocate_for_instance(db, network_id=net.id, instance_uuid=inst.uuid)
        if i == 0:
            pool.lease_fixed_ip(db, alloc.address, alloc.mac)
    assert address_counts(db) == [("10.0.0.0/24", "br100", 256, 250, 3, 1, 3)]
    assert instances_per_host(db) == {"compute-1": 2, "compute-2": 1}


def test_disable_survives_heartbeats(db):
    services.heartbeat(db, "compute-1", "novanet-compute", "compute")
    assert services.set_disabled(db, "compute-1", "novanet-compute", True)
    services.heartbeat(db, "compute-1", "novanet-compute", "compute")
    (row,) = services.list_services(db)
    assert row.disabled and row.report_count == 2
    assert not services.set_disabled(db, "compute-9", "novanet-compute", True)
    assert services.set_disabled(db, "compute-1", "novanet-compute", False)
    assert not services.list_services(db)[0].disabled
