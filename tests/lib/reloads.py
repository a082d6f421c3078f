"""Coalesced reloads run when the test says so: ``spawn=`` and ``clock=`` for CoalescingReloader.

A reload that is coalesced (asked for during a run or within the delay after
one) runs later in a background thread. A test that must show something did
NOT happen yet would otherwise sleep "long enough"; with these, nothing runs
in the background at all: :meth:`ManualReloads.run_pending` lets the delay
pass and runs what was asked for, in the test's thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from novanet.dhcp.reloader import CoalescingReloader


class ManualReloads:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.workers: list[Callable[[], None]] = []
        self._ticking = 0.0

    def clock(self) -> float:
        # While pending runs are worked off, every look at the clock finds the
        # delay passed: a run that asks to be run again goes at once.
        self.now += self._ticking
        return self.now

    def spawn(self, target: Callable[[], None], name: str) -> None:
        self.workers.append(target)

    def reloader(self, *args: Any, **kw: Any) -> CoalescingReloader:
        """A CoalescingReloader on this clock whose background runs wait for run_pending."""
        return functools.partial(CoalescingReloader, spawn=self.spawn, clock=self.clock)(
            *args, **kw
        )

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def run_pending(self, step: float = 3600.0) -> int:
        """Run every background run asked for so far (and those they ask for); how many."""
        ran = 0
        self._ticking = step
        try:
            while self.workers:
                self.workers.pop(0)()
                ran += 1
        finally:
            self._ticking = 0.0
        return ran
