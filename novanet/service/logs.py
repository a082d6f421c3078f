"""Daemon logging: one line per record on stderr, for journald.

When stderr is the journal (systemd sets ``JOURNAL_STREAM`` to the device and
inode of the stream it connected), every line starts with the syslog
priority, ``<3>`` for an error, which journald strips and stores as the
entry's priority (``journalctl -p warning`` works); the timestamp and pid are
left out because journald records them. A multi-line record (a traceback)
gets the prefix on every line, since journald reads each line as an entry.
Otherwise (a terminal, a log file) lines carry the time, program and pid.

Records of RPC-driven work carry the request id (``[req-...]``), see
:mod:`novanet.rpc.context`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from novanet.rpc import context

# syslog(3) priorities
PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
QUIET_LIBRARIES = ("oslo_messaging", "amqp", "kombu", "pyroute2", "alembic", "sqlalchemy")


def priority(levelno: int) -> int:
    for level, prio in PRIORITIES.items():  # highest first
        if levelno >= level:
            return prio
    return 7


def stderr_is_journal(environ: dict[str, str] | None = None, stream: TextIO | None = None) -> bool:
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


class RequestIdFilter(logging.Filter):
    """Adds ``request`` (`` [req-...]`` or empty) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = context.current()
        record.request = f" [{rid}]" if rid else ""
        return True


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def formatter(program: str, journal: bool) -> logging.Formatter:
    if journal:
        return JournalFormatter("%(levelname)s %(name)s%(request)s: %(message)s")
    return logging.Formatter(
        f"%(asctime)s {program}[%(process)d] %(levelname)s %(name)s%(request)s: %(message)s"
    )


def setup(program: str, debug: bool = False, journal: bool | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter(program, stderr_is_journal() if journal is None else journal))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_debug(debug)
    # Library chatter that says nothing an operator can act on.
    for noisy in QUIET_LIBRARIES:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)


def set_debug(debug: bool) -> None:
    """The root level (SIGHUP changes it at run time)."""
    logging.getLogger().setLevel(logging.DEBUG if debug else logging.INFO)


def error_line(program: str, message: str, journal: bool | None = None) -> str:
    """The one line a program writes when it cannot start (with its priority for journald)."""
    prefix = "<3>" if (stderr_is_journal() if journal is None else journal) else ""
    return f"{prefix}{program}: error: {message}\n"
