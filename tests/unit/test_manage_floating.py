"""novanet-manage floating: pools, JSON rows, one-line refusals that write nothing."""

from __future__ import annotations

import json
import sqlite3

import pytest

from novanet.db import floating, instances
from novanet.db.api import Database
from novanet.manage import floating as floating_cmd
from tests.unit.test_manage import env, run, synced  # noqa: F401 - shared fixtures


@pytest.fixture(autouse=True)
def _quick_calls(monkeypatch):
    # No novanet-network in unit tests: a call that reaches the daemon fails fast.
    monkeypatch.setattr(floating_cmd, "CALL_TIMEOUT", 0.2)


def rows(env):  # noqa: F811
    con = sqlite3.connect(env[0] / "state" / "novanet.sqlite")
    try:
        return con.execute("SELECT address, pool, interface, fixed_ip_id FROM floating_ips").fetchall()
    finally:
        con.close()


@pytest.fixture
def cloud(synced):  # noqa: F811
    code, _ = run(
        synced, "network", "create", "--label", "net", "--fixed_range_v4", "10.0.0.0/24",
        "--bridge", "br100",
    )
    assert code == 0
    return synced


def test_create_list_delete_as_nova_manage(cloud, capsys):
    code, out = run(cloud, "floating", "create", "--ip_range", "192.168.56.224/28")
    assert code == 0 and "created 14 floating IP(s) in pool nova on eth1" in out
    code, out = run(cloud, "floating", "create", "192.168.56.240/30", "--pool", "web",
                    "--interface", "eth3")
    assert code == 0 and "created 2" in out
    assert run(cloud, "floating", "create", "--ip-range", "192.168.57.1")[0] == 0  # one address
    code, out = run(cloud, "floating", "list", "--format", "json")
    listed = json.loads(out)
    assert len(listed) == 17
    assert listed[0] == {
        "address": "192.168.56.225", "pool": "nova", "interface": "eth1", "fixed_address": None,
        "instance_uuid": None, "host": None,
    }
    assert [r["address"] for r in listed if r["pool"] == "web"] == ["192.168.56.241", "192.168.56.242"]
    code, out = run(cloud, "floating", "list", "--pool", "web")
    assert out.splitlines()[0].split() == [
        "address", "pool", "interface", "fixed_address", "instance_uuid", "host"
    ]
    assert len(out.splitlines()) == 3
    code, out = run(cloud, "floating", "delete", "--ip_range", "192.168.56.240/30")
    assert code == 0 and "deleted 2" in out and len(rows(cloud)) == 15


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--ip_range", "192.168.56.0/33"], 2, "not an IPv4 address or CIDR"),
        (["--ip_range", "192.168.56.1/28"], 2, "host bits set"),
        (["--ip_range", "192.168.56.0/31"], 2, "as single addresses"),
        (["--ip_range", "10.0.0.0/8"], 2, "more than 65536"),
        (["--ip_range", "10.0.0.128/25"], 1, "overlaps fixed network 10.0.0.0/24"),
        (["--ip_range", "192.168.56.192/26"], 1, "overlaps existing floating IPs (14, first 192.168.56.225"),
        (["--ip_range", "192.168.100.0/24"], 1, "holds my_ip 192.168.100.20"),
        (["--ip_range", "172.16.0.0/28", "--interface", "a b"], 2, "invalid interface name"),
        (["--ip_range", "172.16.0.0/28", "--pool", "x y"], 2, "letters, digits"),
        ([], 2, "--ip_range is required"),
    ],
)
def test_bad_ranges_are_one_line_and_write_nothing(cloud, capsys, args, code, message):
    assert run(cloud, "floating", "create", "--ip_range", "192.168.56.224/28")[0] == 0
    before = rows(cloud)
    with open(cloud[1], "a") as handle:
        handle.write("--my_ip=192.168.100.20\n")
    assert run(cloud, "floating", "create", *args)[0] == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert rows(cloud) == before


def test_association_refusals_before_the_daemon_is_asked(cloud, capsys):
    assert run(cloud, "floating", "create", "--ip_range", "192.168.56.224/28")[0] == 0
    db = Database(f"sqlite:///{cloud[0]}/state/novanet.sqlite")
    inst = instances.create_instance(db, display_name="vm", hostname="vm", host="c1", vif_type="tap")
    for args, code, message in [
        (["associate", "192.168.56.300", "vm"], 2, "is not an IPv4 address"),
        (["associate", "192.168.56.225", "nosuch"], 1, "no instance 'nosuch'"),
        (["associate", "192.168.56.100", "vm"], 1, "192.168.56.100 is in no pool"),
        (["disassociate", "192.168.56.100"], 1, "is in no pool"),
        # known address and instance: the daemon is asked, and is not there
        (["associate", "192.168.56.225", str(inst.id)], 1, "novanet-network"),
    ]:
        assert run(cloud, "floating", *args)[0] == code, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert all(row[3] is None for row in rows(cloud))
    db.dispose()


def test_delete_is_refused_while_an_address_is_associated(cloud, capsys):
    assert run(cloud, "floating", "create", "--ip_range", "192.168.56.224/28")[0] == 0
    db = Database(f"sqlite:///{cloud[0]}/state/novanet.sqlite")
    from novanet.ipam import pool

    inst = instances.create_instance(db, display_name="vm", hostname="vm", host="c1", vif_type="tap")
    pool.allocate_for_instance(db, network_id=1, instance_uuid=inst.uuid)
    floating.associate(db, "192.168.56.230", inst.uuid, "controller")
    assert run(cloud, "floating", "delete", "--ip_range", "192.168.56.224/28")[0] == 1
    assert "192.168.56.230 of 192.168.56.224/28 is associated" in capsys.readouterr().err
    assert len(rows(cloud)) == 14
    code, out = run(cloud, "instance", "show", "vm", "--format", "json")
    assert json.loads(out)[0]["floating_ips"] == ["192.168.56.230"]
    db.dispose()


def test_instance_create_checks_the_floating_address_first(cloud, capsys):
    code = run(cloud, "instance", "create", "--name", "x", "--host", "c1", "--floating-ip", "nope")[0]
    assert code == 2 and "--floating-ip 'nope' is not an IPv4 address" in capsys.readouterr().err
