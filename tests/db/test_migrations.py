"""Migrations upgrade and downgrade cleanly, and match the models, on every backend."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from novanet.db import migration, schema
from novanet.db.api import Database
from novanet.db.models import Base

TABLES = {
    "networks",
    "fixed_ips",
    "virtual_interfaces",
    "instances",
    "services",
    "security_groups",
    "security_group_rules",
    "security_group_instance_association",
}


def test_upgrade_downgrade_upgrade(backend):
    db = Database(backend.fresh_url("mig"))
    try:
        assert migration.current(db.engine) is None
        migration.upgrade(db.engine)
        assert migration.current(db.engine) == migration.head()
        assert set(sa.inspect(db.engine).get_table_names()) >= TABLES
        migration.downgrade(db.engine, "base")
        assert migration.current(db.engine) is None
        assert not TABLES & set(sa.inspect(db.engine).get_table_names())
        migration.upgrade(db.engine)
        assert migration.current(db.engine) == migration.head()
    finally:
        db.dispose()


def _for_this_backend(dialect: str):
    """Leave out what the models only create on other backends (Index.ddl_if).

    alembic compares every index of the metadata; ix_fixed_ips_free is a
    partial index that exists on PostgreSQL only.
    """

    def include(obj, name, type_, reflected, compare_to):  # noqa: ARG001 - alembic's hook
        if type_ == "index" and not reflected and name == "ix_fixed_ips_free":
            return dialect == "postgresql"
        return True

    return include


def test_models_match_migrations(db):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"compare_type": True, "include_object": _for_this_backend(conn.dialect.name)},
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_check_current_refuses_unsynced_database(backend):
    db = Database(backend.fresh_url("unsynced"))
    try:
        try:
            schema.check_current(db.engine)
        except Exception as exc:  # noqa: BLE001
            assert "novanet-manage db sync" in str(exc)
        else:
            raise AssertionError("an empty database was accepted")
    finally:
        db.dispose()


def test_schema_head_matches_the_newest_migration():
    assert migration.head() == schema.HEAD


def test_schema_current_agrees_with_alembic(db):
    assert schema.current(db.engine) == migration.current(db.engine) == schema.HEAD


def test_user_data_kept_across_0003_and_binary_refused_by_downgrade(backend):
    """0003 turns instances.user_data into bytes: text survives both ways, binary blocks a downgrade."""
    db = Database(backend.fresh_url("userdata"))
    instances = sa.table(
        "instances", sa.column("id"), sa.column("uuid"), sa.column("display_name"),
        sa.column("hostname"), sa.column("host"), sa.column("vif_type"), sa.column("state"),
        sa.column("user_data"), sa.column("created_at"), sa.column("updated_at"),
    )
    text = "#!/bin/sh\necho héllo ☃\n" * 2000  # 56 KB of non-ASCII text (0002 holds 64 KiB)
    row = {"display_name": "vm", "hostname": "vm", "host": "c1", "vif_type": "tap", "state": "active",
           "created_at": sa.func.now(), "updated_at": sa.func.now()}

    def user_data(uuid):
        with db.engine.connect() as conn:
            return conn.execute(sa.select(instances.c.user_data).where(instances.c.uuid == uuid)).scalar()

    try:
        migration.upgrade(db.engine, "0002")
        with db.engine.begin() as conn:
            conn.execute(instances.insert().values(uuid="a" * 36, user_data=text, **row))
            conn.execute(instances.insert().values(uuid="n" * 36, user_data=None, **row))
        migration.upgrade(db.engine)
        assert bytes(user_data("a" * 36)) == text.encode() and user_data("n" * 36) is None
        blob = bytes(range(256)) * 256  # 64 KiB, not UTF-8: fits MariaDB's MEDIUMBLOB
        with db.engine.begin() as conn:
            conn.execute(instances.insert().values(uuid="b" * 36, user_data=blob, **row))
        assert bytes(user_data("b" * 36)) == blob
        # Later revisions first: MariaDB's DDL is not transactional, so a
        # refused 0003 downgrade must be the only step of the refused command.
        migration.downgrade(db.engine, "0003")
        try:
            migration.downgrade(db.engine, "0002")
        except Exception as exc:  # noqa: BLE001
            assert "not UTF-8 text" in str(exc) and "0002" in str(exc)
        else:
            raise AssertionError("a downgrade dropped binary user data")
        assert migration.current(db.engine) == "0003" and bytes(user_data("b" * 36)) == blob
        with db.engine.begin() as conn:
            conn.execute(instances.delete().where(instances.c.uuid == "b" * 36))
        migration.downgrade(db.engine, "0002")
        assert user_data("a" * 36) == text and user_data("n" * 36) is None
        migration.upgrade(db.engine)
        assert bytes(user_data("a" * 36)) == text.encode()
    finally:
        db.dispose()
