"""Polling with a deadline, for tests that wait on daemons and the kernel.

One loop for the whole tree: novanet.lab.daemons.wait_until (the lab's own
waits); these are its two test flavours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from novanet.lab.daemons import wait_until


def poll(predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """The predicate's first true value, or None after ``timeout`` seconds."""
    try:
        return wait_until(predicate, "poll", timeout, interval)
    except TimeoutError:
        return None


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 15.0, interval: float = 0.1) -> Any:
    """The predicate's first true value; AssertionError naming ``what`` after ``timeout``."""
    value = poll(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return value
