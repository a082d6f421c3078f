"""eventlet monkey patching for the daemons, and what pyroute2 needs under it.

Daemons call :func:`monkey_patch` first thing in ``main()``, before anything
else is imported or created (locks created before patching are native locks
that green threads would block on).

pyroute2 0.9 under eventlet (measured, see PLATFORM.md and
tests/functional/test_green.py):

- ``IPRoute()`` in the current namespace works in a green thread, but two
  green threads using pyroute2 at the same time fail with "This event loop is
  already running": each IPRoute drives its socket with an asyncio loop, and
  asyncio allows one running loop per OS thread, which all green threads
  share.
- Everything that reaches another namespace through pyroute2 (``NetNS``,
  ``IPRoute(netns=...)``, ``pyroute2.netns.create``) forks a helper and waits
  for it with ``select.poll``, which the green ``select`` module does not
  have: ``AttributeError``.

What novanet does: the linux layer never uses pyroute2's forking helpers (it
switches a thread into the namespace just long enough to create a socket,
see :mod:`novanet.linux.netns`), and every netlink call goes through the
executor hook of :mod:`novanet.linux.netlink`, which :func:`monkey_patch`
points at ``eventlet.tpool``: the call runs in a native thread (its own
asyncio loop, its own namespace switches) while the calling green thread
waits without blocking the hub. ``monkey_patch(select=False)`` would also
make the forking helpers work, but leaves blocking selects all over the
daemon, and the concurrent-use failure above remains.

tpool wakes the hub through a TCP connection on 127.0.0.1: it needs the
loopback interface up in the daemon's network namespace. It is set up here,
at start, because a failed lazy setup makes every later call wait forever.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import TypeVar

from novanet.exception import NovanetError

T = TypeVar("T")


def monkey_patch() -> None:
    """Monkey-patch the standard library and route netlink calls through tpool.

    Idempotent. Raises NovanetError if eventlet's thread pool cannot start.
    """
    import warnings

    # eventlet warns on import that it is deprecated upstream: known (novanet
    # keeps it inside this layer), and not something an operator can act on.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    # The C library's resolver, as nova set it too: eventlet's green resolver
    # imports dnspython (7 MB of every daemon's resident set, measured with
    # bench/memory_bench.py) for lookups novanet does once, at connect time,
    # of names /etc/hosts usually answers. An operator's setting wins.
    os.environ.setdefault("EVENTLET_NO_GREENDNS", "yes")
    import eventlet
    import eventlet.tpool

    from novanet.linux import netlink

    _limit_malloc_arenas()
    eventlet.monkey_patch()
    # netlink calls are short and mostly serialised by our locks: a few native
    # threads are enough, and each one costs memory (its malloc arena, the
    # asyncio loop pyroute2 keeps per thread).
    eventlet.tpool.set_num_threads(TPOOL_THREADS)
    try:
        eventlet.tpool.setup()
    except OSError as exc:
        hint = ""
        if exc.errno in (errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.ECONNREFUSED):
            hint = " (the loopback interface must be up in this network namespace)"
        raise NovanetError(f"cannot start eventlet's thread pool: {exc.strerror}{hint}") from None
    netlink.set_default_executor(run_in_native_thread)


TPOOL_THREADS = 4
_M_ARENA_MAX = -8  # mallopt(3) parameter number


def _limit_malloc_arenas() -> None:
    """At most two glibc malloc arenas (the default is 8 per core, one per thread).

    Native threads (eventlet's pool, pyroute2's loops) would each get an arena
    that stays resident; daemons with many instances must stay small.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).mallopt(_M_ARENA_MAX, 2)
        except (OSError, AttributeError):
            pass


def run_in_native_thread(func: Callable[[], T]) -> T:
    """Run ``func`` in one of eventlet's native threads; green threads keep running."""
    import eventlet.tpool

    result: T = eventlet.tpool.execute(func)
    return result


def is_patched() -> bool:
    """True once the socket module is green (eventlet.monkey_patch ran)."""
    import sys

    patcher = sys.modules.get("eventlet.patcher")
    return bool(patcher is not None and patcher.is_monkey_patched("socket"))
