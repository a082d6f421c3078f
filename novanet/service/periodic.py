"""Periodic tasks of a daemon: each runs in its own (green) thread at its interval.

Plain ``threading``: the daemons monkey-patch it into green threads, tests
run it as real threads. A task that raises is logged and runs again at its
next interval; one slow task never delays another.

A task's interval may come from an option (``option=``): a SIGHUP that
changes that option changes the interval from the next wait on. The runner
reports its health: a task that has been running for longer than
``stuck_after`` seconds (or whose thread ended) is stuck, which stops the
systemd watchdog so that the daemon is restarted.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator

from novanet.service.health import Check

LOG = logging.getLogger(__name__)

DEFAULT_STUCK_AFTER = 300.0


@dataclasses.dataclass
class PeriodicTask:
    name: str
    interval: float
    func: Callable[[], object]
    run_immediately: bool = False
    option: str | None = None  # the option giving the interval (reloadable)
    runs: int = 0
    failures: int = 0
    last_duration: float = 0.0
    last_failed: bool = False
    running_since: float | None = None


class PeriodicRunner:
    def __init__(
        self,
        stuck_after: float = DEFAULT_STUCK_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tasks: list[PeriodicTask] = []
        self.stuck_after = stuck_after
        self._clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def add(
        self,
        name: str,
        interval: float,
        func: Callable[[], object],
        run_immediately: bool = False,
        option: str | None = None,
    ) -> PeriodicTask:
        task = PeriodicTask(name, interval, func, run_immediately, option)
        self.tasks.append(task)
        return task

    def start(self) -> None:
        self._stop.clear()
        for task in self.tasks:
            thread = threading.Thread(target=self._loop, args=(task,), name=task.name, daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def _loop(self, task: PeriodicTask) -> None:
        if not task.run_immediately and self._stop.wait(task.interval):
            return
        while not self._stop.is_set():
            started = self._clock()
            task.running_since = started
            try:
                task.func()
                task.last_failed = False
            except Exception:  # noqa: BLE001 - keep the daemon alive, report it
                task.failures += 1
                task.last_failed = True
                LOG.exception("periodic task %s failed", task.name)
            task.running_since = None
            task.runs += 1
            task.last_duration = self._clock() - started
            if self._stop.wait(max(0.0, task.interval - task.last_duration)):
                return

    def set_interval(self, option: str, value: float) -> list[str]:
        """New interval for the tasks driven by ``option``; their names."""
        changed = []
        for task in self.tasks:
            if task.option == option and task.interval != value:
                task.interval = value
                changed.append(task.name)
        return changed

    def checks(self) -> Iterator[Check]:
        """One check per task: stuck (fatal), last run failed (not fatal), or ok."""
        now = self._clock()
        threads = {t.name: t for t in self._threads}
        for task in self.tasks:
            name = f"task {task.name}"
            since = task.running_since
            if since is not None and now - since > self.stuck_after:
                yield Check(name, False, f"running for {now - since:.0f} s", fatal=True)
            elif self._threads and not self._stop.is_set() and not threads[task.name].is_alive():
                yield Check(name, False, "its thread ended", fatal=True)
            elif task.last_failed:
                yield Check(name, False, "its last run failed (see the log)")
            else:
                yield Check(name, True, f"{task.runs} runs" if self._threads else "not started")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
