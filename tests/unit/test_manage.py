"""novanet-manage as an operator uses it: output, exit codes, nothing half-written."""

from __future__ import annotations

import io
import json
import sqlite3

import pytest

from novanet import conf as novanet_conf
from novanet.db import schema
from novanet.manage import cli
from novanet.rpc import transport as rpc


@pytest.fixture
def env(tmp_path):
    flagfile = tmp_path / "nova.conf"
    flagfile.write_text(
        "--public_interface=eth1\n--fixed_range=10.0.0.0/24\n--flat_interface=eth2\n"
        "--flat_network_bridge=br100\n--network_manager=nova.network.manager.FlatDHCPManager\n"
        f"--state_path={tmp_path}/state\n"
    )
    return tmp_path, flagfile


def run(env, *args, capsys=None):
    tmp_path, flagfile = env
    out = io.StringIO()
    conf = novanet_conf.new_conf()
    # No broker in unit tests: the "networks changed" notification goes nowhere.
    rpc.register_opts(conf)
    conf.set_override("transport_url", "fake:///")
    code = cli.main(["--flagfile", str(flagfile), *args], out=out, conf=conf)
    return code, out.getvalue()


def snapshot(env):
    path = env[0] / "state" / "novanet.sqlite"
    con = sqlite3.connect(path)
    try:
        return {
            t: con.execute(f"SELECT * FROM {t} ORDER BY id").fetchall()
            for t in ("networks", "fixed_ips", "virtual_interfaces", "instances")
        }
    finally:
        con.close()


@pytest.fixture
def synced(env):
    assert run(env, "db", "sync")[0] == 0
    return env


def test_done_when_flow(synced, capsys):
    code, out = run(
        synced,
        "network", "create", "--label", "novanetwork", "--fixed_range_v4", "10.0.0.0/24",
        "--bridge", "br100", "--bridge_interface", "eth2",
    )
    assert code == 0 and "10.0.0.0/24" in out
    code, out = run(synced, "network", "list")
    header, row = out.splitlines()
    # nova-manage network list's columns (test_manage_parity.py)
    assert header.split()[:5] == ["id", "IPv4", "IPv6", "start", "address"]
    assert row.split()[1:5] == ["10.0.0.0/24", "-", "10.0.0.2", "8.8.4.4"]
    code, out = run(synced, "fixed", "list", "--format", "json")
    rows = json.loads(out)
    assert len(rows) == 256
    assert [r["address"] for r in rows if r["reserved"]] == ["10.0.0.0", "10.0.0.1", "10.0.0.255"]
    assert set(rows[0]) >= {"address", "network", "reserved", "allocated", "leased", "instance_uuid", "host"}
    assert rows[2] == {
        "network": "10.0.0.0/24", "address": "10.0.0.2", "mac": None, "hostname": None,
        "host": None, "reserved": False, "allocated": False, "leased": False, "instance_uuid": None,
    }


def test_db_version(env):
    code, out = run(env, "db", "version")
    assert code == 0 and out.startswith("empty")
    run(env, "db", "sync")
    assert run(env, "db", "version")[1].strip() == schema.HEAD


def test_commands_refuse_unsynced_database(env, capsys):
    code, _ = run(env, "network", "list")
    err = capsys.readouterr().err
    assert code == 1 and "novanet-manage db sync" in err and err.count("\n") == 1


def test_dashed_spellings_and_fixed_range_default(synced):
    code, out = run(synced, "network", "create", "--label", "n", "--bridge-interface", "eth2")
    assert code == 0 and "10.0.0.0/24" in out  # from --fixed_range in the flagfile


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["network", "create", "--fixed_range_v4", "10.1.0.0/24"], 2, "--label is required"),
        (["network", "create", "--label", "x", "--fixed_range_v4", "10.1.0.0/33"], 2, "not a valid IPv4 CIDR"),
        (["network", "create", "--label", "x", "--fixed_range_v4", "10.0.0.128/25", "--bridge", "br7"], 1, "overlaps"),
        (["network", "create", "--label", "x", "--num_networks", "zero"], 2, "not an integer"),
        (["network", "delete", "--fixed_range", "10.9.0.0/24"], 1, "no network 10.9.0.0/24"),
        (["network", "delete"], 2, "exactly one of"),
        # exit 2 as nova-manage's (nova: manage.py FixedIpCommands._set_reserved)
        (["fixed", "reserve", "--address", "10.9.9.9"], 2, "does not exist"),
        (["fixed", "reserve", "--address", "nonsense"], 2, "not an IPv4 address"),
        (["fixed", "reserve"], 2, "--address is required"),
        (["fixed", "unreserve", "--address", "10.0.0.1"], 1, "stays reserved"),
        (["instance", "show", "nobody"], 1, "no instance"),
        (["network", "frobnicate"], 2, "invalid choice"),
        (["network", "list", "--format", "xml"], 2, "invalid choice"),
    ],
)
def test_bad_input_one_line_exit_code_nothing_written(synced, capsys, args, code, message):
    run(synced, "network", "create", "--label", "n", "--fixed_range_v4", "10.0.0.0/24")
    capsys.readouterr()
    before = snapshot(synced)
    got, out = run(synced, *args)
    assert got == code
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("novanet-manage: error:")
    assert snapshot(synced) == before


def test_bad_config_exits_2_naming_file_and_line(env, capsys):
    tmp_path, flagfile = env
    flagfile.write_text(flagfile.read_text() + "--dhcp_lease_time=soon\n")
    code, _ = run(env, "network", "list")
    err = capsys.readouterr().err
    assert code == 2
    assert f"{flagfile}:7" in err and "dhcp_lease_time" in err and "'soon'" in err
    assert err.count("\n") == 1


def test_delete_refused_while_addresses_in_use(synced, capsys):
    from novanet.db import instances
    from novanet.db.api import Database
    from novanet.ipam import pool

    run(synced, "network", "create", "--label", "n", "--fixed_range_v4", "10.0.0.0/24")
    db = Database(f"sqlite:///{synced[0]}/state/novanet.sqlite")
    inst = instances.create_instance(db, display_name="vm", hostname="vm", host="c1", vif_type="tap")
    pool.allocate_for_instance(db, network_id=1, instance_uuid=inst.uuid)
    before = snapshot(synced)
    code, _ = run(synced, "network", "delete", "--fixed_range", "10.0.0.0/24")
    assert code == 1 and "in use" in capsys.readouterr().err
    assert snapshot(synced) == before
    code, out = run(synced, "instance", "list", "--format", "json")
    (row,) = json.loads(out)
    assert row["name"] == "instance-%08x" % inst.id and row["address"] == "10.0.0.2"
    code, out = run(synced, "instance", "show", "vm")
    assert code == 0 and "10.0.0.2" in out
    code, out = run(synced, "fixed", "list", "--host", "c1", "--format", "json")
    assert [r["address"] for r in json.loads(out)] == ["10.0.0.2"]


def test_modify_and_delete(synced):
    run(synced, "network", "create", "--label", "n", "--fixed_range_v4", "10.0.0.0/24")
    code, out = run(synced, "network", "modify", "--fixed_range", "10.0.0.0/24", "--dns1", "10.0.0.53", "--format", "json")
    assert code == 0 and json.loads(out)[0]["dns1"] == "10.0.0.53"
    assert run(synced, "network", "delete", "--fixed-range", "10.0.0.0/24")[0] == 0
    assert json.loads(run(synced, "network", "list", "--format", "json")[1]) == []


def test_reserve_unreserve(synced):
    run(synced, "network", "create", "--label", "n", "--fixed_range_v4", "10.0.0.0/24")
    assert run(synced, "fixed", "reserve", "--address", "10.0.0.2")[0] == 0
    rows = json.loads(run(synced, "fixed", "list", "--format", "json")[1])
    assert rows[2]["reserved"] is True
    assert run(synced, "fixed", "unreserve", "--address", "10.0.0.2")[0] == 0


def test_service_list_up_and_down(synced):
    import datetime

    from novanet.db import services
    from novanet.db.api import Database
    from novanet.db.models import Service

    db = Database(f"sqlite:///{synced[0]}/state/novanet.sqlite")
    services.heartbeat(db, "controller-1", "novanet-network", "network")
    services.heartbeat(db, "compute-1", "novanet-compute", "compute")
    with db.transaction() as conn:
        conn.execute(
            Service.__table__.update()
            .where(Service.__table__.c.host == "compute-1")
            .values(updated_at=datetime.datetime(2020, 1, 1))
        )
    rows = json.loads(run(synced, "service", "list", "--format", "json")[1])
    states = {(r["host"], r["binary"]): r["state"] for r in rows}
    assert states == {("compute-1", "novanet-compute"): "down", ("controller-1", "novanet-network"): "up"}
    assert {"host", "binary", "topic", "state", "updated_at", "status"} <= set(rows[0])


def test_service_disable_and_enable(synced):
    from novanet.db import services
    from novanet.db.api import Database

    db = Database(f"sqlite:///{synced[0]}/state/novanet.sqlite")
    services.heartbeat(db, "compute-1", "novanet-compute", "compute")

    def status():
        rows = json.loads(run(synced, "service", "list", "--format", "json")[1])
        return {(r["host"], r["binary"]): r["status"] for r in rows}

    assert status() == {("compute-1", "novanet-compute"): "enabled"}
    assert run(synced, "service", "disable", "compute-1", "novanet-compute") == (
        0, "novanet-compute on compute-1: disabled\n"
    )
    assert status() == {("compute-1", "novanet-compute"): "disabled"}
    assert "disabled" in run(synced, "service", "list")[1].splitlines()[1].split()
    assert run(synced, "service", "enable", "compute-1", "novanet-compute")[0] == 0
    assert status() == {("compute-1", "novanet-compute"): "enabled"}
    db.dispose()


def test_service_disable_unknown_is_one_line_and_changes_nothing(synced, capsys):
    capsys.readouterr()
    assert run(synced, "service", "disable", "compute-9", "novanet-compute") == (1, "")
    assert capsys.readouterr().err == (
        "novanet-manage: error: no service novanet-compute on host compute-9 has reported in "
        "(see 'novanet-manage service list')\n"
    )
    assert run(synced, "service", "disable", "compute-9")[0] == 2


def test_the_entry_point_keeps_eventlets_green_dns_out():
    """oslo.messaging imports eventlet, whose green resolver imported dnspython:
    0.28 s of each novanet-manage run. The entry point turns it off first."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import novanet.manage.cli as cli\n"
        "def probe():\n"
        "    import oslo_messaging  # noqa: F401\n"
        "    print('eventlet' in sys.modules, 'dns' in sys.modules)\n"
        "    return 0\n"
        "cli.main = probe\n"
        "from novanet.cmd import manage\n"
        "manage.main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "EVENTLET_NO_GREENDNS"}
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False"]


def test_a_bounded_rpc_call_carries_the_commands_request_id():
    """The call runs in a worker thread: the request id must travel into it."""
    from novanet.manage.rpcclient import bounded
    from novanet.rpc import context

    with context.bound() as request_id:
        sent = bounded(context.rpc_context, 5, TimeoutError)
    assert sent == {"request_id": request_id}
