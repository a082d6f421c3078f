"""novanet-manage service list | enable | disable (nova-manage's spelling)."""

from __future__ import annotations

import argparse

from novanet.exception import NotFound
from novanet.manage import common
from novanet.manage.context import Context
from novanet.manage.output import emit

COLUMNS = ["host", "binary", "topic", "status", "state", "updated_at", "report_count"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("service", help="daemons, their heartbeats, enable/disable")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list services, up or down, enabled or disabled")
    common.add_format(listing)
    listing.set_defaults(func=list_cmd)
    for name, disabled, text in (
        ("enable", False, "let a compute host take new instances again"),
        ("disable", True, "stop placing new instances on a compute host (running ones stay)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("host", metavar="HOST")
        action.add_argument("binary", metavar="BINARY", help="e.g. novanet-compute")
        action.set_defaults(func=set_cmd, disabled=disabled)


def list_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import services

    down_time = ctx.conf.service_down_time
    rows = [
        [
            s.host,
            s.binary,
            s.topic,
            "disabled" if s.disabled else "enabled",
            "up" if s.is_up(down_time) else "down",
            s.updated_at,
            s.report_count,
        ]
        for s in services.list_services(ctx.database())
    ]
    emit(ctx.out, COLUMNS, rows, common.fmt(args))
    return 0


def set_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import services

    if not services.set_disabled(ctx.database(), args.host, args.binary, args.disabled):
        raise NotFound(
            f"no service {args.binary} on host {args.host} has reported in "
            "(see 'novanet-manage service list')"
        )
    state = "disabled" if args.disabled else "enabled"
    ctx.out.write(f"{args.binary} on {args.host}: {state}\n")
    return 0
