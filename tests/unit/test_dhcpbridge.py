"""novanet-dhcpbridge: argument checks, the daemon socket, the database fallback."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from novanet.cmd import dhcpbridge
from novanet.db import instances, migration
from novanet.db.api import Database
from novanet.ipam import networks, plan, pool, queries
from novanet.network import leases
from novanet.network.lease_socket import LeaseEventServer


@pytest.fixture
def setup(tmp_path):
    state = tmp_path / "state"
    conf_file = tmp_path / "nova.conf"
    conf_file.write_text(f"--state_path={state}\n--dhcp_lease_time=3600\n")
    db = Database(f"sqlite:///{state}/novanet.sqlite")
    migration.upgrade(db.engine)
    (net,) = networks.create_networks(
        db, plan.plan_networks(label="n", fixed_range_v4="10.0.0.0/24", bridge="br100")
    )
    inst = instances.create_instance(db, display_name="cirros", hostname="cirros", host="c1", vif_type="tap")
    alloc = pool.allocate_for_instance(db, network_id=net.id, instance_uuid=inst.uuid, mac="fa:16:3e:2c:e8:ec")
    env = {
        "NOVANET_NETWORK_ID": str(net.id),
        "NOVANET_CONFIG_FILES": json.dumps([["flag", str(conf_file)]]),
    }
    yield db, net, inst, alloc, env, tmp_path
    db.dispose()


def _row(db, address):
    return next(r for r in queries.list_fixed_ips(db) if r.address == address)


def _run(args, env):
    out = io.StringIO()
    code = dhcpbridge.run(args, env, out)
    return code, out.getvalue()


def test_add_init_del_directly_on_the_database(setup):
    db, net, inst, alloc, env, _ = setup
    assert _run(["add", "fa:16:3e:2c:e8:ec", "10.0.0.2", "cirros"], env) == (0, "")
    assert _row(db, "10.0.0.2").leased
    code, out = _run(["init"], env)
    expiry, mac, ip, host, star = out.split()
    assert (mac, ip, host, star) == ("fa:16:3e:2c:e8:ec", "10.0.0.2", "cirros", "*")
    assert int(expiry) > 1_700_000_000
    pool.deallocate_for_instance(db, inst.uuid)
    assert _run(["del", "fa:16:3e:2c:e8:ec", "10.0.0.2"], env)[0] == 0
    row = _row(db, "10.0.0.2")
    assert not row.leased and row.instance_uuid is None


def test_old_returns_at_once_and_changes_nothing(setup):
    db, *_ , env, _ = setup
    assert _run(["old", "fa:16:3e:2c:e8:ec", "10.0.0.2"], {}) == (0, "")
    assert not _row(db, "10.0.0.2").leased


@pytest.mark.parametrize(
    "args, env_change",
    [
        ([], {}),
        (["frobnicate"], {}),
        (["add"], {}),
        (["add", "not-a-mac", "10.0.0.2"], {}),
        (["add", "fa:16:3e:2c:e8:ec", "10.0.0.300"], {}),
        (["add", "fa:16:3e:2c:e8:ec", "10.0.0.2", "h", "extra"], {}),
        (["init", "x"], {}),
        (["add", "fa:16:3e:2c:e8:ec", "10.0.0.2"], {"NOVANET_NETWORK_ID": "abc"}),
        (["add", "fa:16:3e:2c:e8:ec", "10.0.0.2"], {"NOVANET_NETWORK_ID": ""}),
    ],
)
def test_garbage_exits_2_and_changes_nothing(setup, capsys, args, env_change):
    db, *_ , env, _ = setup
    env = {**env, **env_change}
    code, _ = _run(args, env)
    assert code == 2
    assert capsys.readouterr().err.startswith("novanet-dhcpbridge: error:")
    assert not _row(db, "10.0.0.2").leased


def test_bad_config_environment_fails_cleanly(setup, capsys):
    db, *_ , env, _ = setup
    env = {**env, "NOVANET_CONFIG_FILES": "{nope"}
    assert _run(["add", "fa:16:3e:2c:e8:ec", "10.0.0.2"], env)[0] == 2
    assert not _row(db, "10.0.0.2").leased


def test_unknown_network_fails(setup):
    db, *_ , env, _ = setup
    assert _run(["init"], {**env, "NOVANET_NETWORK_ID": "99"})[0] == 1


def test_add_for_a_foreign_mac_is_not_recorded(setup):
    db, *_ , env, _ = setup
    assert _run(["add", "fa:16:3e:00:00:01", "10.0.0.2"], env)[0] == 0
    assert not _row(db, "10.0.0.2").leased


def test_via_the_daemon_socket(setup):
    db, net, inst, alloc, env, tmp_path = setup
    seen = []

    def callback(event):
        seen.append(event)
        return leases.handle(db, 3600, event)

    server = LeaseEventServer(str(tmp_path / "run" / "dhcpbridge.sock"), callback)
    server.start()
    try:
        env = {"NOVANET_NETWORK_ID": str(net.id), "NOVANET_DHCPBRIDGE_SOCKET": server.path}
        # through the real program, as dnsmasq runs it
        proc = subprocess.run(
            [sys.executable, "-m", "novanet.cmd.dhcpbridge", "add", "FA:16:3E:2C:E8:EC", "10.0.0.2", "cirros"],
            env=env, capture_output=True, text=True, timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        assert _row(db, "10.0.0.2").leased
        assert seen == [{"action": "add", "mac": "fa:16:3e:2c:e8:ec", "address": "10.0.0.2", "network_id": net.id}]
        code, out = _run(["init"], env)
        assert code == 0 and " fa:16:3e:2c:e8:ec 10.0.0.2 cirros *" in out
    finally:
        server.stop()


def test_falls_back_when_the_daemon_socket_is_gone(setup):
    db, *_ , env, tmp_path = setup
    env = {**env, "NOVANET_DHCPBRIDGE_SOCKET": str(tmp_path / "absent.sock")}
    assert _run(["add", "fa:16:3e:2c:e8:ec", "10.0.0.2"], env)[0] == 0
    assert _row(db, "10.0.0.2").leased


def test_socket_rejects_malformed_requests(setup, tmp_path):
    import socket as socketlib

    db, *_ = setup
    server = LeaseEventServer(str(tmp_path / "s.sock"), lambda e: leases.handle(db, 60, e))
    server.start()
    try:
        for payload in (b"not json\n", b"[1,2]\n", b'{"action":"add","network_id":"1"}\n'):
            s = socketlib.socket(socketlib.AF_UNIX)
            s.connect(server.path)
            s.sendall(payload)
            reply = json.loads(s.makefile().readline())
            s.close()
            assert reply["ok"] is False and reply["code"] == 2
    finally:
        server.stop()
    assert not _row(db, "10.0.0.2").leased


def test_the_installed_script_answers_old_without_python(tmp_path):
    """dnsmasq sends one `old` per lease at every SIGHUP: they must cost no Python start-up."""
    import shutil
    from pathlib import Path

    script = Path(sys.executable).parent / "novanet-dhcpbridge"
    assert script.read_text().startswith("#!/bin/sh")
    # a python that would fail loudly if the wrapper started it for `old`
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    shutil.copy(script, fake_bin / "novanet-dhcpbridge")
    (fake_bin / "python3").write_text("#!/bin/sh\necho started python >&2\nexit 99\n")
    (fake_bin / "python3").chmod(0o755)
    for _ in range(50):
        proc = subprocess.run([str(fake_bin / "novanet-dhcpbridge"), "old", "fa:16:3e:00:00:01", "10.0.0.2"],
                              capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stderr == ""  # python3 would have said so
    other = subprocess.run([str(fake_bin / "novanet-dhcpbridge"), "add", "fa:16:3e:00:00:01", "10.0.0.2"],
                           capture_output=True, text=True)
    assert other.returncode == 99 and "started python" in other.stderr


def test_the_installed_script_runs_the_bridge(setup):
    from pathlib import Path

    db, *_ , env, _ = setup
    script = Path(sys.executable).parent / "novanet-dhcpbridge"
    proc = subprocess.run([str(script), "add", "fa:16:3e:2c:e8:ec", "10.0.0.2", "cirros"],
                          env=env, capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert _row(db, "10.0.0.2").leased
    bad = subprocess.run([str(script), "add", "garbage", "10.0.0.2"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
