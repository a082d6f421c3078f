"""Named locks that hold across threads, green threads and processes.

nova-network edited the bridge's addresses and routes without a lock, and
two concurrent edits (a restart racing a periodic task, two agents) left
hosts without their gateway address. A :class:`LockSet` lock is an
in-process lock plus an ``fcntl.flock`` on ``<lock_dir>/novanet-<name>.lock``.

Both are taken by polling (non-blocking attempts and short sleeps) instead of
blocking calls: a blocking flock() would freeze eventlet's hub, and a
blocking acquire of a native lock held by another green thread of the same
OS thread would never return. ``time.sleep`` is green once eventlet has
monkey-patched, and a plain sleep otherwise, so this module does not need
eventlet. flock locks belong to the open file description: they are released
when the holder exits or crashes, so a stale lock file never blocks anyone.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from novanet.exception import NovanetError

_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]+$")


class LockTimeout(NovanetError):
    """A lock could not be taken in time."""


class LockSet:
    """Named locks under ``lock_dir`` (created if missing).

    :param timeout: seconds to wait for a lock before LockTimeout
    """

    def __init__(self, lock_dir: str, *, timeout: float = 120.0) -> None:
        self.lock_dir = lock_dir
        self.timeout = timeout
        self._guard = threading.Lock()
        self._local: dict[str, threading.Lock] = {}

    def path(self, name: str) -> str:
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid lock name {name!r}")
        return os.path.join(self.lock_dir, f"novanet-{name}.lock")

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold lock ``name`` for the body of the ``with`` statement."""
        path = self.path(name)
        deadline = time.monotonic() + self.timeout
        local = self._local_lock(name)
        _poll(
            lambda: local.acquire(blocking=False),
            deadline,
            lambda: f"timed out waiting for lock {name}, held in this process",
        )
        try:
            os.makedirs(self.lock_dir, mode=0o755, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                _poll(lambda: _try_flock(fd), deadline, lambda: _holder(path, name))
                # Who holds it, for an operator looking at a stuck start.
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                yield
            finally:
                os.close(fd)  # releases the flock
        finally:
            local.release()

    def _local_lock(self, name: str) -> threading.Lock:
        with self._guard:
            lock = self._local.get(name)
            if lock is None:
                lock = self._local[name] = threading.Lock()
            return lock


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _poll(attempt: Callable[[], bool], deadline: float, describe: Callable[[], str]) -> None:
    delay = 0.001
    while not attempt():
        if time.monotonic() >= deadline:
            raise LockTimeout(describe())
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _holder(path: str, name: str) -> str:
    try:
        with open(path) as handle:
            pid = handle.read().strip()
    except OSError:
        pid = ""
    who = f" (last taken by pid {pid})" if pid else ""
    return f"timed out waiting for lock {name} on {path}{who}"
