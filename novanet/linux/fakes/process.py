"""A stateful fake of daemons tracked by pid files (see novanet.linux.process).

:class:`FakeProcessTable` plays the kernel's process table: pids, argv,
environment, liveness and the signals each process received. Handles made by
:meth:`FakeProcessTable.handle` behave like :class:`PidFileProcess` (same
"ours" rule: the pid file's pid is alive and its argv carries the marker) and
write real pid files, so tests can also plant a foreign pid in one.
Listeners see every start and signal, e.g. to model what dnsmasq reads.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from novanet.exception import ProcessExecutionError
from novanet.linux.process import ProcessError


@dataclass
class FakeProc:
    pid: int
    argv: tuple[str, ...]
    env: dict[str, str]
    alive: bool = True
    busy: bool = False  # state R: e.g. dnsmasq re-reading its hostsfile
    signals: list[int] = field(default_factory=list)

    @property
    def hups(self) -> int:
        return self.signals.count(signal.SIGHUP)


Listener = Callable[[FakeProc, str], None]  # event: "start", "hup", "term", "kill"


class FakeProcessTable:
    """The fake kernel side: every process the fakes started, or a test planted."""

    def __init__(self, first_pid: int = 4000) -> None:
        self.procs: dict[int, FakeProc] = {}
        self._next = first_pid
        self.listeners: list[Listener] = []
        self.fail_next_start: str | None = None  # stderr of a failing start
        self.ignore_term: set[int] = set()  # pids that survive SIGTERM

    def spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> FakeProc:
        proc = FakeProc(self._next, tuple(argv), dict(env or {}))
        self._next += 1
        self.procs[proc.pid] = proc
        return proc

    def kill(self, pid: int, signum: int) -> None:
        """Signal delivery as the kernel does it (test helper and handle backend)."""
        proc = self.procs.get(pid)
        if proc is None or not proc.alive:
            raise ProcessLookupError(pid)
        proc.signals.append(signum)
        if signum == signal.SIGHUP:
            self._notify(proc, "hup")
        elif signum == signal.SIGKILL or (signum == signal.SIGTERM and pid not in self.ignore_term):
            proc.alive = False
            self._notify(proc, "kill" if signum == signal.SIGKILL else "term")

    def running(self, marker: str | None = None) -> list[FakeProc]:
        """Live processes (whose argv carries ``marker``, if given)."""
        return [
            p for p in self.procs.values() if p.alive and (marker is None or _has(p.argv, marker))
        ]

    def handle(self, pid_file: str, marker: str) -> FakePidFileProcess:
        return FakePidFileProcess(self, pid_file, marker)

    def _notify(self, proc: FakeProc, event: str) -> None:
        for listener in list(self.listeners):
            listener(proc, event)


class FakePidFileProcess:
    """Drop-in for :class:`novanet.linux.process.PidFileProcess`."""

    def __init__(self, table: FakeProcessTable, pid_file: str, marker: str) -> None:
        self.table = table
        self.pid_file = pid_file
        self.marker = marker

    def read_pid(self) -> int | None:
        try:
            with open(self.pid_file) as handle:
                text = handle.read().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def _ours(self) -> FakeProc | None:
        pid = self.read_pid()
        proc = self.table.procs.get(pid) if pid is not None else None
        if proc is None or not proc.alive or not _has(proc.argv, self.marker):
            return None
        return proc

    def pid(self) -> int | None:
        proc = self._ours()
        return proc.pid if proc else None

    def is_active(self) -> bool:
        return self._ours() is not None

    def is_busy(self) -> bool:
        proc = self._ours()
        return bool(proc and proc.busy)

    def cmdline(self) -> tuple[str, ...] | None:
        proc = self._ours()
        return proc.argv if proc else None

    def environ(self) -> dict[str, str] | None:
        proc = self._ours()
        return dict(proc.env) if proc else None

    def start(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
        if self._ours() is not None:
            raise ProcessError(f"already running ({self.pid_file})")
        if self.table.fail_next_start is not None:
            stderr, self.table.fail_next_start = self.table.fail_next_start, None
            raise ProcessExecutionError(list(argv), 2, "", stderr)
        proc = self.table.spawn(argv, env)
        os.makedirs(os.path.dirname(self.pid_file) or ".", exist_ok=True)
        with open(self.pid_file, "w") as handle:
            handle.write(f"{proc.pid}\n")
        self.table._notify(proc, "start")
        return proc.pid

    def hup(self) -> bool:
        proc = self._ours()
        if proc is None:
            return False
        self.table.kill(proc.pid, signal.SIGHUP)
        return True

    def stop(self, timeout: float | None = None) -> bool:
        proc = self._ours()
        stopped = False
        if proc is not None:
            self.table.kill(proc.pid, signal.SIGTERM)
            if proc.alive:
                self.table.kill(proc.pid, signal.SIGKILL)
            stopped = True
        self.remove_pid_file()
        return stopped

    def remove_pid_file(self) -> None:
        try:
            os.unlink(self.pid_file)
        except FileNotFoundError:
            pass


def _has(argv: Sequence[str], marker: str) -> bool:
    return any(arg == marker or arg.partition("=")[2] == marker for arg in argv)
