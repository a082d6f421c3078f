"""Initial schema: networks, fixed_ips, virtual_interfaces, instances, services.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "networks",
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
        sa.Column("bridge", sa.String(15), nullable=False, unique=True),
        sa.Column("bridge_interface", sa.String(15)),
        sa.Column("multi_host", sa.Boolean, nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
    )
    op.create_table(
        "fixed_ips",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("address", sa.String(39), nullable=False),
        sa.Column(
            "network_id",
            sa.Integer,
            sa.ForeignKey("networks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("virtual_interface_id", sa.Integer),
        sa.Column("instance_uuid", sa.String(36)),
        sa.Column("allocated", sa.Boolean, nullable=False),
        sa.Column("leased", sa.Boolean, nullable=False),
        sa.Column("reserved", sa.Boolean, nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.UniqueConstraint("address", name="uq_fixed_ips_address"),
    )
    op.create_index(
        "ix_fixed_ips_pool", "fixed_ips", ["network_id", "instance_uuid", "updated_at", "id"]
    )
    op.create_index("ix_fixed_ips_vif", "fixed_ips", ["virtual_interface_id"])
    op.create_table(
        "virtual_interfaces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("address", sa.String(17), nullable=False),
        sa.Column("network_id", sa.Integer, sa.ForeignKey("networks.id", ondelete="SET NULL")),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.UniqueConstraint("address", name="uq_virtual_interfaces_address"),
    )
    op.create_index("ix_virtual_interfaces_instance_uuid", "virtual_interfaces", ["instance_uuid"])
    op.create_table(
        "instances",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("hostname", sa.String(63), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("vif_type", sa.String(16), nullable=False),
        sa.Column("vif_devname", sa.String(15)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("user_data", sa.Text),
        sa.Column("public_key", sa.Text),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_instances_host", "instances", ["host"])
    op.create_table(
        "services",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("binary", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("report_count", sa.Integer, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.UniqueConstraint("host", "binary", name="uq_services_host_binary"),
    )


def downgrade() -> None:
    op.drop_table("services")
    op.drop_index("ix_instances_host", table_name="instances")
    op.drop_table("instances")
    op.drop_index("ix_virtual_interfaces_instance_uuid", table_name="virtual_interfaces")
    op.drop_table("virtual_interfaces")
    # Dropping the table drops its indexes (MariaDB refuses to drop
    # ix_fixed_ips_pool alone: the foreign key on network_id uses it).
    op.drop_table("fixed_ips")
    op.drop_table("networks")
