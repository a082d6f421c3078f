"""The controller tells exactly the compute hosts a security-group change concerns."""

from __future__ import annotations

import pytest

from novanet.db import secgroups, services
from novanet.exception import NotFound
from novanet.secrules import cidr_rule, group_rule


@pytest.fixture
def ctl(controller):
    services.heartbeat(controller.db, "compute-2", "novanet-compute", "compute")
    services.heartbeat(controller.db, "compute-3", "novanet-compute", "compute")
    controller.manager.init_host()
    return controller


def create(ctl, name, host, groups=None):
    return ctl.manager.create_instance(
        display_name=name, host=host, vif_type="netns", security_groups=groups
    )


def test_new_instances_are_in_default_and_unknown_groups_write_nothing(ctl):
    a = create(ctl, "a", "compute-1")
    assert secgroups.groups_of(ctl.db, a.uuid) == ("default",)
    with pytest.raises(NotFound, match="no security group 'nope'"):
        create(ctl, "b", "compute-1", ["default", "nope"])
    assert [i.display_name for i in ctl.manager.get_host_instances("compute-1")] == ["a"]


def test_rules_travel_with_the_instance_and_members_with_its_setup(ctl):
    secgroups.create_group(ctl.db, "db")
    secgroups.create_group(ctl.db, "web")
    db_id = secgroups.add_rule(ctl.db, "db", (group_rule("tcp", 5432, 5432, 0), "web"))
    web_id = secgroups.group_ids(ctl.db, ["web"])[0]
    w1 = create(ctl, "w1", "compute-2", ["web"])
    d1 = create(ctl, "d1", "compute-1", ["db"])
    assert d1.rules == (f"tcp 5432 5432 @{web_id}",)
    assert ctl.compute.members["compute-1"][web_id] == {w1.address}
    assert db_id in secgroups.group_ids(ctl.db, ["db"])
    # get_host_instances and get_host_members give the agent's resync the same
    [listed] = ctl.manager.get_host_instances("compute-1")
    assert listed.rules == d1.rules
    assert ctl.manager.host_members("compute-1") == {web_id: [w1.address]}
    assert ctl.manager.host_members("compute-2") == {}


def test_a_new_member_reaches_only_hosts_whose_rules_name_its_group(ctl):
    secgroups.create_group(ctl.db, "web")
    secgroups.create_group(ctl.db, "db")
    secgroups.add_rule(ctl.db, "db", (group_rule("tcp", 5432, 5432, 0), "web"))
    web_id = secgroups.group_ids(ctl.db, ["web"])[0]
    create(ctl, "d1", "compute-1", ["db"])
    create(ctl, "other", "compute-3", ["default"])
    ctl.compute.told.clear()
    w2 = create(ctl, "w2", "compute-2", ["web"])
    # compute-1 uses the web set; compute-2 (the member's own host) and 3 do not
    assert ctl.compute.told == ["compute-1"]
    assert ctl.compute.members["compute-1"][web_id] == {w2.address}
    ctl.compute.told.clear()
    ctl.manager.delete_instance(w2.uuid)
    assert ctl.compute.told == ["compute-1"]
    assert ctl.compute.members["compute-1"][web_id] == set()


def test_a_rule_change_reaches_the_hosts_of_the_members(ctl):
    secgroups.create_group(ctl.db, "web")
    a = create(ctl, "a", "compute-1", ["web"])
    b = create(ctl, "b", "compute-2", ["web"])
    create(ctl, "c", "compute-3", ["default"])
    ctl.compute.told.clear()
    gid = secgroups.add_rule(ctl.db, "web", cidr_rule("tcp", 80, 80, "0.0.0.0/0"))
    result = ctl.manager.security_groups_changed(rules_changed=[gid])
    assert result == {"hosts": ["compute-1", "compute-2"], "notes": []}
    assert ctl.compute.plugged[a.uuid].rules == ("tcp 80 80 0.0.0.0/0",)
    assert ctl.compute.plugged[b.uuid].rules == ("tcp 80 80 0.0.0.0/0",)


def test_membership_change_and_a_host_that_does_not_answer(ctl):
    secgroups.create_group(ctl.db, "web")
    secgroups.add_rule(ctl.db, "web", cidr_rule("icmp", -1, -1, "0.0.0.0/0"))
    secgroups.add_rule(ctl.db, "web", (group_rule("tcp", 22, 22, 0), "web"))
    web_id = secgroups.group_ids(ctl.db, ["web"])[0]
    a = create(ctl, "a", "compute-1", ["web"])
    b = create(ctl, "b", "compute-2", ["default"])
    ctl.compute.told.clear()
    ctl.compute.unreachable.add("compute-1")
    secgroups.add_instance(ctl.db, b.uuid, "web")
    result = ctl.manager.security_groups_changed(members_changed=[web_id], instances=[b.uuid])
    assert result["hosts"] == ["compute-2"]
    assert "compute-1 was not told" in result["notes"][0]
    assert ctl.compute.plugged[b.uuid].rules == ("icmp -1 -1 0.0.0.0/0", f"tcp 22 22 @{web_id}")
    assert ctl.compute.members["compute-2"][web_id] == {a.address, b.address}


def test_a_host_that_is_down_is_not_called(ctl):
    import datetime

    from novanet.db.models import SERVICES

    secgroups.create_group(ctl.db, "web")
    create(ctl, "a", "compute-1", ["web"])
    create(ctl, "b", "compute-2", ["web"])
    old = datetime.datetime(2020, 1, 1)
    with ctl.db.transaction() as conn:
        conn.execute(SERVICES.update().where(SERVICES.c.host == "compute-2").values(updated_at=old))
    ctl.compute.told.clear()
    gid = secgroups.add_rule(ctl.db, "web", cidr_rule("udp", 53, 53, "10.0.0.0/24"))
    result = ctl.manager.security_groups_changed(rules_changed=[gid])
    assert result["hosts"] == ["compute-1"] and ctl.compute.told == ["compute-1"]
    assert result["notes"] == ["compute host compute-2 is down: it applies the change when it is back"]
