"""What a novanet-manage command gets: configuration, database, output."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from oslo_config import cfg

if TYPE_CHECKING:
    from novanet.db.api import Database


class Context:
    def __init__(self, conf: cfg.ConfigOpts, out: TextIO | None = None) -> None:
        self.conf = conf
        self.out = out or sys.stdout
        self._db: Database | None = None

    def database(self, *, check_schema: bool = True) -> Database:
        if self._db is None:
            # SQLAlchemy is imported only by commands that use the database:
            # `instance create` talks to novanet-network and starts faster.
            from novanet.db import schema
            from novanet.db.api import Database

            self._db = Database.from_conf(self.conf)
            if check_schema:
                schema.check_current(self._db.engine)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()
