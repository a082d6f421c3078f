"""SIGHUP's reload, journald lines, request ids in log records, periodic task health."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest

from novanet.conf import loader, new_conf
from novanet.rpc import context
from novanet.service import logs
from novanet.service.periodic import PeriodicRunner
from novanet.service.reload import Reloader


def loaded(path: Path) -> tuple:
    conf = new_conf()
    sources = loader.load(conf, [loader.Source("flag", str(path))], default_files=())
    return conf, sources


def test_reload_applies_what_can_change_and_names_the_rest(tmp_path: Path, caplog) -> None:
    path = tmp_path / "nova.conf"
    path.write_text("--report_interval=10\n--dhcp_lease_time=86400\n")
    conf, sources = loaded(path)
    runner = PeriodicRunner()
    runner.add("heartbeat", 10, lambda: None, option="report_interval")
    applied_debug = []
    appliers = {
        "report_interval": runner.set_interval,
        "debug": lambda _n, value: applied_debug.append(value),
    }
    reloader = Reloader(conf, sources, "novanet-test", appliers)
    path.write_text(
        "--report_interval=3\n--dhcp_lease_time=3600\n--debug\n"
        "--sql_connection=mysql+pymysql://u:secret@db/nova\n"
    )
    caplog.set_level(logging.INFO)
    reloader.on_sighup()
    assert conf.report_interval == 3 and runner.tasks[0].interval == 3
    assert applied_debug == [True]
    assert conf.dhcp_lease_time == 86400  # needs a restart: kept until then
    messages = [r.getMessage() for r in caplog.records]
    applied = next(m for m in messages if "applied:" in m)
    assert "report_interval 10 -> 3" in applied and "debug False -> True" in applied
    restart = next(m for m in messages if "after a restart" in m)
    assert "dhcp_lease_time 86400 -> 3600" in restart
    assert "[database] connection (secret)" in restart and "secret@" not in restart
    # a broken file: one error line, nothing changes
    path.write_text("--report_interval=often\n")
    caplog.clear()
    reloader.on_sighup()
    assert conf.report_interval == 3
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and "report_interval" in record.getMessage()
    assert "\n" not in record.getMessage()


def test_nothing_changed(tmp_path: Path, caplog) -> None:
    path = tmp_path / "nova.conf"
    path.write_text("--report_interval=10\n")
    conf, sources = loaded(path)
    caplog.set_level(logging.INFO)
    Reloader(conf, sources, "novanet-test", {}).on_sighup()
    assert [r.getMessage() for r in caplog.records] == [f"SIGHUP: re-read {path}: nothing changed"]


def record(level: int, msg: str, exc: bool = False) -> logging.LogRecord:
    rec = logging.LogRecord("novanet.x", level, __file__, 1, msg, None, None)
    logs.RequestIdFilter().filter(rec)
    return rec


def test_journal_lines_carry_their_priority_on_every_line() -> None:
    fmt = logs.formatter("novanet-network", journal=True)
    assert fmt.format(record(logging.ERROR, "boom")) == "<3>ERROR novanet.x: boom"
    assert fmt.format(record(logging.WARNING, "w")).startswith("<4>")
    assert fmt.format(record(logging.INFO, "i")).startswith("<6>")
    assert fmt.format(record(logging.DEBUG, "d")).startswith("<7>")
    assert fmt.format(record(logging.ERROR, "two\nlines")).splitlines() == [
        "<3>ERROR novanet.x: two", "<3>lines"
    ]
    plain = logs.formatter("novanet-network", journal=False).format(record(logging.INFO, "i"))
    assert f"novanet-network[{os.getpid()}] INFO novanet.x: i" in plain


def test_journal_stream_is_recognised_by_device_and_inode(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        assert logs.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, stream)
        assert not logs.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, stream)
        assert not logs.stderr_is_journal({}, stream)
    assert logs.error_line("novanet-compute", "no", journal=True) == "<3>novanet-compute: error: no\n"


def test_request_id_in_records_only_inside_its_block() -> None:
    fmt = logs.formatter("p", journal=True)
    with context.bound() as rid:
        assert fmt.format(record(logging.INFO, "x")) == f"<6>INFO novanet.x [{rid}]: x"
        assert context.rpc_context() == {"request_id": rid}
    assert fmt.format(record(logging.INFO, "x")) == "<6>INFO novanet.x: x"
    fresh = context.rpc_context()["request_id"]
    assert context.from_rpc({"request_id": fresh}) == fresh
    for bad in ({}, {"request_id": "req-1\n<0>fake"}, "str", {"request_id": 7}):
        assert context.from_rpc(bad) is None


def test_a_stuck_task_is_fatal(monkeypatch) -> None:
    now = [0.0]
    runner = PeriodicRunner(stuck_after=300, clock=lambda: now[0])
    task = runner.add("iptables-drift", 10, lambda: None)
    assert [c.ok for c in runner.checks()] == [True]
    task.running_since = 0.0
    now[0] = 200.0
    assert [c.ok for c in runner.checks()] == [True]
    now[0] = 301.0
    (check,) = runner.checks()
    assert (check.ok, check.fatal, check.detail) == (False, True, "running for 301 s")
    task.running_since, task.last_failed = None, True
    (check,) = runner.checks()
    assert (check.ok, check.fatal) == (False, False)


def test_logs_setup_uses_the_journal_format_under_systemd(monkeypatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        logs.setup("novanet-test", journal=True)
        logging.getLogger("novanet.y").warning("careful")
        assert stream.getvalue() == "<4>WARNING novanet.y: careful\n"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", None), ("127.0.0.1", ("127.0.0.1", 9781)), ("10.0.0.5:9100", ("10.0.0.5", 9100)),
     ("[::1]:9100", ("::1", 9100)), (":9100", ("0.0.0.0", 9100))],
)
def test_metrics_listen(value, expected) -> None:
    from novanet.service.httpd import parse_listen

    assert parse_listen(value, "novanet-network") == expected
