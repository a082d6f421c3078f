"""Periodic tasks of a daemon: each runs in its own (green) thread at its interval.

Plain ``threading``: the daemons monkey-patch it into green threads, tests
run it as real threads. A task that raises is logged and runs again at its
next interval; one slow task never delays another.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class PeriodicTask:
    name: str
    interval: float
    func: Callable[[], object]
    run_immediately: bool = False
    runs: int = 0
    failures: int = 0
    last_duration: float = 0.0


class PeriodicRunner:
    def __init__(self) -> None:
        self.tasks: list[PeriodicTask] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def add(
        self, name: str, interval: float, func: Callable[[], object], run_immediately: bool = False
    ) -> PeriodicTask:
        task = PeriodicTask(name, interval, func, run_immediately)
        self.tasks.append(task)
        return task

    def start(self) -> None:
        self._stop.clear()
        for task in self.tasks:
            thread = threading.Thread(target=self._loop, args=(task,), name=task.name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self, task: PeriodicTask) -> None:
        if not task.run_immediately and self._stop.wait(task.interval):
            return
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                task.func()
            except Exception:  # noqa: BLE001 - keep the daemon alive, report it
                task.failures += 1
                LOG.exception("periodic task %s failed", task.name)
            task.runs += 1
            task.last_duration = time.monotonic() - started
            if self._stop.wait(max(0.0, task.interval - task.last_duration)):
                return

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
