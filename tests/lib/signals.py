"""Proving a process was NOT signalled, without sleeping: it blocks the signals.

A blocked signal stays pending, visible in /proc/<pid>/status (SigPnd for the
thread, ShdPnd for the process) the moment kill(2) returns. A test that runs
such a process as "someone else's" and then checks :func:`pending_signals`
knows for certain whether novanet sent it anything: no waiting for a handler
to run or for the process to die. (SIGKILL cannot be blocked: it kills, and
:func:`pending_signals` then says None.)
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from novanet.linux import procfs

BLOCKED = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
PROGRAM = (
    "import signal, sys, time\n"
    f"signal.pthread_sigmask(signal.SIG_BLOCK, {{{', '.join(str(int(s)) for s in BLOCKED)}}})\n"
    "print('blocked', flush=True)\n"
    "time.sleep(300)\n"
)


def start_blocker(
    popen: Callable[..., subprocess.Popen[Any]] = subprocess.Popen, args: Sequence[str] = ()
) -> subprocess.Popen[Any]:
    """A process (python) blocking HUP, INT, TERM, USR1, USR2; returns once they are blocked.

    ``args`` are appended to its command line (e.g. a marker another program
    looks for); ``popen`` runs it (a namespace's popen, say).
    """
    proc = popen([sys.executable, "-c", PROGRAM, *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert (line.decode() if isinstance(line, bytes) else line).strip() == "blocked"
    return proc


def pending_signals(pid: int) -> set[int] | None:
    """Signals sent to ``pid`` and not delivered yet (blocked); None if it is gone."""
    status = procfs.status(pid)
    if status is None:
        return None
    bits = int(status.get("SigPnd", "0"), 16) | int(status.get("ShdPnd", "0"), 16)
    return {n for n in range(1, 65) if bits >> (n - 1) & 1}
