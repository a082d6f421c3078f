"""The schema revision this code needs, checked without importing alembic.

Daemons check the database at start; importing alembic (and mako) for that
would cost them ~10 MB of memory for the rest of their life. A test keeps
HEAD equal to the newest revision in migrations/.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from novanet.exception import NovanetError

HEAD = "0006"


def current(engine: Engine) -> str | None:
    """The revision recorded in alembic_version, or None (never synced)."""
    if not sa.inspect(engine).has_table("alembic_version"):
        return None
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows[0] if len(rows) == 1 else None


def check_current(engine: Engine) -> None:
    """Refuse to run against a database that is not at the code's schema."""
    try:
        at = current(engine)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise NovanetError(f"cannot read the database schema: {reason}") from None
    if at != HEAD:
        state = "empty" if at is None else f"at revision {at}"
        raise NovanetError(
            f"database schema is {state}, novanet needs {HEAD}: run 'novanet-manage db sync'"
        )
