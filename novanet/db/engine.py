"""Database engines for SQLite, MariaDB/MySQL and PostgreSQL."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from novanet.exception import UsageError

_DRIVERS = {
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "sqlite": "sqlite",
}


def normalize_url(url: str) -> str:
    """Give legacy URLs (``mysql://``, ``postgresql://``) the drivers novanet ships."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError & co
        raise UsageError(f"invalid database connection URL {url!r}: {exc}") from None
    if "+" not in parsed.drivername:
        if parsed.drivername not in _DRIVERS:
            raise UsageError(
                f"unsupported database {parsed.drivername!r} in connection URL "
                "(novanet supports sqlite, mysql/mariadb and postgresql)"
            )
        parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    return parsed.render_as_string(hide_password=False)


# The drivers are extras (pip install 'novanet[mysql]'): SQLite users need none.
_EXTRAS = {"pymysql": ("PyMySQL", "mysql"), "psycopg": ("psycopg", "postgresql")}


def _create(url: str, **kwargs: Any) -> Engine:
    """create_engine, with a missing DBAPI driver named together with its extra."""
    try:
        return create_engine(url, **kwargs)
    except ImportError as exc:
        driver = make_url(url).get_driver_name()
        package, extra = _EXTRAS.get(driver, (driver, None))
        hint = f": pip install 'novanet[{extra}]'" if extra else ""
        raise UsageError(
            f"the database driver {package} for {make_url(url).get_backend_name()} "
            f"is not installed ({exc}){hint}"
        ) from None


# The database holds every instance's user data and keys: owner only. SQLite
# gives the -wal and -shm files it creates the mode of the database file.
DB_MODE = 0o600
# Modes a database file may keep: owner read/write, group read (0640).
DB_MODE_ALLOWED = 0o640
# state_path: dnsmasq (as nobody) must pass through it to networks_path,
# nobody may list it.
DB_DIR_MODE = 0o711


def private_sqlite_file(database: str) -> None:
    """Create the SQLite file owner-only, or take group write and others' bits from one.

    Before novanet tightened it, the file (and its -wal/-shm) was created
    0644: any local user could read user data and keys.
    """
    path = os.path.abspath(database)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=DB_DIR_MODE, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, DB_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise UsageError(f"cannot create the database {path}: {exc.strerror}") from None
    else:
        os.close(fd)  # an empty file is an empty SQLite database
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        try:
            mode = os.stat(name).st_mode & 0o7777
            if mode & ~DB_MODE_ALLOWED:
                os.chmod(name, mode & DB_MODE_ALLOWED)
        except FileNotFoundError:
            continue
        except PermissionError:
            continue  # not ours (a read-only user of someone else's file): leave it


def _sqlite_pragmas(busy_timeout: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The dhcp-script, novanet-manage and the daemon share the file:
        # WAL lets readers run during a write, and busy_timeout makes a
        # writer wait for the lock instead of failing at once.
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    return on_connect


def make_engine(url: str, *, busy_timeout: int = 30, echo: bool = False) -> Engine:
    """An engine for ``url`` with the per-backend settings novanet relies on."""
    url = normalize_url(url)
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if parsed.drivername.startswith("sqlite"):
        database = parsed.database
        if database and database != ":memory:":
            private_sqlite_file(database)
        kwargs["connect_args"] = {"timeout": busy_timeout}
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
        # pysqlite's own transaction handling defers BEGIN until the first
        # write, so a read-then-write transaction could read a stale snapshot;
        # emit BEGIN IMMEDIATE ourselves for a real compare-and-swap.
        event.listen(engine, "connect", _disable_pysqlite_begin)
        event.listen(engine, "begin", _begin_immediate)
        return engine
    if parsed.drivername.startswith(("mysql", "mariadb")):
        # READ COMMITTED: a retry after a lost compare-and-swap must see the
        # winner's row, not the snapshot REPEATABLE READ would keep.
        kwargs["isolation_level"] = "READ COMMITTED"
        kwargs["pool_pre_ping"] = True
        kwargs["pool_recycle"] = 3600
        if "charset" not in parsed.query:
            url = parsed.update_query_dict({"charset": "utf8mb4"}).render_as_string(
                hide_password=False
            )
        return _create(url, **kwargs)
    kwargs["pool_pre_ping"] = True
    return _create(url, **kwargs)


def _disable_pysqlite_begin(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _begin_immediate(connection: Any) -> None:
    # Read-only work (lists, the dhcp-script's init) must not queue behind
    # writers: it asks for a deferred BEGIN through an execution option.
    if connection.get_execution_options().get("novanet_readonly"):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def backend_name(engine: Engine) -> str:
    name = engine.dialect.name
    return "mariadb" if name == "mysql" else name
