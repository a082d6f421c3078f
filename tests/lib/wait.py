"""Polling with a deadline, for tests that wait on daemons and the kernel.

One loop for the whole tree: :func:`novanet.wait.wait_until`; these are its
two test flavours (a falsy result, or an AssertionError naming what was
awaited).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from novanet.wait import poll

__all__ = ["poll", "wait_for"]


def wait_for(
    predicate: Callable[[], Any], what: str, timeout: float = 15.0, interval: float = 0.1
) -> Any:
    """The predicate's first true value; AssertionError naming ``what`` after ``timeout``."""
    value = poll(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return value
