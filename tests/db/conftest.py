"""Database backends for tests/db: SQLite, MariaDB and PostgreSQL.

Each test session creates its own database on each server (named after the
pid) and drops it at the end; tables are emptied between tests. The servers
are the ones CI has on 127.0.0.1; NOVANET_TEST_BACKENDS=sqlite limits the
run (a missing server is an error, not a skip, unless it is left out there).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from novanet.db import migration
from novanet.db.api import Database
from novanet.db.models import Base

BACKENDS = [
    b.strip()
    for b in os.environ.get("NOVANET_TEST_BACKENDS", "sqlite,mariadb,postgresql").split(",")
    if b.strip()
]
SERVER_URLS = {
    "mariadb": os.environ.get("NOVANET_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306"),
    "postgresql": os.environ.get(
        "NOVANET_TEST_POSTGRESQL", "postgresql+psycopg://postgres@127.0.0.1:5432"
    ),
}


class Backend:
    """A throwaway database on one server."""

    def __init__(self, kind: str, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.kind = kind
        self.name = f"novanet_test_{os.getpid()}"
        if kind == "sqlite":
            path = tmp_path_factory.mktemp("sqlite") / "novanet.sqlite"
            self.url = f"sqlite:///{path}"
            self._admin: sa.Engine | None = None
            return
        server = SERVER_URLS[kind]
        admin_db = "/test" if kind == "mariadb" else "/postgres"
        self._admin = sa.create_engine(server + admin_db, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.name}")
            conn.exec_driver_sql(f"CREATE DATABASE {self.name}")
        self.url = f"{server}/{self.name}"

    def fresh_url(self, suffix: str) -> str:
        """Another empty database on the same server (for migration tests)."""
        if self.kind == "sqlite":
            return self.url.replace("novanet.sqlite", f"novanet_{suffix}.sqlite")
        assert self._admin is not None
        name = f"{self.name}_{suffix}"
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        self._extra = getattr(self, "_extra", []) + [name]
        return f"{SERVER_URLS[self.kind]}/{name}"

    def drop(self) -> None:
        if self._admin is None:
            return
        with self._admin.connect() as conn:
            for name in [self.name, *getattr(self, "_extra", [])]:
                if self.kind == "postgresql":
                    conn.exec_driver_sql(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                    )
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        self._admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    made = Backend(request.param, tmp_path_factory)
    db = Database(made.url)
    migration.upgrade(db.engine)
    db.dispose()
    try:
        yield made
    finally:
        made.drop()


@pytest.fixture
def db(backend: Backend) -> Iterator[Database]:
    """A migrated, empty database on each backend."""
    database = Database(backend.url)
    try:
        yield database
    finally:
        with database.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
        database.dispose()
