"""novanet-manage secgroup: novaclient's verbs, JSON rows, one-line refusals that write nothing."""

from __future__ import annotations

import json
import sqlite3

import pytest

from novanet.db import instances
from novanet.db.api import Database
from novanet.manage import secgroup as secgroup_cmd
from tests.unit.test_manage import env, run, synced  # noqa: F401 - shared fixtures


@pytest.fixture(autouse=True)
def _quick_tell(monkeypatch):
    # No novanet-network in unit tests: the "tell the hosts" call times out fast.
    monkeypatch.setattr(secgroup_cmd, "TELL_TIMEOUT", 0.2)


def rows(env):  # noqa: F811
    con = sqlite3.connect(env[0] / "state" / "novanet.sqlite")
    try:
        return [
            con.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
            for t in ("security_groups", "security_group_rules", "security_group_instance_association")
        ]
    finally:
        con.close()


def test_groups_and_rules_as_novaclient_typed_them(synced):  # noqa: F811
    assert run(synced, "secgroup", "create", "web", "--description", "web servers")[0] == 0
    code, out = run(synced, "secgroup", "add-rule", "web", "tcp", "22", "22", "0.0.0.0/0")
    assert code == 0 and "rule added to security group web" in out
    # novanet-network does not answer here: the change stays, the hosts resync
    assert "note: novanet-network was not reached" in out
    assert run(synced, "secgroup", "add-rule", "web", "icmp", "-1", "-1", "10.0.0.0/24")[0] == 0
    assert run(synced, "secgroup", "add-rule", "web", "udp", "1000", "2000", "10.0.0.0/24")[0] == 0
    assert run(synced, "secgroup", "add-group-rule", "default", "web", "tcp", "5432", "5432")[0] == 0
    code, out = run(synced, "secgroup", "list", "--format", "json")
    listed = {g["name"]: g for g in json.loads(out)}
    assert set(listed) == {"default", "web"} and set(listed["web"]) == {"name", "description", "rules"}
    assert listed["web"]["description"] == "web servers"
    assert listed["default"]["rules"] == [
        {"ip_protocol": "tcp", "from_port": 5432, "to_port": 5432, "ip_range": None, "source_group": "web"}
    ]
    assert [r["ip_protocol"] for r in listed["web"]["rules"]] == ["icmp", "tcp", "udp"]
    code, out = run(synced, "secgroup", "list")
    assert out.splitlines()[0].split() == ["name", "description", "rules"]
    code, out = run(synced, "secgroup", "show", "web")
    assert code == 0 and "ipset" in out and "nova-compute-group-" in out
    assert "icmp         -1         -1" in out.replace("  ", "  ")
    code, out = run(synced, "secgroup", "show", "web", "--format", "json")
    [shown] = json.loads(out)
    assert shown["name"] == "web" and len(shown["rules"]) == 3 and shown["instances"] == []
    assert run(synced, "secgroup", "delete-rule", "web", "icmp", "-1", "-1", "10.0.0.0/24")[0] == 0
    assert run(synced, "secgroup", "delete-group-rule", "default", "web", "tcp", "5432", "5432")[0] == 0
    assert run(synced, "secgroup", "delete", "web")[0] == 0
    assert [r[1] for r in rows(synced)[0]] == ["default"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("add-rule", "web", "sctp", "1", "2", "0.0.0.0/0"), 2, "not one of tcp, udp, icmp"),
        (("add-rule", "web", "tcp", "0", "65536", "0.0.0.0/0"), 2, "out of range"),
        (("add-rule", "web", "tcp", "-1", "22", "0.0.0.0/0"), 2, "out of range"),
        (("add-rule", "web", "tcp", "80", "22", "0.0.0.0/0"), 2, "greater than"),
        (("add-rule", "web", "icmp", "300", "-1", "0.0.0.0/0"), 2, "icmp type 300 is out of range"),
        (("add-rule", "web", "icmp", "8", "256", "0.0.0.0/0"), 2, "icmp code 256"),
        (("add-rule", "web", "tcp", "22", "22", "10.0.0.1/24"), 2, "not an IPv4 CIDR"),
        (("add-rule", "web", "tcp", "22", "22", "banana"), 2, "not an IPv4 CIDR"),
        (("add-rule", "nope", "tcp", "22", "22", "0.0.0.0/0"), 1, "no security group 'nope'"),
        (("add-rule", "web", "tcp", "22", "22", "0.0.0.0/0"), 1, "already has this rule"),
        (("add-group-rule", "web", "nope", "tcp", "1", "1"), 1, "no security group 'nope'"),
        (("delete-rule", "web", "tcp", "23", "23", "0.0.0.0/0"), 1, "no such rule"),
        (("delete", "default"), 1, "'default' cannot be deleted"),
        (("delete", "web"), 1, "is used by instance(s) vm"),
        (("delete", "src"), 1, "is the source of rules of group(s) web"),
        (("create", "web"), 1, "already exists"),
        (("show", "nope"), 1, "no security group 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(synced, capsys, args, code, message):  # noqa: F811
    for setup in (("create", "web"), ("create", "src"), ("add-rule", "web", "tcp", "22", "22", "0.0.0.0/0"),
                  ("add-group-rule", "web", "src", "tcp", "1", "1")):
        assert run(synced, "secgroup", *setup)[0] == 0
    db = Database(f"sqlite:///{synced[0]}/state/novanet.sqlite")
    vm = instances.create_instance(db, display_name="vm", hostname="vm", host="c1", vif_type="tap")
    db.dispose()
    assert run(synced, "instance", "add-secgroup", "vm", "web")[0] == 0
    capsys.readouterr()
    before = rows(synced)
    got, out = run(synced, "secgroup", *args)
    err = capsys.readouterr().err
    assert got == code and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert rows(synced) == before and vm.uuid


def test_instance_membership_verbs(synced, capsys):  # noqa: F811
    assert run(synced, "secgroup", "create", "web")[0] == 0
    db = Database(f"sqlite:///{synced[0]}/state/novanet.sqlite")
    vm = instances.create_instance(db, display_name="vm", hostname="vm", host="c1", vif_type="tap")
    db.dispose()
    code, out = run(synced, "instance", "add-secgroup", "vm", "web")
    assert code == 0 and f"instance instance-{vm.id:08x} (vm) added to security group web" in out
    code, out = run(synced, "instance", "show", str(vm.id), "--format", "json")
    assert json.loads(out)[0]["security_groups"] == ["web"]
    code, out = run(synced, "instance", "show", str(vm.id))
    assert any(line.split() == ["security_groups", "web"] for line in out.splitlines())
    capsys.readouterr()
    code, _ = run(synced, "instance", "add-secgroup", "vm", "web")
    assert code == 1 and "already in security group 'web'" in capsys.readouterr().err
    code, _ = run(synced, "instance", "add-secgroup", "nobody", "web")
    assert code == 1 and "no instance 'nobody'" in capsys.readouterr().err
    assert run(synced, "instance", "remove-secgroup", "vm", "web")[0] == 0
    code, _ = run(synced, "instance", "remove-secgroup", "vm", "web")
    assert code == 1 and "not in security group 'web'" in capsys.readouterr().err
