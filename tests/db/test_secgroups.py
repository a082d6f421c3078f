"""Security groups on SQLite, MariaDB and PostgreSQL: changes, refusals that write nothing, views."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from novanet.db import instances, migration, secgroup_view, secgroups
from novanet.db.api import Database
from novanet.db.models import SECURITY_GROUP_INSTANCES, SECURITY_GROUP_RULES, SECURITY_GROUPS
from novanet.exception import Conflict, NotFound, UsageError
from novanet.ipam import networks, plan, pool
from novanet.secrules import Rule, cidr_rule

SSH = cidr_rule("tcp", 22, 22, "0.0.0.0/0")
PG = Rule("tcp", 5432, 5432)


def _rows(db):
    with db.reader() as conn:
        return [
            sorted(tuple(r) for r in conn.execute(sa.select(t)).all())
            for t in (SECURITY_GROUPS, SECURITY_GROUP_RULES, SECURITY_GROUP_INSTANCES)
        ]


def _instance(db, name="vm", host="compute-1", address=True):
    inst = instances.create_instance(db, display_name=name, hostname=name, host=host, vif_type="tap")
    if address:
        nets = networks.list_networks(db) or networks.create_networks(
            db, plan.plan_networks(label="n", fixed_range_v4="10.0.0.0/24", bridge="br100")
        )
        pool.allocate_for_instance(db, network_id=nets[0].id, instance_uuid=inst.uuid)
    instances.update_instance(db, inst.id, state="active")
    return inst


def test_the_migration_creates_default(backend):
    db = Database(backend.fresh_url("sgdefault"))
    try:
        migration.upgrade(db.engine)
        with db.reader() as conn:
            assert conn.execute(sa.select(SECURITY_GROUPS.c.name)).scalars().all() == ["default"]
    finally:
        db.dispose()


def test_groups_rules_and_membership(db):
    secgroups.create_group(db, "web", "the web servers")
    secgroups.create_group(db, "db")
    secgroups.add_rule(db, "web", SSH)
    secgroups.add_rule(db, "web", cidr_rule("icmp", -1, -1, "10.0.0.0/8"))
    secgroups.add_rule(db, "db", (PG, "web"))
    groups = {g.name: g for g in secgroups.list_groups(db)}
    assert list(groups) == ["db", "default", "web"]  # default made on demand
    assert groups["db"].description == "db"
    assert [r.rule.compact() for r in groups["web"].rules] == ["icmp -1 -1 10.0.0.0/8", "tcp 22 22 0.0.0.0/0"]
    [pg] = groups["db"].rules
    assert (pg.source_name, pg.rule.source_group) == ("web", groups["web"].id)
    vm = _instance(db)
    secgroups.add_instance(db, vm.uuid, "web")
    secgroups.add_instance(db, vm.uuid, "db")
    assert secgroups.groups_of(db, vm.uuid) == ("db", "web")
    assert secgroup_view.rules_for(db, [vm.uuid])[vm.uuid] == (
        "icmp -1 -1 10.0.0.0/8", "tcp 22 22 0.0.0.0/0", f"tcp 5432 5432 @{groups['web'].id}",
    )
    [port] = instances.ports_of(db, vm.uuid)
    assert secgroup_view.member_addresses(db, [groups["web"].id]) == {groups["web"].id: [port.address]}
    assert secgroup_view.referencing_hosts(db, [groups["web"].id]) == {"compute-1": {groups["web"].id}}
    assert secgroup_view.member_hosts(db, [groups["db"].id]) == {"compute-1": {vm.uuid}}
    secgroups.delete_rule(db, "db", (PG, "web"))
    secgroups.remove_instance(db, vm.uuid, "db")
    secgroups.delete_group(db, "db")
    assert [g.name for g in secgroups.list_groups(db)] == ["default", "web"]


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda db, vm: secgroups.create_group(db, "web"), Conflict, "already exists"),
        (lambda db, vm: secgroups.create_group(db, ""), UsageError, "must not be empty"),
        (lambda db, vm: secgroups.create_group(db, "x" * 256), UsageError, "at most 255"),
        (lambda db, vm: secgroups.create_group(db, "a\nb"), UsageError, "control"),
        (lambda db, vm: secgroups.delete_group(db, "default"), Conflict, "'default' cannot be deleted"),
        (lambda db, vm: secgroups.delete_group(db, "web"), Conflict, "used by instance"),
        (lambda db, vm: secgroups.delete_group(db, "src"), Conflict, r"source of rules of group\(s\) web"),
        (lambda db, vm: secgroups.delete_group(db, "nope"), NotFound, "no security group 'nope'"),
        (lambda db, vm: secgroups.add_rule(db, "web", SSH), Conflict, "already has this rule"),
        (lambda db, vm: secgroups.add_rule(db, "web", (PG, "src")), Conflict, "already has"),
        (lambda db, vm: secgroups.add_rule(db, "nope", SSH), NotFound, "no security group"),
        (lambda db, vm: secgroups.add_rule(db, "web", (PG, "nope")), NotFound, "'nope'"),
        (lambda db, vm: secgroups.delete_rule(db, "web", cidr_rule("udp", 1, 2, "0.0.0.0/0")), NotFound, "no such rule"),
        (lambda db, vm: secgroups.add_instance(db, vm.uuid, "web"), Conflict, "already in"),
        (lambda db, vm: secgroups.remove_instance(db, vm.uuid, "src"), NotFound, "not in"),
        (lambda db, vm: secgroups.add_instance(db, "0" * 8 + "-0000-4000-8000-" + "0" * 12, "src"), NotFound, "does not exist"),
    ],
)
def test_refusals_write_nothing(db, change, error, message):
    secgroups.create_group(db, "web")
    secgroups.create_group(db, "src")
    secgroups.add_rule(db, "web", SSH)
    secgroups.add_rule(db, "web", (PG, "src"))
    vm = _instance(db, address=False)
    secgroups.add_instance(db, vm.uuid, "web")
    before = _rows(db)
    with pytest.raises(error, match=message) as info:
        change(db, vm)
    assert "\n" not in str(info.value)
    assert _rows(db) == before


def test_the_group_names_its_members_and_membership_goes_with_the_instance(db):
    secgroups.create_group(db, "web")
    vm = _instance(db, "alpha", address=False)
    secgroups.add_instance(db, vm.uuid, "web")
    with pytest.raises(Conflict, match=rf"alpha \({vm.uuid}\)"):
        secgroups.delete_group(db, "web")
    instances.delete_instance_row(db, vm.id)  # ON DELETE CASCADE on every backend
    secgroups.delete_group(db, "web")
    assert _rows(db)[2] == []


def test_a_group_may_grant_itself_and_still_be_deleted(db):
    secgroups.create_group(db, "self")
    secgroups.add_rule(db, "self", (PG, "self"))
    secgroups.delete_group(db, "self")
    assert _rows(db)[1] == []


def test_two_operators_adding_one_rule_get_one_rule(db):
    secgroups.create_group(db, "web")
    errors: list[Exception] = []

    def add() -> None:
        try:
            secgroups.add_rule(db, "web", SSH)
        except Conflict as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(secgroups.get_group(db, "web").rules) == 1 and len(errors) == 3
