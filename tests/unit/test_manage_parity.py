"""novanet-manage verb by verb against nova-manage (nova/cmd/manage.py, newton).

nova-manage passed the words left after the flags to the command's method
in order (nova/cmd/common.py get_action_fn), so ``fixed list compute-1``
and ``network modify 10.0.0.0/24 --host h`` worked: novanet takes both
spellings.
"""

from __future__ import annotations

import json

import pytest

from tests.unit.test_manage import run, snapshot


@pytest.fixture
def synced(env):
    assert run(env, "db", "sync")[0] == 0
    return env


@pytest.fixture
def env(tmp_path):
    flagfile = tmp_path / "nova.conf"
    flagfile.write_text(
        "--fixed_range=10.0.0.0/24\n--flat_interface=eth2\n--flat_network_bridge=br100\n"
        f"--state_path={tmp_path}/state\n"
    )
    return tmp_path, flagfile


def _create(env, *extra):
    code, out = run(env, "network", "create", "--label", "net", *extra)
    assert code == 0, out
    return out


def test_network_list_has_nova_manage_s_columns(synced):
    # nova: NetworkCommands.list: id, IPv4, IPv6, start address, DNS1, DNS2, VlanID, project, uuid
    _create(synced, "--fixed_range_v4", "10.0.0.0/24", "--project_id", "demo")
    code, out = run(synced, "network", "list")
    header, row = out.splitlines()
    assert [c.strip() for c in header.split("  ") if c.strip()] == [
        "id", "IPv4", "IPv6", "start address", "DNS1", "DNS2", "VlanID", "project", "uuid",
    ]
    assert row.split()[:8] == ["1", "10.0.0.0/24", "-", "10.0.0.2", "8.8.4.4", "-", "-", "demo"]
    (net,) = json.loads(run(synced, "network", "list", "--format", "json")[1])
    assert {k: net[k] for k in ("id", "ipv4", "ipv6", "start_address", "project", "vlanid")} == {
        "id": 1, "ipv4": "10.0.0.0/24", "ipv6": None, "start_address": "10.0.0.2",
        "project": "demo", "vlanid": None,
    }
    assert (net["label"], net["bridge"], net["gateway"]) == ("net", "br100", "10.0.0.1")


def test_create_with_nova_s_flags(synced):
    uuid = "6b1f3a94-9f57-4d9e-8a56-2d3c4b1e0f11"
    _create(
        synced, "--fixed_range_v4", "10.0.0.0/23", "--num_networks", "2", "--project_id", "p",
        "--priority", "3",
    )
    _create(
        synced, "--fixed_range_v4", "10.1.0.0/24", "--uuid", uuid, "--allowed_start", "10.1.0.100",
        "--allowed_end", "10.1.0.150",
    )
    nets = json.loads(run(synced, "network", "list", "--format", "json")[1])
    assert [(n["ipv4"], n["bridge"], n["project"], n["priority"]) for n in nets] == [
        ("10.0.0.0/24", "br100", "p", 3),
        ("10.0.1.0/24", "br100", "p", 3),  # nova: one bridge for all N networks
        ("10.1.0.0/24", "br100", None, None),
    ]
    assert nets[2]["uuid"] == uuid and nets[2]["gateway"] == "10.1.0.100"


@pytest.mark.parametrize("flag", ["--vlan", "--vlan_start", "--vpn", "--fixed_range_v6", "--gateway_v6"])
def test_other_managers_flags_are_refused_by_name(synced, capsys, flag):
    before = snapshot(synced)
    code, _ = run(synced, "network", "create", "--label", "x", "--fixed_range_v4", "10.5.0.0/24", flag, "1")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"{flag} is not supported" in err
    assert snapshot(synced) == before


def test_modify_with_nova_s_flags_and_positional_range(synced, capsys):
    _create(synced, "--fixed_range_v4", "10.0.0.0/24")

    def net():
        return json.loads(run(synced, "network", "list", "--format", "json")[1])[0]

    assert run(synced, "network", "modify", "10.0.0.0/24", "--project", "demo", "--host", "ctl")[0] == 0
    assert (net()["project"], net()["host"]) == ("demo", "ctl")
    # nova-manage: "ERROR: Unexpected arguments provided. Please use separate commands."
    before = snapshot(synced)
    code, _ = run(synced, "network", "modify", "--fixed_range", "10.0.0.0/24", "--disassociate-project", "--host", "x")
    assert code == 2 and "separate commands" in capsys.readouterr().err
    assert snapshot(synced) == before
    assert run(synced, "network", "modify", "10.0.0.0/24", "--disassociate-project")[0] == 0
    assert (net()["project"], net()["host"]) == (None, "ctl")
    assert run(synced, "network", "modify", "10.0.0.0/24", "--disassociate-host")[0] == 0
    assert net()["host"] is None
    code, _ = run(synced, "network", "modify", "10.0.0.0/24", "--fixed_range", "10.9.0.0/24", "--host", "x")
    assert code == 2 and "disagree" in capsys.readouterr().err


def test_delete_refuses_a_project_s_network_and_takes_the_range_positionally(synced, capsys):
    _create(synced, "--fixed_range_v4", "10.0.0.0/24", "--project_id", "demo")
    before = snapshot(synced)
    assert run(synced, "network", "delete", "10.0.0.0/24")[0] == 1
    assert "disassociated from project demo" in capsys.readouterr().err
    assert snapshot(synced) == before
    assert run(synced, "network", "modify", "10.0.0.0/24", "--disassociate-project")[0] == 0
    assert run(synced, "network", "delete", "10.0.0.0/24")[0] == 0


def test_fixed_list_host_positional_and_reserve_exit_codes(synced, capsys):
    _create(synced, "--fixed_range_v4", "10.0.0.0/24")
    # nova: FixedIpCommands.list(self, host=None): `fixed list HOST`
    assert json.loads(run(synced, "fixed", "list", "compute-9", "--format", "json")[1]) == []
    assert run(synced, "fixed", "list", "--host", "compute-9")[0] == 0
    # nova: _set_reserved printed "error: ..." and returned 2 for an unknown address
    code, _ = run(synced, "fixed", "reserve", "10.9.9.9")
    assert code == 2 and capsys.readouterr().err.count("\n") == 1
    assert run(synced, "fixed", "reserve", "10.0.0.9")[0] == 0
    rows = json.loads(run(synced, "fixed", "list", "--format", "json")[1])
    assert next(r for r in rows if r["address"] == "10.0.0.9")["reserved"] is True
    assert run(synced, "fixed", "unreserve", "--address", "10.0.0.9")[0] == 0
