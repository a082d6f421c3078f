"""nova-network's security groups: groups, ingress rules, instance membership.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

The tables keep nova's names (``security_groups``,
``security_group_rules`` with ``parent_group_id``/``group_id``,
``security_group_instance_association``). A group's own rules go with it
(ON DELETE CASCADE); a group that is some rule's source, or has members,
cannot be deleted (RESTRICT, and the code says which). Membership goes with
the instance row (CASCADE on ``instances.uuid``).

The group ``default`` is created here: it always exists (the code creates
it again on demand, should someone remove the row by hand).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _ts() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    groups = op.create_table(
        "security_groups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.UniqueConstraint("name", name="uq_security_groups_name"),
    )
    op.create_table(
        "security_group_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "parent_group_id",
            sa.Integer,
            sa.ForeignKey("security_groups.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("protocol", sa.String(5), nullable=False),
        sa.Column("from_port", sa.Integer, nullable=False),
        sa.Column("to_port", sa.Integer, nullable=False),
        sa.Column("cidr", sa.String(43)),
        sa.Column("group_id", sa.Integer, sa.ForeignKey("security_groups.id")),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Index("ix_security_group_rules_parent", "parent_group_id"),
        sa.Index("ix_security_group_rules_group", "group_id"),
    )
    op.create_table(
        "security_group_instance_association",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "security_group_id", sa.Integer, sa.ForeignKey("security_groups.id"), nullable=False
        ),
        sa.Column(
            "instance_uuid",
            sa.String(36),
            sa.ForeignKey("instances.uuid", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", _ts(), nullable=False),
        sa.UniqueConstraint(
            "security_group_id", "instance_uuid", name="uq_security_group_instance"
        ),
        sa.Index("ix_security_group_instance_uuid", "instance_uuid"),
    )
    now = sa.func.now()
    op.execute(
        groups.insert().values(
            name="default", description="default", created_at=now, updated_at=now
        )
    )


def downgrade() -> None:
    op.drop_table("security_group_instance_association")
    op.drop_table("security_group_rules")
    op.drop_table("security_groups")
