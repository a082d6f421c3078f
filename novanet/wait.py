"""Polling with a deadline: the one loop novanet-lab, the benchmarks and the tests share.

For waiting on something outside the process (a daemon's log line, a
kernel object, a pid going away) where there is nothing to block on. The
clock and the sleep are injectable, so code built on it can be tested
without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(
    predicate: Callable[[], Any],
    what: str,
    timeout: float,
    interval: float = 0.05,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Poll ``predicate`` until it returns something true; that value, or TimeoutError.

    The predicate is always tried once more after the deadline passed, so a
    slow machine that overslept still sees a state that did arrive.
    """
    deadline = clock() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if clock() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        sleep(interval)


def poll(
    predicate: Callable[[], Any],
    timeout: float,
    interval: float = 0.05,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """The predicate's first true value, or None after ``timeout`` seconds."""
    try:
        return wait_until(predicate, "poll", timeout, interval, clock=clock, sleep=sleep)
    except TimeoutError:
        return None
