"""novanet-manage diagnose's glue: database -> intended state, facts -> lines, exit codes."""

from __future__ import annotations

import json
import sysconfig

import pytest

from novanet.db import services
from novanet.db.api import Database
from novanet.explain import diagnose as d
from novanet.manage import diagnose as diagnose_cmd
from tests.unit.explain.test_diagnose import node
from tests.unit.test_manage import run


@pytest.fixture
def cloud(tmp_path, monkeypatch):
    flagfile = tmp_path / "nova.conf"
    flagfile.write_text(
        "--flat_interface=eth2\n--flat_network_bridge=br100\n"
        f"--state_path={tmp_path}/state\n--host=controller-1\n"
    )
    env = (tmp_path, flagfile)
    assert run(env, "db", "sync")[0] == 0
    assert run(
        env, "network", "create", "--label", "novanetwork", "--fixed_range_v4", "10.0.0.0/24",
        "--bridge", "br100", "--bridge_interface", "eth2",
    )[0] == 0  # fmt: skip
    db = Database(f"sqlite:///{env[0]}/state/novanet.sqlite")
    for host, binary in (("controller-1", d.NETWORK), ("compute-1", d.COMPUTE)):
        services.heartbeat(db, host, binary, "x")
    db.dispose()
    state = {"facts": {}, "unreachable": {}, "asked": []}

    def gather(conf, wanted, timeout):
        state["asked"] = sorted(wanted)
        argv = [a.replace(f"{env[0]}/state", conf.state_path) for a in state["argv"]]
        facts = {k: v for k, v in state["facts"].items() if k not in state["unreachable"]}
        for f in facts.values():
            if f["dnsmasq"]:
                f["dnsmasq"]["argv"] = argv
                f["hostsfile"] = []
        return facts, dict(state["unreachable"])

    monkeypatch.setattr(diagnose_cmd, "gather", gather)
    facts = {"controller-1/" + d.NETWORK: node(d.NETWORK), "compute-1/" + d.COMPUTE: node(d.COMPUTE)}
    for f in facts.values():
        f.pop("time")  # no clock: no skew
        f["leases"] = None
    state["facts"] = facts
    state["argv"] = expected_argv(env)
    return env, state


def expected_argv(where):
    """The seed's dnsmasq command line (CONTRACT section 4) with this run's paths."""
    networks = f"{where[0]}/state/networks"
    return [
        "/usr/sbin/dnsmasq", "--strict-order", "--bind-interfaces", "--conf-file=",
        "--domain=novalocal", f"--pid-file={networks}/nova-br100.pid",
        "--listen-address=10.0.0.1", "--except-interface=lo",
        "--dhcp-range=10.0.0.2,static,86400s", "--dhcp-lease-max=256",
        f"--dhcp-hostsfile={networks}/nova-br100.conf",
        f"--dhcp-script={sysconfig.get_path('scripts')}/novanet-dhcpbridge", "--leasefile-ro",
        "--no-hosts", "--dhcp-authoritative",
    ]  # fmt: skip


def test_healthy_is_silent_and_exits_0(cloud):
    where, state = cloud
    code, out = run(where, "diagnose")
    assert (code, out) == (0, "")
    assert state["asked"] == [("compute-1", d.COMPUTE), ("controller-1", d.NETWORK)]
    code, out = run(where, "diagnose", "--format", "json")
    assert code == 0 and json.loads(out) == {"healthy": True, "problems": [], "checked": 4}


def test_an_unanswering_agent_and_a_broken_node_are_lines_and_exit_1(cloud):
    where, state = cloud
    state["unreachable"]["compute-1/" + d.COMPUTE] = "no answer within 11 s"
    state["facts"]["controller-1/" + d.NETWORK]["sysctl"][d.IP_FORWARD] = "0"
    code, out = run(where, "diagnose")
    assert code == 1
    assert out.splitlines() == [
        "compute-1: novanet-compute: did not answer: no answer within 11 s; "
        "check that novanet-compute runs on compute-1 and reaches RabbitMQ",
        "controller-1: net.ipv4.ip_forward: is 0 (the controller routes); "
        "novanet repairs this by itself within 10 s",
    ]
    code, out = run(where, "diagnose", "--host", "compute-1", "--format", "json")
    report = json.loads(out)
    assert code == 1 and [p["host"] for p in report["problems"]] == ["compute-1"]


def test_an_unknown_host_is_one_line_and_exit_1(cloud, capsys):
    where, _ = cloud
    code, out = run(where, "diagnose", "--host", "compute-9")
    assert (code, out) == (1, "")
    assert "no service on host 'compute-9' has reported in" in capsys.readouterr().err


def test_an_unreachable_broker_is_a_problem_line():
    from novanet import conf as novanet_conf
    from novanet.rpc import transport as rpc

    conf = novanet_conf.new_conf()
    conf([])
    rpc.register_opts(conf)
    conf.set_override("host", "controller-1")
    conf.set_override("transport_url", "rabbit://guest:guest@127.0.0.1:1/")  # nothing listens
    conf.set_override("rpc_connect_timeout", 1)
    problem = diagnose_cmd._broker_problem(conf)
    assert problem is not None and (problem.host, problem.object) == ("controller-1", "RabbitMQ")
    assert problem.problem.startswith("unreachable: ") and "127.0.0.1:1" in problem.problem
    conf.set_override("transport_url", "fake:///")  # no broker to ask: nothing to say
    assert diagnose_cmd._broker_problem(conf) is None


@pytest.mark.parametrize("option", [("--timeout", "0"), ("--timeout", "x"), ("--max-skew", "-1")])
def test_bad_numbers_are_usage_errors(cloud, capsys, option):
    where, state = cloud
    code, out = run(where, "diagnose", *option)
    assert (code, out, state["asked"]) == (2, "", [])
    assert "is not a number of seconds" in capsys.readouterr().err
