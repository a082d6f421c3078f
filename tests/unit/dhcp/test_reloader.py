"""CoalescingReloader: bursts give few runs, nothing is lost, one run at a time."""

from __future__ import annotations

import threading
import time

import pytest

from novanet.dhcp.reloader import CoalescingReloader
from tests.lib.reloads import ManualReloads


class Action:
    def __init__(self, duration: float = 0.0) -> None:
        self.duration = duration
        self.runs = 0
        self.active = 0
        self.overlap = False
        self.seen: list[int] = []  # generation observed by each run
        self.generation = 0
        self.fail = False
        self.lock = threading.Lock()
        self.started = threading.Event()  # a run began
        self.go = threading.Event()  # with hold: a run may finish
        self.go.set()

    def __call__(self, urgent: bool = False) -> None:
        with self.lock:
            self.active += 1
            self.overlap |= self.active > 1
            self.seen.append(self.generation)
        self.started.set()
        try:
            assert self.go.wait(30), "the test never let the run finish"
            time.sleep(self.duration)
            if self.fail:
                raise RuntimeError("boom")
        finally:
            with self.lock:
                self.runs += 1
                self.active -= 1


def test_isolated_request_runs_at_once_in_the_caller():
    action = Action()
    reloader = CoalescingReloader(action, 0.05)
    reloader.request()
    assert action.runs == 1  # leading edge: done when request() returns


def test_burst_of_100_requests_gives_at_most_3_runs_and_covers_the_last():
    action = Action()
    reloader = CoalescingReloader(action, 0.05)
    for i in range(100):
        action.generation = i
        reloader.request()
    assert reloader.wait_idle(5)
    assert action.runs <= 3
    assert action.seen[-1] == 99  # the last request was covered by a run


def test_requests_during_a_run_cause_exactly_one_more_run():
    action = Action()
    manual = ManualReloads()
    reloader = manual.reloader(action, 0.0)
    action.go.clear()
    first = threading.Thread(target=reloader.request)
    first.start()
    assert action.started.wait(30)
    for _ in range(20):
        reloader.request()  # returns at once: dirty flag only
    assert action.runs == 0 and len(manual.workers) == 1
    action.go.set()
    first.join()
    assert manual.run_pending() == 1
    assert action.runs == 2
    assert not action.overlap


def test_concurrent_requests_from_many_threads_never_overlap():
    action = Action(duration=0.002)
    reloader = CoalescingReloader(action, 0.01)
    threads = [
        threading.Thread(target=lambda: [reloader.request() for _ in range(50)]) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reloader.wait_idle(5)
    assert not action.overlap
    assert 1 <= action.runs <= 40  # 400 requests


def test_spacing_between_runs_is_at_least_the_delay():
    stamps: list[float] = []
    reloader = CoalescingReloader(lambda urgent: stamps.append(time.monotonic()), 0.1)
    deadline = time.monotonic() + 0.35
    while time.monotonic() < deadline:
        reloader.request()
        time.sleep(0.005)
    assert reloader.wait_idle(5)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert gaps and min(gaps) >= 0.095
    assert len(stamps) <= 6


def test_flush_runs_synchronously_and_raises():
    action = Action()
    reloader = CoalescingReloader(action, 10.0)
    reloader.request()
    reloader.flush()  # ignores the delay
    assert action.runs == 2
    action.fail = True
    with pytest.raises(RuntimeError):
        reloader.flush()


def test_flush_waits_for_a_run_in_progress():
    action = Action(duration=0.05)
    reloader = CoalescingReloader(action, 0.0)
    thread = threading.Thread(target=reloader.request)
    thread.start()
    assert action.started.wait(30)
    reloader.flush()
    assert action.runs == 2
    assert not action.overlap
    thread.join()


def test_request_errors_are_logged_not_raised(caplog):
    action = Action()
    action.fail = True
    reloader = CoalescingReloader(action, 0.0)
    reloader.request()
    assert action.runs == 1
    assert "failed" in caplog.text


def test_close_drops_pending_requests():
    action = Action()
    manual = ManualReloads()
    reloader = manual.reloader(action, 0.2)
    reloader.request()
    reloader.request()  # pending, 0.2 s later
    reloader.close()
    manual.run_pending()  # the delay passed: the pending run would go now
    assert action.runs == 1
    assert reloader.wait_idle(0)
    reloader.request()
    assert action.runs == 1 and manual.workers == []


def test_an_action_can_ask_to_be_run_again():
    calls: list[bool] = []
    reloader: CoalescingReloader

    def action(urgent: bool) -> None:
        calls.append(urgent)
        if len(calls) < 3:
            reloader.request()  # e.g. dnsmasq busy: try again after the delay

    reloader = CoalescingReloader(action, 0.01)
    reloader.request()
    assert reloader.wait_idle(5)
    assert calls == [False, False, False]
    reloader.flush()
    assert calls[-1] is True
