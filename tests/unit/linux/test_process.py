"""PidFileProcess with real (harmless, unprivileged) processes.

The "daemon" is a small Python program that forks like dnsmasq: the parent
exits 0 once the child has written the pid file (or exits 2 with a message),
the child records the signals it gets in a file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from novanet.exception import ProcessExecutionError
from novanet.linux.process import PidFileProcess, ProcessError
from tests.lib.signals import pending_signals, start_blocker
from tests.lib.wait import poll

DAEMON = textwrap.dedent(
    """
    import os, signal, sys, time
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    if "--fail" in sys.argv:
        sys.stderr.write("fakedaemon: failed to create listening socket\\n")
        sys.exit(2)
    log = args["--log"]
    def note(signum, frame):
        with open(log, "a") as f:
            f.write(f"{signum}\\n")
        if signum == signal.SIGTERM and "--ignore-term" not in sys.argv:
            sys.exit(0)
    r, w = os.pipe()
    if os.fork():
        os.read(r, 1)
        sys.exit(0)
    os.setsid()
    for s in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(s, note)
    with open(args["--pid-file"], "w") as f:
        f.write(f"{os.getpid()}\\n")
    os.write(w, b"x")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    while True:
        time.sleep(0.05)
    """
)


@pytest.fixture
def daemon(tmp_path):
    script = tmp_path / "fakedaemon.py"
    script.write_text(DAEMON)
    pid_file = tmp_path / "nova-br100.pid"
    hostsfile = tmp_path / "nova-br100.conf"
    log = tmp_path / "signals.log"
    argv = [
        sys.executable,
        str(script),
        f"--pid-file={pid_file}",
        f"--dhcp-hostsfile={hostsfile}",
        f"--log={log}",
    ]
    handle = PidFileProcess(str(pid_file), str(hostsfile), stop_timeout=1.0)
    started: list[int] = []

    class D:
        pass

    d = D()
    d.argv, d.handle, d.log, d.pid_file, d.started = argv, handle, log, pid_file, started
    d.signals = lambda: [int(x) for x in log.read_text().split()] if log.exists() else []
    yield d
    for pid in started:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(predicate, timeout=3.0):
    return bool(poll(predicate, timeout, 0.01))


def test_start_returns_the_daemon_pid_and_tracks_it(daemon):
    pid = daemon.handle.start(daemon.argv)
    daemon.started.append(pid)
    assert daemon.handle.pid() == pid
    assert daemon.handle.is_active()
    assert daemon.handle.cmdline() == tuple(daemon.argv)
    assert daemon.handle.environ() is not None


def test_start_passes_the_environment(daemon):
    pid = daemon.handle.start(daemon.argv, {"NOVANET_NETWORK_ID": "42"})
    daemon.started.append(pid)
    assert daemon.handle.environ()["NOVANET_NETWORK_ID"] == "42"


def test_start_failure_surfaces_the_daemons_message(daemon):
    with pytest.raises(ProcessExecutionError, match="failed to create listening socket"):
        daemon.handle.start(daemon.argv + ["--fail"])


def test_start_refuses_when_already_running(daemon):
    daemon.started.append(daemon.handle.start(daemon.argv))
    with pytest.raises(ProcessError):
        daemon.handle.start(daemon.argv)


def test_hup_reaches_our_process(daemon):
    daemon.started.append(daemon.handle.start(daemon.argv))
    assert daemon.handle.hup()
    assert wait_for(lambda: daemon.signals() == [signal.SIGHUP])


def test_stop_terminates_and_removes_the_pid_file(daemon):
    pid = daemon.handle.start(daemon.argv)
    daemon.started.append(pid)
    assert daemon.handle.stop()
    assert not daemon.handle.is_active()
    assert not daemon.pid_file.exists()
    assert daemon.signals() == [signal.SIGTERM]


def test_stop_kills_a_process_that_ignores_sigterm(daemon):
    pid = daemon.handle.start(daemon.argv + ["--ignore-term"])
    daemon.started.append(pid)
    assert daemon.handle.stop(timeout=0.3)
    assert not daemon.handle.is_active()
    assert daemon.signals() == [signal.SIGTERM]  # then SIGKILL, which it cannot log


def test_foreign_process_in_the_pid_file_is_never_signalled(daemon):
    foreign = start_blocker()  # blocks the signals: any sent stays pending, visible
    try:
        daemon.pid_file.write_text(f"{foreign.pid}\n")
        assert daemon.handle.read_pid() == foreign.pid
        assert daemon.handle.pid() is None
        assert not daemon.handle.is_active()
        assert daemon.handle.cmdline() is None
        assert not daemon.handle.hup()
        assert not daemon.handle.stop()
        assert pending_signals(foreign.pid) == set()  # alive, and nothing was sent
        assert not daemon.pid_file.exists()  # the stale file is gone
    finally:
        foreign.kill()
        foreign.wait()


def test_stale_pid_file_is_ignored_and_replaced(daemon):
    daemon.pid_file.write_text("999999999\n")
    assert not daemon.handle.is_active()
    assert not daemon.handle.hup()
    pid = daemon.handle.start(daemon.argv)
    daemon.started.append(pid)
    assert daemon.handle.read_pid() == pid


@pytest.mark.parametrize("content", ["", "garbage\n", "-5\n", "0\n"])
def test_garbage_pid_file(daemon, content):
    daemon.pid_file.write_text(content)
    assert daemon.handle.read_pid() is None
    assert not daemon.handle.is_active()
    assert not daemon.handle.stop()


def test_a_dead_daemon_is_not_active(daemon):
    pid = daemon.handle.start(daemon.argv)
    daemon.started.append(pid)
    os.kill(pid, signal.SIGKILL)
    # Its parent is init, which may not reap it here: a zombie is not "ours".
    assert wait_for(lambda: not daemon.handle.is_active())
    assert not daemon.handle.hup()


def test_busy_means_running_on_a_cpu(daemon, tmp_path):
    pid = daemon.handle.start(daemon.argv)
    daemon.started.append(pid)
    assert not daemon.handle.is_busy()  # sleeping between its 50 ms naps
    marker = daemon.handle.marker
    spinner = subprocess.Popen(
        [sys.executable, "-c", "while True: pass", f"--dhcp-hostsfile={marker}"]
    )
    try:
        spin = PidFileProcess(str(tmp_path / "spin.pid"), marker)
        (tmp_path / "spin.pid").write_text(f"{spinner.pid}\n")
        time.sleep(0.1)
        assert spin.is_busy()
    finally:
        spinner.kill()
        spinner.wait()
