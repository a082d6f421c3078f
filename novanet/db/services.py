"""Services and their heartbeats (`novanet-manage service list | enable | disable`)."""

from __future__ import annotations

import dataclasses
import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from novanet.db.api import Database
from novanet.db.models import SERVICES, utcnow


@dataclasses.dataclass(frozen=True)
class ServiceRow:
    host: str
    binary: str
    topic: str
    report_count: int
    disabled: bool
    updated_at: datetime.datetime

    def is_up(self, down_time: int, now: datetime.datetime | None = None) -> bool:
        age = ((now or utcnow()) - self.updated_at).total_seconds()
        return age <= down_time


def heartbeat(db: Database, host: str, binary: str, topic: str) -> None:
    """Record that ``binary`` on ``host`` is alive (creates the row the first time)."""
    now = utcnow()
    with db.transaction() as conn:
        updated = conn.execute(
            SERVICES.update()
            .where(SERVICES.c.host == host, SERVICES.c.binary == binary)
            .values(topic=topic, report_count=SERVICES.c.report_count + 1, updated_at=now)
        ).rowcount
        if updated:
            return
        try:
            with conn.begin_nested():
                conn.execute(
                    SERVICES.insert().values(
                        host=host,
                        binary=binary,
                        topic=topic,
                        report_count=1,
                        disabled=False,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            pass  # another process of the same service inserted it first


def list_services(db: Database) -> list[ServiceRow]:
    with db.reader() as conn:
        rows = conn.execute(
            sa.select(
                SERVICES.c.host,
                SERVICES.c.binary,
                SERVICES.c.topic,
                SERVICES.c.report_count,
                SERVICES.c.disabled,
                SERVICES.c.updated_at,
            ).order_by(SERVICES.c.host, SERVICES.c.binary)
        ).all()
    return [ServiceRow(*row) for row in rows]


def set_disabled(db: Database, host: str, binary: str, disabled: bool) -> bool:
    """Enable or disable ``binary`` on ``host``; False when no such service has reported in.

    The heartbeat never touches ``disabled``: a disabled service stays
    disabled across its restarts until an operator enables it again.
    """
    with db.transaction() as conn:
        updated = conn.execute(
            SERVICES.update()
            .where(SERVICES.c.host == host, SERVICES.c.binary == binary)
            .values(disabled=disabled)
        ).rowcount
    return bool(updated)
