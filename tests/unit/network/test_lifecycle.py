"""The instance lifecycle with fakes: repair after a crash, unique hostnames, quick release.

The crash tests build what a killed novanet-network leaves behind (a row in
``building`` or ``deleting`` with an address, a hostsfile line and a plugged
device) by running the create's first steps against the database, then
start a *new* manager on the same database as the restarted daemon would.
"""

from __future__ import annotations

import datetime
import threading

import pytest

from novanet.db import instances
from novanet.db.models import INSTANCES, utcnow
from novanet.exception import NotFound
from novanet.ipam import pool, queries
from novanet.network.manager import NetworkManager
from novanet.rpc.objects import InstanceNetwork


def _fixed(db, address):
    return next(r for r in queries.list_fixed_ips(db) if r.address == address)


def _restart(controller) -> NetworkManager:
    """A new manager on the same database and kernel fakes: the daemon after a restart."""
    old = controller.manager
    manager = NetworkManager(
        controller.conf, controller.db, bridges=old.bridges, iptables=old.iptables,
        dhcp=controller.dhcp, compute=controller.compute,
    )
    controller.dhcp.provider = manager.hosts
    controller.manager = manager
    manager.init_host()
    return manager


def _half_created(controller, name: str, mac: str | None = None) -> InstanceNetwork:
    """What a daemon killed while the compute host plugged the instance leaves behind."""
    m = controller.manager
    inst = instances.create_instance(
        controller.db, display_name=name, hostname=name, host="compute-1", vif_type="netns"
    )
    alloc = pool.allocate_for_instance(controller.db, network_id=1, instance_uuid=inst.uuid, mac=mac)
    m.dhcp.reload_allocations(m._dhcp_of(1))
    described = m.describe(inst, instances.Port(alloc.address, alloc.mac, 1))
    controller.compute.setup_instance(described)
    return described


def _age(db, uuid: str, seconds: float) -> None:
    with db.transaction() as conn:
        conn.execute(
            INSTANCES.update().where(INSTANCES.c.uuid == uuid)
            .values(updated_at=utcnow() - datetime.timedelta(seconds=seconds))
        )


def test_restart_rolls_back_creates_a_crash_interrupted(controller):
    controller.manager.init_host()
    kept = controller.manager.create_instance(display_name="kept", host="compute-1", vif_type="tap")
    lost = [_half_created(controller, f"burst-{i}") for i in range(3)]
    assert {i.state for i in instances.list_instances(controller.db)} == {"active", "building"}
    assert len(controller.dhcp.hosts[1]) == 4 and len(controller.compute.plugged) == 4

    m = _restart(controller)
    done = m.reconcile_instances()

    assert len(done) == 3 and all(d.startswith("roll back building instance") for d in done)
    assert [(i.uuid, i.state) for i in instances.list_instances(controller.db)] == [(kept.uuid, "active")]
    assert [h.address for h in controller.dhcp.hosts[1]] == [kept.address]
    assert list(controller.compute.plugged) == [kept.uuid]
    for inst in lost:  # never leased: free again at once, MAC gone
        row = _fixed(controller.db, inst.address)
        assert (row.instance_uuid, row.allocated, row.mac) == (None, False, None)
    assert m.reconcile_instances() == []  # nothing left to do


def test_restart_finishes_an_interrupted_delete(controller):
    m = controller.manager
    m.init_host()
    created = m.create_instance(display_name="doomed", host="compute-1", vif_type="tap")
    instances.update_instance(controller.db, created.id, state="deleting")  # then kill -9

    _restart(controller).reconcile_instances()

    assert instances.list_instances(controller.db) == []
    assert controller.dhcp.hosts[1] == [] and controller.compute.plugged == {}
    assert _fixed(controller.db, created.address).instance_uuid is None


def test_rollback_of_a_leased_address_waits_for_dnsmasq(controller):
    controller.manager.init_host()
    half = _half_created(controller, "leased", mac="fa:16:3e:00:00:01")
    assert pool.lease_fixed_ip(controller.db, half.address, half.mac)
    _restart(controller).reconcile_instances()
    assert instances.list_instances(controller.db) == []
    (address, mac, hosts_at_release) = controller.dhcp.released[0]
    assert (address, mac, hosts_at_release) == (half.address, half.mac, [])
    row = _fixed(controller.db, half.address)
    assert row.leased and not row.allocated and row.instance_uuid == half.uuid  # until del
    assert pool.release_fixed_ip(controller.db, half.address, half.mac)
    assert _fixed(controller.db, half.address).instance_uuid is None


def test_rollback_with_the_compute_host_away_still_frees_the_controller_side(controller):
    controller.manager.init_host()
    half = _half_created(controller, "away")
    controller.compute.fail = TimeoutError("no answer")
    assert _restart(controller).reconcile_instances()
    assert instances.list_instances(controller.db) == []
    assert controller.dhcp.hosts[1] == []
    # its agent's resync removes the device: the controller no longer lists it
    assert controller.manager.get_host_instances("compute-1") == []
    assert half.uuid in controller.compute.plugged


def test_reconcile_leaves_a_create_in_progress_alone(controller):
    """The same daemon: a create waiting for its compute host holds the instance's lock."""
    m = controller.manager
    m.init_host()
    entered, release = threading.Event(), threading.Event()
    plug = controller.compute.setup_instance

    def slow_setup(instance, timeout=None):
        entered.set()
        assert release.wait(10)
        return plug(instance, timeout)

    controller.compute.setup_instance = slow_setup  # type: ignore[method-assign]
    result: list[InstanceNetwork] = []
    creating = threading.Thread(
        target=lambda: result.append(m.create_instance(display_name="slow", host="compute-1", vif_type="tap"))
    )
    creating.start()
    assert entered.wait(10)
    (row,) = instances.list_instances(controller.db)
    _age(controller.db, row.uuid, 3600)  # even an old row is left while its lock is held
    assert m.reconcile_instances() == []
    release.set()
    creating.join(10)
    assert result and instances.get_by_uuid(controller.db, row.uuid).state == "active"


def test_reconcile_waits_for_young_rows_of_this_daemon(controller):
    """A row written after this daemon started may be a request of ours: only once it is stale."""
    m = controller.manager
    m.init_host()
    half = _half_created(controller, "young")  # after the manager started, lock free
    assert m.reconcile_instances() == []
    _age(controller.db, half.uuid, controller.conf.instance_create_timeout + 61)
    assert m.reconcile_instances()
    assert instances.list_instances(controller.db) == []


def test_never_leased_address_is_free_at_once_after_delete(controller):
    m = controller.manager
    m.init_host()
    created = m.create_instance(display_name="brief", host="compute-1", vif_type="tap")
    m.delete_instance(created.uuid)
    row = _fixed(controller.db, created.address)
    assert (row.instance_uuid, row.allocated, row.leased, row.mac) == (None, False, False, None)
    # dnsmasq was still told to drop any lease it might hold (an `add` in flight)
    assert controller.dhcp.released[-1][:2] == (created.address, created.mac)
    # the address goes to the next instance (force it: the pool is LRU)
    with controller.db.transaction() as conn:
        from novanet.db.models import FIXED_IPS

        conn.execute(FIXED_IPS.update().where(FIXED_IPS.c.address != created.address).values(reserved=True))
    again = m.create_instance(display_name="next", host="compute-1", vif_type="tap")
    assert again.address == created.address and again.mac != created.mac
    # a late add/del from the deleted guest's MAC changes nothing of the new owner's
    assert not pool.lease_fixed_ip(controller.db, created.address, created.mac)
    assert not pool.release_fixed_ip(controller.db, created.address, created.mac)
    row = _fixed(controller.db, created.address)
    assert (row.instance_uuid, row.allocated, row.mac) == (again.uuid, True, again.mac)


def test_without_force_dhcp_release_a_never_leased_address_waits(controller):
    controller.conf.set_override("force_dhcp_release", False)
    m = controller.manager
    m.init_host()
    created = m.create_instance(display_name="brief", host="compute-1", vif_type="tap")
    m.delete_instance(created.uuid)
    # dnsmasq was not told to drop a lease it may hold: the timeout decides
    assert _fixed(controller.db, created.address).instance_uuid == created.uuid


def test_double_delete_reports_the_second(controller):
    m = controller.manager
    m.init_host()
    created = m.create_instance(display_name="twice", host="compute-1", vif_type="tap")
    entered, release = threading.Event(), threading.Event()
    teardown = controller.compute.teardown_instance

    def slow_teardown(instance, timeout=None):
        entered.set()
        assert release.wait(10)
        teardown(instance, timeout)

    controller.compute.teardown_instance = slow_teardown  # type: ignore[method-assign]
    first = threading.Thread(target=m.delete_instance, args=(created.uuid,))
    first.start()
    assert entered.wait(10)
    outcome: list[BaseException] = []

    def second() -> None:
        try:
            m.delete_instance(created.uuid)
        except NotFound as exc:
            outcome.append(exc)

    waiting = threading.Thread(target=second)
    waiting.start()
    release.set()
    first.join(10)
    waiting.join(10)
    assert len(outcome) == 1 and created.uuid in str(outcome[0])
    assert controller.compute.torn_down == [created.uuid]


def test_hostnames_are_unique(controller):
    m = controller.manager
    m.init_host()
    a = m.create_instance(display_name="web", host="compute-1", vif_type="tap")
    b = m.create_instance(display_name="Web", host="compute-1", vif_type="tap")
    # someone names an instance like the next instance name
    c = m.create_instance(display_name=f"instance-{b.id + 2:08x}", host="compute-1", vif_type="tap")
    d = m.create_instance(display_name="web", host="compute-1", vif_type="tap")
    hostnames = {h.address: h.hostname for h in controller.dhcp.hosts[1]}
    assert hostnames[a.address] == "web"
    assert hostnames[b.address] == b.name
    assert hostnames[c.address] == f"instance-{b.id + 2:08x}" == d.name
    assert hostnames[d.address] == f"{d.name}-2"
    assert len(set(hostnames.values())) == 4
    # a deleted instance's name is free again
    m.delete_instance(a.uuid)
    e = m.create_instance(display_name="web", host="compute-1", vif_type="tap")
    assert instances.get_by_uuid(controller.db, e.uuid).hostname == "web"


def test_duplicate_hostnames_of_older_rows_are_served_apart(controller):
    m = controller.manager
    m.init_host()
    a = m.create_instance(display_name="web", host="compute-1", vif_type="tap")
    b = m.create_instance(display_name="other", host="compute-1", vif_type="tap")
    instances.update_instance(controller.db, b.id, hostname="web")  # written by an older version
    hosts = {h.address: h.hostname for h in m.hosts(1)}
    assert hosts == {a.address: "web", b.address: b.name}


def test_user_data_is_stored_as_bytes(controller):
    controller.manager.init_host()
    blob = bytes(range(256))
    created = controller.manager.create_instance(
        display_name="blob", host="compute-1", vif_type="tap", user_data=blob
    )
    assert instances.get_by_uuid(controller.db, created.uuid).user_data == blob


@pytest.mark.parametrize("state", ["active", "error"])
def test_reconcile_ignores_finished_instances(controller, state):
    m = controller.manager
    m.init_host()
    created = m.create_instance(display_name="done", host="compute-1", vif_type="tap")
    instances.update_instance(controller.db, created.id, state=state)
    _age(controller.db, created.uuid, 86400)
    assert _restart(controller).reconcile_instances() == []
    assert instances.get_by_uuid(controller.db, created.uuid).state == state
