"""novanet-manage trace --live: who is asked what, the kernel's lines and drops, refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from novanet.manage import trace as trace_cmd
from novanet.manage import trace_live
from tests.unit.explain.test_trace import db_of, load
from tests.unit.test_manage import env, run, synced  # noqa: F401 - shared fixtures

DAEMONS = [
    ("compute-1", "novanet-compute"),
    ("compute-2", "novanet-compute"),
    ("controller-1", "novanet-network"),
]
DROP = (
    "trace id 5a ip filter nova-compute-sg-fallback rule counter packets 0 bytes 0 drop "
    "(verdict drop)"
)
PASS = "trace id 6b ip filter OUTPUT policy accept"


@pytest.fixture
def lab(monkeypatch):
    data = load()
    asked: list[tuple[dict[str, Any], list[trace_live.Call], float]] = []
    answers: dict[str, list[str]] = {"compute-1": [DROP], "compute-2": [], "controller-1": [PASS]}

    def gather(conf, probe, calls, seconds):
        asked.append((probe, calls, seconds))
        return trace_live.Live(
            {c.host: answers[c.host] for c in calls if c.host in answers},
            {c.host: "no answer within 18 s" for c in calls if c.host not in answers},
        )

    monkeypatch.setattr(trace_cmd, "gather_facts", lambda conf, wanted, timeout=0: data["facts"])
    monkeypatch.setattr(trace_cmd, "db_view", lambda ctx: db_of(data))
    monkeypatch.setattr(trace_cmd, "_daemons", lambda ctx: (DAEMONS, {h for h, _ in DAEMONS}))
    monkeypatch.setattr(trace_live, "gather", gather)
    return data, asked, answers


def test_the_source_node_sends_the_others_watch(synced, lab):  # noqa: F811
    _, asked, _ = lab
    code, out = run(synced, "trace", "compute-1", "ssh1", "--live")
    assert code == 1  # the prediction's verdict and exit code
    (probe, calls, seconds), = asked  # fmt: skip
    assert probe == {"src": "192.168.56.202", "dst": "10.0.0.3", "proto": "icmp"}
    assert seconds == 3.0
    assert calls == [
        trace_live.Call("compute-1", "novanet-compute", True),
        trace_live.Call("compute-2", "novanet-compute", False),
        trace_live.Call("controller-1", "novanet-network", False),
    ]
    lines = out.splitlines()
    live = lines[lines.index("kernel trace (nft monitor trace):") :]
    assert live == [
        "kernel trace (nft monitor trace):",
        f"  compute-1      {DROP}",
        "  compute-2      (no lines)",
        f"  controller-1   {PASS}",
        "  => kernel: verdict drop at compute-1 ip filter nova-compute-sg-fallback",
    ]
    assert lines.index("kernel trace (nft monitor trace):") > lines.index("request:")


def test_an_instance_sends_through_its_agent_and_json_has_the_lines(synced, lab):  # noqa: F811
    data, asked, answers = lab
    answers["compute-1"] = [PASS]
    del answers["compute-2"]
    code, out = run(synced, "trace", "ssh1", "controller-1", "--proto", "tcp", "--port", "22",
                    "--live", "--live-seconds", "5", "--format", "json")  # fmt: skip
    ssh1 = next(i for i in data["db"]["instances"] if i["display_name"] == "ssh1")
    (probe, calls, seconds), = asked  # fmt: skip
    assert probe == {"src": "10.0.0.3", "dst": "192.168.56.200", "proto": "tcp", "dport": 22}
    assert seconds == 5.0
    assert calls[0] == trace_live.Call("compute-1", "novanet-compute", True, ssh1["uuid"])
    assert [c.send for c in calls[1:]] == [False, False]
    result = json.loads(out)
    assert result["live"] == {"compute-1": [PASS], "controller-1": [PASS]}
    assert result["live_drops"] == []
    assert result["live_missing"] == {"compute-2": "no answer within 18 s"}
    assert code == 0 and result["verdict"] == "delivered"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["192.168.56.101", "web1"], "--live cannot send from outside 192.168.56.101"),
        (["web1", "web2", "--live-seconds", "x"], "--live-seconds 'x' is not a number"),
        (["web1", "web2", "--live-seconds", "1"], "--live-seconds 1: give 2 to 30 s"),
        (["web1", "web2", "--live-seconds", "31"], "give 2 to 30 s"),
    ],
)
def test_what_cannot_be_sent_is_refused_and_nothing_sent(synced, lab, capsys, args, message):  # noqa: F811
    _, asked, _ = lab
    code, out = run(synced, "trace", *args, "--live")
    err = capsys.readouterr().err
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and message in err, err
    assert asked == []


def test_a_tap_instance_cannot_send(synced, lab, capsys):  # noqa: F811
    data, asked, _ = lab
    for vif in data["facts"]["compute-1"]["vifs"]:
        vif["netns"] = None
    code, _ = run(synced, "trace", "web1", "controller-1", "--live")
    err = capsys.readouterr().err
    assert code == 2 and asked == []
    assert "it has a tap VIF (a VM), and the agent cannot send from inside a VM" in err


def test_a_silent_source_daemon_is_refused(synced, lab, monkeypatch, capsys):  # noqa: F811
    _, asked, _ = lab
    monkeypatch.setattr(trace_cmd, "_daemons", lambda ctx: (DAEMONS[:2], {h for h, _ in DAEMONS}))
    code, _ = run(synced, "trace", "controller-1", "web1", "--live")
    assert code == 2 and asked == []
    assert "--live: controller-1's novanet-network did not answer; nothing sent" in (
        capsys.readouterr().err
    )


def test_drops_are_found_in_prefixed_and_policy_lines() -> None:
    live = trace_live.Live(
        {
            "compute-1": [f"[host] {DROP}", "[instance-00000001] trace id 7 ip filter OUTPUT "
                          "policy accept"],  # fmt: skip
            "controller-1": ["trace id 8 ip filter FORWARD policy drop", PASS],
        },
        {},
    )
    assert live.drops() == [
        "compute-1 ip filter nova-compute-sg-fallback",
        "controller-1 ip filter FORWARD",
    ]
