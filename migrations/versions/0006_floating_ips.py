"""nova-network's floating IPs: pools of public addresses mapped onto fixed IPs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

The table keeps nova's name and columns (``floating_ips``: ``address``,
``fixed_ip_id``, ``pool``, ``interface``, ``host``, ``auto_assigned``); a
fixed IP that goes (its network deleted) leaves the floating address
unassociated (ON DELETE SET NULL) rather than pointing nowhere.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _ts() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "floating_ips",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("address", sa.String(39), nullable=False),
        sa.Column("fixed_ip_id", sa.Integer, sa.ForeignKey("fixed_ips.id", ondelete="SET NULL")),
        sa.Column("pool", sa.String(255), nullable=False),
        sa.Column("interface", sa.String(15), nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("auto_assigned", sa.Boolean, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.UniqueConstraint("address", name="uq_floating_ips_address"),
        sa.Index("ix_floating_ips_fixed_ip_id", "fixed_ip_id"),
        sa.Index("ix_floating_ips_pool", "pool"),
    )


def downgrade() -> None:
    # MariaDB's DDL is not transactional: a failed downgrade further down reruns this.
    op.execute("DROP TABLE IF EXISTS floating_ips")
