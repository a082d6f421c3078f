"""instances.user_data holds bytes: user data is served exactly as given, binary or not.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

nova accepted any user data (a gzip'd cloud-config, a binary blob); novanet
refused whatever was not UTF-8 text. The column becomes binary on every
backend (SQLite BLOB, MariaDB MEDIUMBLOB: 64 KiB of user data does not fit a
BLOB's 65,535 bytes, PostgreSQL BYTEA). Existing text is kept as its UTF-8
bytes. A downgrade converts back and refuses, naming the instances, when
some user data is not UTF-8 text (a text column cannot hold it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TEXT_BYTES = 65535


def _binary() -> sa.types.TypeEngine:
    return sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.alter_column(
            "instances",
            "user_data",
            type_=sa.LargeBinary(),
            existing_type=sa.Text(),
            postgresql_using="convert_to(user_data, 'UTF8')",
        )
    elif dialect == "sqlite":
        with op.batch_alter_table("instances") as batch:
            batch.alter_column("user_data", type_=sa.LargeBinary(), existing_type=sa.Text())
        # SQLite keeps a value's storage class across the type change: the
        # copied rows are still text, which the BLOB column would hand back as str.
        op.execute(
            "UPDATE instances SET user_data = CAST(user_data AS BLOB) "
            "WHERE typeof(user_data) = 'text'"
        )
    else:
        # MariaDB/MySQL: TEXT (utf8mb4) to MEDIUMBLOB keeps the bytes, i.e. UTF-8.
        op.alter_column("instances", "user_data", type_=_binary(), existing_type=sa.Text())


def _refuse_binary() -> None:
    instances = sa.table("instances", sa.column("id"), sa.column("user_data", sa.LargeBinary()))
    rows = op.get_bind().execute(
        sa.select(instances.c.id, instances.c.user_data).where(instances.c.user_data.is_not(None))
    )
    # MariaDB's TEXT of 0002 stops at 65,535 bytes (novanet accepts 65,536).
    limit = TEXT_BYTES if op.get_context().dialect.name in ("mysql", "mariadb") else None
    refused = []
    for instance_id, data in rows:
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            refused.append(str(instance_id))
            continue
        if limit is not None and len(data) > limit:
            refused.append(str(instance_id))
    if refused:
        raise RuntimeError(
            "cannot downgrade below 0003: the user data of instance(s) "
            f"{', '.join(refused)} is not UTF-8 text (or too long for a TEXT column), "
            "which revision 0002 cannot store; delete those instances (or their user "
            "data) first"
        )


def downgrade() -> None:
    _refuse_binary()
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.alter_column(
            "instances",
            "user_data",
            type_=sa.Text(),
            existing_type=sa.LargeBinary(),
            postgresql_using="convert_from(user_data, 'UTF8')",
        )
    elif dialect == "sqlite":
        op.execute(
            "UPDATE instances SET user_data = CAST(user_data AS TEXT) "
            "WHERE typeof(user_data) = 'blob'"
        )
        with op.batch_alter_table("instances") as batch:
            batch.alter_column("user_data", type_=sa.Text(), existing_type=sa.LargeBinary())
    else:
        op.alter_column("instances", "user_data", type_=sa.Text(), existing_type=_binary())
