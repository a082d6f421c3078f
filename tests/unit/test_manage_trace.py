"""novanet-manage trace: output, exit codes, one-line refusals (facts from a captured lab)."""

from __future__ import annotations

import json

import pytest

from novanet.manage import trace as trace_cmd
from tests.unit.explain.test_trace import db_of, load
from tests.unit.test_manage import env, run, synced  # noqa: F401 - shared fixtures

GATEWAY = "192.168.56.101"


@pytest.fixture
def lab(monkeypatch):
    data = load()
    asked: list[list[str]] = []

    def gather(conf, wanted, timeout=trace_cmd.FACTS_TIMEOUT):
        asked.append(wanted)
        return data["facts"]

    monkeypatch.setattr(trace_cmd, "gather_facts", gather)
    monkeypatch.setattr(trace_cmd, "db_view", lambda ctx: db_of(data))
    return data, asked


def test_delivered_prints_every_hop_and_exits_0(synced, lab):  # noqa: F811
    code, out = run(synced, "trace", "ssh1", GATEWAY, "--proto", "tcp", "--port", "22")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"trace instance ssh1 (10.0.0.3) -> outside {GATEWAY}"
    assert "SNAT 10.0.0.3 -> 192.168.56.200" in out
    assert "  => request delivered" in lines and "  => reply delivered" in lines
    assert lines.index("reply:") > lines.index("  => request delivered")


def test_dropped_exits_1_with_the_rule(synced, lab):  # noqa: F811
    code, out = run(synced, "trace", "compute-1", "10.0.0.3")
    assert code == 1
    assert out.splitlines()[-1].startswith(
        "  => request dropped: dropped at compute-1 filter nova-compute-sg-fallback rule 1 "
        "`-A nova-compute-sg-fallback -j DROP` (OUTPUT -> "
    )
    assert "reply:" not in out


def test_json_is_one_object(synced, lab):  # noqa: F811
    code, out = run(synced, "trace", GATEWAY, "192.168.56.230", "--proto", "tcp", "--port", "23",
                    "--format", "json")  # fmt: skip
    assert code == 1
    data = json.loads(out)
    assert set(data) >= {"verdict", "hops", "reason", "reply"}
    assert data["verdict"] == "dropped" and data["reply"] is None
    assert data["hops"][-1]["chain"] == "nova-compute-sg-fallback"
    code, out = run(synced, "--format", "json", "trace", "controller-1", "web1")
    data = json.loads(out)
    assert code == 0 and data["verdict"] == "delivered"
    assert data["reply"]["verdict"] == "delivered" and data["reply"]["hops"]


def test_unknown_exits_3(synced, lab):  # noqa: F811
    data, _ = lab
    filt = data["facts"]["compute-2"]["iptables"]["filter"]
    data["facts"]["compute-2"]["iptables"]["filter"] = filt.replace(
        "-A FORWARD -j nova-filter-top", "-A FORWARD -m hashlimit --hashlimit-name x -j DROP\n"
        "-A FORWARD -j nova-filter-top", 1,
    )  # fmt: skip
    code, out = run(synced, "trace", "web1", "web2")
    assert code == 3
    assert "=> request unknown: unknown at compute-2 filter FORWARD" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere", "web1"], "unknown source 'nowhere'"),
        (["web1", "web2", "--proto", "tcp"], "tcp needs --port"),
        (["web1", "web2", "--proto", "tcp", "--port", "x"], "--port 'x' is not a number"),
        (["web1", "web2", "--proto", "tcp", "--port", "0"], "port 0 is out of range"),
        (["web1", "web2", "--port", "22"], "--port is for tcp and udp"),
        (["web1", "web2", "--proto", "gre"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(synced, lab, capsys, args, message):  # noqa: F811
    code, out = run(synced, "trace", *args)
    err = capsys.readouterr().err
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and message in err


def test_bad_port_asks_no_node(synced, lab):  # noqa: F811
    _, asked = lab
    assert run(synced, "trace", "web1", "web2", "--proto", "udp")[0] == 2
    assert asked == []


def test_the_database_view(synced):  # noqa: F811
    assert run(synced, "network", "create", "--label", "net", "--fixed_range_v4", "10.0.0.0/24",
               "--bridge", "br100")[0] == 0  # fmt: skip
    from novanet.manage.context import Context
    from tests.unit.test_manage import novanet_conf

    conf = novanet_conf.new_conf()
    from novanet.conf import loader

    loader.load(conf, [loader.Source("flag", str(synced[1]))], prog="test")
    ctx = Context(conf, None)
    try:
        view = trace_cmd.db_view(ctx)
    finally:
        ctx.close()
    assert [(n.cidr, n.bridge, n.gateway) for n in view.networks] == [
        ("10.0.0.0/24", "br100", "10.0.0.1")
    ]
    assert view.instances == () and view.floating == ()


def test_a_node_that_did_not_answer_makes_its_part_unknown(synced, lab, monkeypatch):  # noqa: F811
    data, _ = lab
    del data["facts"]["compute-2"]
    code, out = run(synced, "trace", "web1", "web2")
    assert code == 3
    assert out.splitlines()[-1] == (
        "  => request unknown: unknown: no facts from compute-2, the host of instance web2 "
        "(its agent did not answer)"
    )
    daemons = [("compute-1", "novanet-compute"), ("compute-2", "novanet-compute")]
    monkeypatch.setattr(trace_cmd, "_daemons", lambda ctx: (daemons, {"compute-1", "compute-2"}))
    code, out = run(synced, "trace", "compute-2", "web1")
    assert code == 3 and "no facts from compute-2" in out


def test_unreadable_iptables_is_unknown_not_accepted(synced, lab):  # noqa: F811
    data, _ = lab
    data["facts"]["compute-1"]["iptables"]["filter"] = None
    data["facts"]["compute-1"]["errors"] = ["iptables-save -t filter: exit code 4"]
    code, out = run(synced, "trace", "controller-1", "web1")
    assert code == 3
    assert (
        "its iptables filter table could not be read (iptables-save -t filter: exit code 4)" in out
    )
