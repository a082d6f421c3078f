"""The few facts novanet reads from /proc/<pid>: one parser for the whole tree.

``/proc/<pid>/stat`` is one line, ``pid (comm) state ppid pgrp ...``, and
comm (the program name, up to 15 bytes) may itself contain spaces and
parentheses: the only safe split is after the LAST ``)``. Every reader of
that file goes through :func:`stat` so that rule is written once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PROC = "/proc"
DEAD = ("Z", "X")  # zombie (exited, not reaped yet) and dead


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat that novanet uses (times in clock ticks)."""

    state: str  # R running, S sleeping, D disk, Z zombie, X dead, ...
    ppid: int
    pgrp: int
    utime: int
    stime: int
    cutime: int  # reaped children's user time
    cstime: int
    starttime: int  # since boot; with the pid, names one process for ever

    @property
    def alive(self) -> bool:
        """Not a zombie: a zombie has exited, only its parent's wait() is missing."""
        return self.state not in DEAD

    @property
    def cpu_ticks(self) -> int:
        return self.utime + self.stime

    @property
    def children_ticks(self) -> int:
        return self.cutime + self.cstime


def parse_stat(text: str | bytes) -> ProcStat:
    """Parse the content of a /proc/<pid>/stat file (ValueError if malformed)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    head, paren, rest = text.rpartition(")")
    if not paren or "(" not in head:
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}")
    # Fields after comm, counted from 0: state, ppid, pgrp, session, tty_nr,
    # tpgid, flags, minflt, cminflt, majflt, cmajflt, utime (11), stime,
    # cutime, cstime, priority, nice, num_threads, itrealvalue, starttime (19).
    fields = rest.split()
    if len(fields) < 20:
        raise ValueError(f"short /proc/<pid>/stat line: {text[:80]!r}")
    return ProcStat(
        state=fields[0],
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
        starttime=int(fields[19]),
    )


def stat(pid: int | str, proc: str = PROC) -> ProcStat | None:
    """``/proc/<pid>/stat`` parsed, or None if the process is gone (or unreadable)."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:  # FileNotFoundError, ProcessLookupError (ESRCH while reading)
        return None
    try:
        return parse_stat(raw)
    except ValueError:
        return None


def status(pid: int | str, proc: str = PROC) -> dict[str, str] | None:
    """``/proc/<pid>/status`` as {field: value} (VmRSS, SigBlk, ...), None if gone."""
    try:
        with open(f"{proc}/{pid}/status", encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    found = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            found[key] = value.strip()
    return found


def pids(proc: str = PROC) -> list[int]:
    """Every pid listed in /proc now (some may be gone by the time they are read)."""
    try:
        return [int(entry) for entry in os.listdir(proc) if entry.isdigit()]
    except OSError:
        return []


def clock_ticks() -> int:
    """Clock ticks per second: the unit of the times in /proc/<pid>/stat."""
    return os.sysconf("SC_CLK_TCK")
