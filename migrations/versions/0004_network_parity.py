"""nova-manage's network fields: project and priority; several networks on one bridge.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

``network create --num_networks N`` puts all N networks on one bridge, as
nova did, so ``networks.bridge`` is no longer unique. ``project_id``
(``network create --project_id``, ``network modify --project``) and
``priority`` (``--priority``: the order in which networks hand out
addresses) are nova's columns.

The unique constraint on ``bridge`` was created unnamed, so each backend
named it its own way (MariaDB ``bridge``, PostgreSQL ``networks_bridge_key``,
SQLite none at all): it is found by reflection, and on SQLite the table is
rebuilt from an explicit definition.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _ts() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _networks(bridge_unique: bool, parity: bool) -> sa.Table:
    """The networks table as SQLite must be rebuilt (a copy of 0001's, changed)."""
    columns = [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("cidr", sa.String(43), nullable=False, unique=True),
        sa.Column("netmask", sa.String(39), nullable=False),
        sa.Column("gateway", sa.String(39), nullable=False),
        sa.Column("broadcast", sa.String(39), nullable=False),
        sa.Column("dhcp_server", sa.String(39), nullable=False),
        sa.Column("dhcp_start", sa.String(39), nullable=False),
        sa.Column("dns1", sa.String(39)),
        sa.Column("dns2", sa.String(39)),
        sa.Column("bridge", sa.String(15), nullable=False, unique=bridge_unique),
        sa.Column("bridge_interface", sa.String(15)),
        sa.Column("multi_host", sa.Boolean, nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
    ]
    if parity:
        columns += [sa.Column("project_id", sa.String(255)), sa.Column("priority", sa.Integer)]
    return sa.Table("networks", sa.MetaData(), *columns)


def _bridge_unique_name() -> str | None:
    inspector = sa.inspect(op.get_bind())
    for constraint in inspector.get_unique_constraints("networks"):
        if constraint["column_names"] == ["bridge"]:
            return constraint["name"]
    for index in inspector.get_indexes("networks"):
        if index["unique"] and index["column_names"] == ["bridge"]:
            return index["name"]
    return None


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        # The copy is made from this definition, not from reflection: that
        # is what leaves the unnamed constraint behind.
        with op.batch_alter_table(
            "networks", recreate="always", copy_from=_networks(bridge_unique=False, parity=False)
        ) as batch:
            batch.add_column(sa.Column("project_id", sa.String(255)))
            batch.add_column(sa.Column("priority", sa.Integer))
        return
    op.add_column("networks", sa.Column("project_id", sa.String(255)))
    op.add_column("networks", sa.Column("priority", sa.Integer))
    name = _bridge_unique_name()
    if name is not None:
        op.drop_constraint(name, "networks", type_="unique")


def downgrade() -> None:
    # Fails (unique violation) while two networks share a bridge: delete or
    # move them first; 0002's code cannot serve them.
    if op.get_context().dialect.name == "sqlite":
        with op.batch_alter_table(
            "networks", recreate="always", copy_from=_networks(bridge_unique=True, parity=True)
        ) as batch:
            batch.drop_column("priority")
            batch.drop_column("project_id")
        return
    # MariaDB's DDL is not transactional: a downgrade that failed further
    # down (0003 refuses binary user data) leaves this step done while the
    # version stays 0004, and the next attempt runs it again: idempotent.
    if _bridge_unique_name() is None:
        op.create_unique_constraint("networks_bridge_key", "networks", ["bridge"])
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("networks")}
    for column in ("priority", "project_id"):
        if column in present:
            op.drop_column("networks", column)
