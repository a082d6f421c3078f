"""Coalescing of reload requests: a burst of allocations costs a few reloads.

Only ``threading`` primitives are used: the daemons monkey-patch them into
green threads, and plain threads work for tools and tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

LOG = logging.getLogger(__name__)


def _spawn_thread(target: Callable[[], None], name: str) -> None:
    threading.Thread(target=target, name=name, daemon=True).start()


class CoalescingReloader:
    """Runs ``action`` on request, one run at a time, at most one per ``delay`` s.

    - :meth:`request` when idle, and ``delay`` after the previous run: runs
      ``action`` at once in the caller's thread (leading edge), so an isolated
      allocation is in dnsmasq's files when ``reload_allocations`` returns.
    - :meth:`request` while a run is going on or less than ``delay`` after
      one: only marks the state dirty and returns. One background run follows,
      ``delay`` after the previous one ended, and covers every request made
      until it starts: N requests during a run cause exactly one more run.
    - :meth:`flush`: waits for a run in progress, then runs in the caller's
      thread and raises its errors (requests never raise: their failures are
      logged; the next request or the periodic check repairs).

    ``action(urgent)`` gets ``urgent=True`` when a caller waits for it
    (flush); a non-urgent run may call :meth:`request` to be run again later.
    """

    def __init__(
        self,
        action: Callable[[bool], None],
        delay: float,
        *,
        name: str = "dnsmasq-reload",
        spawn: Callable[[Callable[[], None], str], None] = _spawn_thread,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._action = action
        self._delay = max(0.0, float(delay))
        self._name = name
        self._spawn = spawn
        self._clock = clock
        self._cond = threading.Condition()
        self._running = False
        self._dirty = False
        self._worker = False
        self._closed = False
        self._last_end = float("-inf")
        self.requests = 0
        self.runs = 0

    def request(self) -> None:
        """Ask for a run covering everything changed up to now (never raises)."""
        with self._cond:
            if self._closed:
                return
            self.requests += 1
            if self._running or self._worker or self._clock() - self._last_end < self._delay:
                self._dirty = True
                if not self._worker:
                    self._worker = True
                    self._spawn(self._work, self._name)
                return
            self._running = True
        self._run(urgent=False)

    def flush(self) -> None:
        """Run now, after any run in progress, in this thread; errors propagate."""
        with self._cond:
            while self._running:
                self._cond.wait()
            if self._closed:
                return
            self._running = True
            self._dirty = False
        self._run(urgent=True)

    def close(self) -> None:
        """Drop pending requests and refuse new ones (a run in progress finishes)."""
        with self._cond:
            self._closed = True
            self._dirty = False
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no run is going on or pending; False on timeout."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while self._running or self._dirty or self._worker:
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    @property
    def pending(self) -> bool:
        with self._cond:
            return self._dirty or self._running

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed or not self._dirty:
                        self._worker = False
                        self._cond.notify_all()
                        return
                    if self._running:
                        self._cond.wait()
                        continue
                    wait = self._last_end + self._delay - self._clock()
                    if wait > 0:
                        self._cond.wait(wait)
                        continue
                    self._dirty = False
                    self._running = True
                    break
            self._run(urgent=False)

    def _run(self, urgent: bool) -> None:
        try:
            self._action(urgent)
        except Exception:
            if urgent:
                raise
            LOG.exception("%s failed", self._name)
        finally:
            with self._cond:
                self._running = False
                self._last_end = self._clock()
                self.runs += 1
                self._cond.notify_all()
