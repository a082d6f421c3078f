"""novanet.wait: the one polling loop, driven by an injected clock (no real waiting)."""

from __future__ import annotations

import pytest

from novanet.wait import poll, wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_first_true_value_is_returned() -> None:
    clock = Clock()
    values = iter([0, None, "ready"])
    assert wait_until(lambda: next(values), "x", 10, 1, clock=clock, sleep=clock.sleep) == "ready"
    assert clock.slept == [1, 1]


def test_the_predicate_is_tried_once_more_after_the_deadline() -> None:
    clock = Clock()
    calls: list[float] = []

    def late() -> bool:
        calls.append(clock.now)
        return clock.now > 3

    assert wait_until(late, "x", 3, 2, clock=clock, sleep=clock.sleep)
    assert calls == [0, 2, 4]


def test_a_timeout_names_what_was_awaited() -> None:
    clock = Clock()
    with pytest.raises(TimeoutError, match="the daemon: not after 5 s"):
        wait_until(lambda: False, "the daemon", 5, 1, clock=clock, sleep=clock.sleep)
    assert poll(lambda: False, 5, 1, clock=clock, sleep=clock.sleep) is None
