"""novanet-manage service list."""

from __future__ import annotations

import argparse

from novanet.manage import common
from novanet.manage.context import Context
from novanet.manage.output import emit

COLUMNS = ["host", "binary", "topic", "state", "updated_at", "report_count"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("service", help="daemons and their heartbeats")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list services, up or down")
    common.add_format(listing)
    listing.set_defaults(func=list_cmd)


def list_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import services

    down_time = ctx.conf.service_down_time
    rows = [
        [
            s.host,
            s.binary,
            s.topic,
            "up" if s.is_up(down_time) else "down",
            s.updated_at,
            s.report_count,
        ]
        for s in services.list_services(ctx.database())
    ]
    emit(ctx.out, COLUMNS, rows, common.fmt(args))
    return 0
