"""Shared pieces of the benchmarks: machine description, throwaway databases, tables."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shutil
import signal
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence

import sqlalchemy as sa

SERVERS = {
    "mariadb": os.environ.get("NOVANET_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306"),
    "postgresql": os.environ.get("NOVANET_TEST_POSTGRESQL", "postgresql+psycopg://postgres@127.0.0.1:5432"),
}


def machine() -> str:
    """One line: date, CPU, cores, kernel, Python."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{datetime.date.today().isoformat()}, {cpu}, {os.cpu_count()} cores, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def tool_version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return (out.stdout or out.stderr).strip().splitlines()[0]


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    """An empty database on ``kind`` (sqlite, mariadb, postgresql); dropped afterwards."""
    name = f"novanet_bench_{os.getpid()}"
    if kind == "sqlite":
        directory = tempfile.mkdtemp(prefix="novanet-bench-")
        try:
            yield f"sqlite:///{directory}/novanet.sqlite"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    admin = sa.create_engine(
        SERVERS[kind] + ("/test" if kind == "mariadb" else "/postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield f"{SERVERS[kind]}/{name}"
    finally:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                )
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def with_sigterm(func: Callable[[], int]) -> int:
    """SIGTERM unwinds like Ctrl-C, so the lab is removed.

    Only in this process: pyroute2 forks a helper to open a socket in a
    namespace and stops it with SIGTERM; a forked helper inherits this
    handler, and unwinding there would run our cleanup (``lab.down()``) in
    the child, under the parent still building the lab.
    """
    owner = os.getpid()

    def interrupt(_sig: int, _frame: object) -> None:
        if os.getpid() != owner:
            os._exit(128 + signal.SIGTERM)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        return func()
    finally:
        signal.signal(signal.SIGTERM, previous)
