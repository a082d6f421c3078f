"""A partial index of free fixed IPs, in allocation order (PostgreSQL).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

PostgreSQL sorted every free row of a network on each allocation with only
ix_fixed_ips_pool (it does not treat ``instance_uuid IS NULL`` as an equality
for ordering): 25 ms at 65,000 free rows. The partial index holds only the
rows the pool may hand out, already in least recently used order. SQLite and
MariaDB walk ix_fixed_ips_pool in that order already.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PARTIAL = ("postgresql",)


def _free() -> sa.ColumnElement[bool]:
    # the same expression as novanet.db.models.free_address, so that the
    # planner can prove the allocation query's WHERE implies the index's
    return sa.and_(
        sa.column("instance_uuid").is_(None),
        sa.column("reserved").is_(False),
        sa.column("leased").is_(False),
        sa.column("host").is_(None),
    )


def upgrade() -> None:
    if op.get_context().dialect.name not in PARTIAL:
        return
    op.create_index(
        "ix_fixed_ips_free",
        "fixed_ips",
        ["network_id", "updated_at", "id"],
        postgresql_where=_free(),
    )


def downgrade() -> None:
    if op.get_context().dialect.name not in PARTIAL:
        return
    op.drop_index("ix_fixed_ips_free", table_name="fixed_ips")
