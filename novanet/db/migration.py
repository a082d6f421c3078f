"""Schema migrations (alembic) behind `novanet-manage db sync` and `db version`."""

from __future__ import annotations

import os
import sys
import sysconfig

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from novanet.exception import NovanetError


def migrations_dir() -> str:
    """The alembic script directory: the checkout's migrations/ or the installed copy."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [
        os.path.join(here, "..", "..", "migrations"),  # source checkout / editable install
        os.path.join(sysconfig.get_path("data"), "share", "novanet", "migrations"),
        os.path.join(sys.prefix, "share", "novanet", "migrations"),
    ]
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "env.py")):
            return os.path.normpath(candidate)
    raise NovanetError("cannot find novanet's migrations directory (broken installation?)")


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", migrations_dir())
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def head() -> str:
    script = ScriptDirectory(migrations_dir())
    current_head = script.get_current_head()
    assert current_head is not None
    return current_head


def current(engine: Engine) -> str | None:
    """The revision the database is at, or None if it was never synced."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = _config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = _config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def sync(engine: Engine, revision: str = "head") -> None:
    """Move the schema to ``revision``: upgrade, or downgrade if it is behind."""
    script = ScriptDirectory(migrations_dir())
    try:
        target = script.get_revision(revision) if revision not in ("head", "base") else None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for unknown ids
        raise NovanetError(f"unknown schema revision {revision!r}") from None
    at = current(engine)
    if revision == "base" or (
        target is not None
        and at is not None
        and target.revision != at
        and target.revision in {r.revision for r in script.iterate_revisions(at, "base")}
    ):
        downgrade(engine, revision)
    else:
        upgrade(engine, revision)
