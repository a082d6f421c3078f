"""Migrations upgrade and downgrade cleanly, and match the models, on every backend."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from novanet.db import migration, schema
from novanet.db.api import Database
from novanet.db.models import Base

TABLES = {"networks", "fixed_ips", "virtual_interfaces", "instances", "services"}


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
