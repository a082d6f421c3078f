"""novanet-manage instance list | show (create and delete talk to novanet-network)."""

from __future__ import annotations

import argparse
from typing import Any

from novanet.db import instances
from novanet.manage import common
from novanet.manage.context import Context
from novanet.manage.output import emit, emit_record

COLUMNS = [
    "id",
    "name",
    "display_name",
    "uuid",
    "host",
    "state",
    "address",
    "mac",
    "vif_type",
    "device",
]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("instance", help="instances")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list instances")
    common.option(listing, "host", metavar="H", help="only instances on host H")
    common.add_format(listing)
    listing.set_defaults(func=list_cmd)
    show = actions.add_parser("show", help="show one instance")
    show.add_argument("ref", metavar="ID|UUID|NAME")
    common.add_format(show)
    show.set_defaults(func=show_cmd)


def describe(ctx: Context, inst: instances.InstanceRow) -> list[Any]:
    ports = instances.ports_of(ctx.database(), inst.uuid)
    return [
        inst.id,
        ctx.conf.instance_name_template % inst.id,
        inst.display_name,
        inst.uuid,
        inst.host,
        inst.state,
        ", ".join(p.address for p in ports) or None,
        ", ".join(p.mac for p in ports) or None,
        inst.vif_type,
        inst.vif_devname,
    ]


def list_cmd(ctx: Context, args: argparse.Namespace) -> int:
    rows = [describe(ctx, i) for i in instances.list_instances(ctx.database(), host=args.host)]
    emit(ctx.out, COLUMNS, rows, common.fmt(args))
    return 0


def show_cmd(ctx: Context, args: argparse.Namespace) -> int:
    inst = instances.find_instance(ctx.database(), args.ref, ctx.conf.instance_name_template)
    values = describe(ctx, inst)
    fields = list(zip(COLUMNS, values, strict=True))
    fields += [("hostname", inst.hostname), ("created_at", inst.created_at)]
    emit_record(ctx.out, fields, common.fmt(args))
    return 0
