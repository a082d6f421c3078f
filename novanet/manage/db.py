"""novanet-manage db sync | db version."""

from __future__ import annotations

import argparse

from novanet.manage.context import Context


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("db", help="database schema")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sync = actions.add_parser("sync", help="create or upgrade the schema to this release's")
    sync.add_argument(
        "--version", dest="revision", default="head", help="target revision (default: head)"
    )
    sync.set_defaults(func=sync_cmd)
    version = actions.add_parser("version", help="print the schema revision of the database")
    version.set_defaults(func=version_cmd)


def sync_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import migration

    db = ctx.database(check_schema=False)
    before = migration.current(db.engine)
    migration.sync(db.engine, args.revision)
    after = migration.current(db.engine)
    ctx.out.write(f"database at revision {after} (was {before or 'empty'})\n")
    return 0


def version_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import migration

    db = ctx.database(check_schema=False)
    ctx.out.write(f"{migration.current(db.engine) or 'empty (run: novanet-manage db sync)'}\n")
    return 0
