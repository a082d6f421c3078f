"""sd_notify over a real unix datagram socket; the watchdog stops when a fatal check fails."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from novanet.service import daemon, health
from novanet.service.systemd import Notifier
from tests.lib.units import NotifySocket


@pytest.fixture
def listener(tmp_path: Path):
    made = NotifySocket(tmp_path / "notify")
    yield made
    made.close()


def test_ready_status_and_watchdog(listener: NotifySocket) -> None:
    env = {"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "30000000"}
    notifier = Notifier(env)
    assert env == {}  # our children (dnsmasq) must not inherit them
    assert notifier.watchdog_interval == 15.0
    assert notifier.ready(status="serving")
    assert listener.receive(1) == {"READY": "1", "STATUS": "serving"}
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()
    assert [listener.receive(1) for _ in range(3)] == [
        {"WATCHDOG": "1"}, {"RELOADING": "1"}, {"STOPPING": "1"}
    ]
    notifier.close()


def test_abstract_socket() -> None:
    name = f"novanet-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        sock.settimeout(1)
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_without_systemd_nothing_happens() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert not notifier.ready()


def test_watchdog_meant_for_another_pid_is_ignored(listener: NotifySocket) -> None:
    env = {"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    assert Notifier(env).watchdog_interval is None


def test_a_vanished_socket_is_logged_once(tmp_path: Path, caplog) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not notifier.ready() and not notifier.watchdog()
    assert len([r for r in caplog.records if "cannot notify systemd" in r.message]) == 1


class FakeDaemon:
    def __init__(self) -> None:
        self.checks = [health.Check("task heartbeat", True)]

    def health(self) -> list[health.Check]:
        return self.checks


class Signals:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.hup = threading.Event()


def supervisor(listener: NotifySocket, clock) -> tuple[daemon.Supervisor, FakeDaemon]:
    notifier = Notifier({"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "2000000"})
    made = daemon.Supervisor("novanet-test", None, [], notifier, Signals(), clock=clock)  # type: ignore[arg-type]
    fake = FakeDaemon()
    made.attach(fake, None)
    made.started = True
    return made, fake


def test_watchdog_pings_only_while_no_fatal_check_fails(listener: NotifySocket) -> None:
    now = [100.0]
    sup, fake = supervisor(listener, lambda: now[0])
    sup.tick()
    assert listener.receive(1) == {"STATUS": "healthy"}
    assert listener.receive(1) == {"WATCHDOG": "1"}
    now[0] += 0.2
    sup.tick()  # not due yet (every second for a 2 s watchdog)
    assert listener.receive(0.2) is None
    # not fatal (the broker is away): still pinging, status says why
    fake.checks = [health.Check("rpc", False, "not serving yet")]
    now[0] += 1
    sup.tick()
    assert listener.receive(1) == {"STATUS": "rpc: failing (not serving yet)"}
    assert listener.receive(1) == {"WATCHDOG": "1"}
    # a stuck task: no more pings, so systemd restarts the daemon
    fake.checks = [health.Check("task iptables-drift", False, "running for 400 s", fatal=True)]
    for _ in range(3):
        now[0] += 1
        sup.tick()
    assert listener.receive(1) == {"STATUS": "task iptables-drift: FATAL (running for 400 s)"}
    assert listener.receive(0.3) is None
    fake.checks = [health.Check("task iptables-drift", True)]
    now[0] += 1
    sup.tick()
    assert listener.receive(1) == {"STATUS": "healthy"}
    assert listener.receive(1) == {"WATCHDOG": "1"}
