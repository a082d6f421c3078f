"""The Database handle: an engine plus transaction helpers.

Queries use SQLAlchemy Core on the model tables: the allocation and lease
paths run thousands of times per second and the ORM's unit of work buys them
nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from oslo_config import cfg
from sqlalchemy import Connection

from novanet.db.engine import backend_name, make_engine


class Database:
    """One database, shared by the query modules of novanet.db and novanet.ipam."""

    def __init__(self, url: str, *, busy_timeout: int = 30, max_retries: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, busy_timeout=busy_timeout)
        self.max_retries = max_retries
        # monotonic deadline until which fixed-IP allocation spreads over its
        # candidates because this process recently lost a race (ipam.pool)
        self.contention_until = 0.0

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Database:
        return cls(
            conf.database.connection,
            busy_timeout=conf.database.busy_timeout,
            max_retries=conf.database.max_retries,
        )

    @property
    def backend(self) -> str:
        return backend_name(self.engine)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A read-write transaction, committed on success, rolled back on error."""
        with self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def reader(self) -> Iterator[Connection]:
        """A read-only transaction that never waits behind writers on SQLite."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(novanet_readonly=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()
