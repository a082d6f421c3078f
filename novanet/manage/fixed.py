"""novanet-manage fixed list | reserve | unreserve."""

from __future__ import annotations

import argparse

from novanet.exception import NotFound, UsageError
from novanet.manage import common
from novanet.manage.context import Context
from novanet.manage.output import emit

COLUMNS = [
    "network",
    "address",
    "mac",
    "hostname",
    "host",
    "reserved",
    "allocated",
    "leased",
    "instance_uuid",
]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("fixed", help="fixed IP addresses")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list fixed IPs")
    common.option_or_positional(
        listing, "host", metavar="HOST", help="only addresses of instances on HOST"
    )
    common.add_format(listing)
    listing.set_defaults(func=list_cmd)
    for name, reserve in (("reserve", True), ("unreserve", False)):
        action = actions.add_parser(name, help=f"{name} an address")
        common.option_or_positional(action, "address", metavar="ADDRESS", help="the fixed IP")
        action.set_defaults(func=reserve_cmd, reserve=reserve)


def list_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.ipam import queries

    rows = queries.list_fixed_ips(ctx.database(), host=common.pick(args, "host"))
    emit(ctx.out, COLUMNS, [[getattr(r, c) for c in COLUMNS] for r in rows], common.fmt(args))
    return 0


def reserve_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.ipam import pool

    given = common.pick(args, "address")
    common.require(given, "--address")
    address = pool.check_address(str(given))
    try:
        pool.set_reserved(ctx.database(), address, args.reserve)
    except NotFound as exc:
        # nova-manage's _set_reserved: "error: ..." and exit code 2 for an
        # address that is in no network.
        raise UsageError(str(exc)) from None
    ctx.out.write(f"{'reserved' if args.reserve else 'unreserved'} {address}\n")
    return 0
