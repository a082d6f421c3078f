"""Every program's output may go into a pipe that closes early (``| head -1``).

A Unix filter whose reader went away dies of SIGPIPE without a word and the
shell sees 128 + 13. Python ignores SIGPIPE and raises BrokenPipeError
instead, which programs used to report as ``error: [Errno 32] Broken pipe``
(exit 1), followed at interpreter exit by a second traceback when the
buffered rest of stdout could not be flushed either.

SIGPIPE is not simply restored to its default: novanet-manage also writes to
sockets (RabbitMQ), where a vanished peer must be an error, not a silent
death. Only the standard library is imported (novanet-dhcpbridge uses this).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

# What a shell reports for a process killed by SIGPIPE.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def run_filter(main: Callable[[], int | None]) -> int:
    """Run ``main`` and return its exit code, or EXIT_BROKEN_PIPE, quietly, when
    its reader closed stdout (or stderr) before it was done."""
    try:
        code = main()
        # The last lines may still sit in the buffer: flush inside the guard.
        sys.stdout.flush()
        return int(code or 0)
    except BrokenPipeError:
        _silence_stdio()
        return EXIT_BROKEN_PIPE


def _silence_stdio() -> None:
    # Point the closed descriptors at /dev/null so that the interpreter's
    # final flush at exit has somewhere to go instead of raising again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):
            pass
    os.close(devnull)
