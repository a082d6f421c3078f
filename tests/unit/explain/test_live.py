"""live_trace's commands, on a recording stand-in for processutils (no kernel needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from novanet.exception import ProcessExecutionError
from novanet.explain import live
from novanet.explain.packet import Packet

TRACE = (
    'trace id 1a inet novanet_trace_1_0 out packet: oif "eth1" ip saddr 10.0.0.1 ...\n'
    "trace id 1a ip filter OUTPUT rule counter packets 0 bytes 0 jump nova-filter-top "
    "(verdict jump nova-filter-top)\n"
    "some other line\n"
)


class Recorder:
    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail_on = fail_on

    def __call__(self, cmd: Sequence[str], **kw: Any) -> tuple[str, str]:
        argv = list(cmd)
        self.calls.append((argv, kw.get("input")))
        if self.fail_on and self.fail_on in argv:
            raise ProcessExecutionError(argv, 1, "", "boom")
        if "monitor" in argv:
            return TRACE, ""
        return "", ""

    def commands(self) -> list[str]:
        return [" ".join(argv) for argv, _ in self.calls]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(live.processutils, "execute", rec)
    monkeypatch.setattr(live, "_HEAD_START", 0.0)
    return rec


def test_table_traces_the_flow_both_ways_at_both_hooks(recorder: Recorder) -> None:
    probe = Packet("10.0.0.1", "10.0.0.2", "tcp", None, 22, None)
    lines = live.live_trace(None, probe, 1.0)
    assert lines == TRACE.splitlines()[:2]
    (script,) = [stdin for argv, stdin in recorder.calls if argv[:2] == ["nft", "-f"]]
    assert script is not None
    assert "type filter hook prerouting priority -400; policy accept;" in script
    assert "type filter hook output priority -400; policy accept;" in script
    assert (
        script.count(
            "ip saddr 10.0.0.1 ip daddr 10.0.0.2 meta l4proto tcp th dport 22 meta nftrace set 1"
        )
        == 2
    )
    assert (
        script.count(
            "ip saddr 10.0.0.2 ip daddr 10.0.0.1 meta l4proto tcp th sport 22 meta nftrace set 1"
        )
        == 2
    )
    table = script.split()[2]
    assert table.startswith("novanet_trace_")
    commands = recorder.commands()
    assert "timeout 1 nft monitor trace" in commands
    assert any(c.startswith("socat -T1 - TCP4:10.0.0.2:22,bind=10.0.0.1,") for c in commands)
    assert commands[-1] == f"nft delete table inet {table}"


def test_other_namespaces_are_prefixed_and_icmp_is_pinged(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live.os.path, "exists", lambda path: True)
    lines = live.live_trace("nsa", Packet("10.0.0.1", "10.0.0.2"), 2.0, watch=["nsb", "nsa"])
    assert [line.split(" ")[0] for line in lines] == ["[nsa]", "[nsa]", "[nsb]", "[nsb]"]
    commands = recorder.commands()
    assert "ip netns exec nsa ping -n -c 1 -W 1 -I 10.0.0.1 10.0.0.2" in commands
    assert sum(c.startswith("ip netns exec nsb nft delete table inet ") for c in commands) == 1


def test_table_removed_when_a_later_step_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live.os.path, "exists", lambda path: True)
    rec = Recorder(fail_on="nsb")
    monkeypatch.setattr(live.processutils, "execute", rec)
    with pytest.raises(ProcessExecutionError):
        live.live_trace("nsa", Packet("10.0.0.1", "10.0.0.2"), 1.0, watch=["nsb"])
    assert rec.commands()[-1].startswith("ip netns exec nsa nft delete table inet novanet_trace_")


@pytest.mark.parametrize(
    ("probe", "seconds", "message"),
    [
        (Packet("10.0.0", "10.0.0.2"), 1.0, "'10.0.0' is not an IPv4 address"),
        (Packet("10.0.0.1", "10.0.0.2", "sctp", None, 1), 1.0, "cannot trace protocol 'sctp'"),
        (Packet("10.0.0.1", "10.0.0.2", "udp"), 1.0, "a udp probe needs a destination port"),
        (Packet("10.0.0.1", "10.0.0.2", "udp", 0, 53), 1.0, "port 0 is out of range"),
        (Packet("10.0.0.1", "10.0.0.2"), 0.0, "trace time 0.0 s"),
    ],
)
def test_bad_requests_run_nothing(
    recorder: Recorder, probe: Packet, seconds: float, message: str
) -> None:
    with pytest.raises(live.LiveTraceError, match=message):
        live.live_trace(None, probe, seconds)
    assert recorder.calls == []


def test_watching_only_sends_nothing_and_removes_its_table(recorder: Recorder) -> None:
    probe = Packet("10.0.0.1", "10.0.0.2", "udp", None, 53, None)
    lines = live.watch_trace(probe, 2.0)
    assert lines == TRACE.splitlines()[:2]
    commands = recorder.commands()
    assert commands[0] == "nft -f -" and "timeout 2 nft monitor trace" in commands
    assert not any(c.startswith(("ping", "socat")) for c in commands), commands
    assert commands[-1].startswith("nft delete table inet novanet_trace_")


def test_the_probe_waits_for_the_delay(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(live.time, "sleep", slept.append)
    live.live_trace(None, Packet("10.0.0.1", "10.0.0.2"), 4.0, delay=1.0)
    assert slept == [1.0]
    # the probe's own wait fits in what is left of the traced time
    assert "ping -n -c 1 -W 2 -I 10.0.0.1 10.0.0.2" in recorder.commands()


def test_run_sends_only_when_asked(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live.os.path, "exists", lambda path: True)
    probe = Packet("10.0.0.2", "10.0.0.1")
    lines = live.run(probe, 2.0, False, 0.0, netns="inst", watch=[None])
    assert [line.split(" ")[0] for line in lines] == ["[inst]"] * 2 + ["[host]"] * 2
    assert not any("ping" in c for c in recorder.commands())
    live.run(probe, 2.0, True, 0.5, netns="inst", watch=[None])
    assert "ip netns exec inst ping -n -c 1 -W 1 -I 10.0.0.2 10.0.0.1" in recorder.commands()


def test_a_failed_watch_still_removes_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live.os.path, "exists", lambda path: True)
    rec = Recorder(fail_on="nsb")
    monkeypatch.setattr(live.processutils, "execute", rec)
    with pytest.raises(ProcessExecutionError):
        live.watch_trace(Packet("10.0.0.1", "10.0.0.2"), 1.0, ["nsa", "nsb"])
    assert rec.commands()[-1].startswith("ip netns exec nsa nft delete table inet novanet_trace_")
    assert not any("monitor" in c for c in rec.commands())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: live.live_trace(None, p, 2.0, delay=2.0), "probe delay 2.0 s"),
        (lambda p: live.live_trace(None, p, 2.0, delay=-0.1), "probe delay -0.1 s"),
        (lambda p: live.watch_trace(p, 2.0, []), "no namespace to watch"),
        (lambda p: live.watch_trace(p, 61.0), "trace time 61.0 s"),
        (lambda p: live.watch_trace(p.replace(dst="x"), 1.0), "'x' is not an IPv4 address"),
    ],
)
def test_bad_split_requests_run_nothing(recorder: Recorder, call: Any, message: str) -> None:
    with pytest.raises(live.LiveTraceError, match=message):
        call(Packet("10.0.0.1", "10.0.0.2"))
    assert recorder.calls == []


def test_the_tracing_tables_own_rule_and_policy_are_left_out() -> None:
    output = (
        'trace id 1a inet novanet_trace_7_3 out packet: oif "eth1" ip saddr 10.0.0.1 ...\n'
        "trace id 1a inet novanet_trace_7_3 out rule ip saddr 10.0.0.1 ip daddr 10.0.0.2 "
        "meta l4proto icmp meta nftrace set 1 (verdict continue)\n"
        "trace id 1a inet novanet_trace_7_3 out policy accept\n"
        "trace id 1a ip filter OUTPUT policy accept\n"
    )
    assert live._trace_lines(output, "novanet_trace_7_3") == [
        'trace id 1a inet novanet_trace_7_3 out packet: oif "eth1" ip saddr 10.0.0.1 ...',
        "trace id 1a ip filter OUTPUT policy accept",
    ]
