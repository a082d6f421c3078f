"""novanet-manage network create | list | delete | modify."""

from __future__ import annotations

import argparse
from typing import Any

from novanet.manage import common, rpcclient
from novanet.manage.context import Context
from novanet.manage.output import emit
from novanet.manage.progress import Progress

COLUMNS = [
    "id",
    "label",
    "cidr",
    "gateway",
    "dhcp_start",
    "dns1",
    "dns2",
    "bridge",
    "bridge_interface",
    "uuid",
]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("network", help="fixed networks")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser("create", help="create network(s) and their fixed IPs")
    common.option(create, "label", metavar="L", help="network label (required)")
    common.option(
        create,
        "fixed_range_v4",
        metavar="CIDR",
        help="IPv4 range (default: the fixed_range option, if set)",
    )
    common.option(create, "bridge", metavar="BR", help="bridge (default: flat_network_bridge)")
    common.option(create, "bridge_interface", metavar="IF", help="interface enslaved to the bridge")
    common.option(create, "num_networks", metavar="N", type=common.positive_int)
    common.option(create, "network_size", metavar="N", type=common.positive_int)
    common.option(create, "gateway", metavar="IP")
    common.option(create, "dns1", metavar="IP")
    common.option(create, "dns2", metavar="IP")
    common.option(create, "fixed_cidr", metavar="CIDR", help="restrict handed-out addresses")
    common.option(create, "multi_host", metavar="T|F", type=common.parse_bool, default=None)
    common.add_format(create)
    create.set_defaults(func=create_cmd)

    listing = actions.add_parser("list", help="list networks")
    common.add_format(listing)
    listing.set_defaults(func=list_cmd)

    delete = actions.add_parser("delete", help="delete a network without addresses in use")
    common.option(delete, "fixed_range", metavar="CIDR")
    common.option(delete, "uuid", metavar="UUID")
    delete.set_defaults(func=delete_cmd)

    modify = actions.add_parser("modify", help="change label, DNS servers or bridge interface")
    common.option(modify, "fixed_range", metavar="CIDR")
    common.option(modify, "uuid", metavar="UUID")
    common.option(modify, "label", metavar="L")
    common.option(modify, "dns1", metavar="IP", help="'' clears it")
    common.option(modify, "dns2", metavar="IP", help="'' clears it")
    common.option(modify, "bridge_interface", metavar="IF", help="'' clears it")
    common.add_format(modify)
    modify.set_defaults(func=modify_cmd)


def _rows(nets: list[Any]) -> list[list[object]]:
    return [[getattr(n, c) for c in COLUMNS] for n in nets]


def create_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.ipam import networks, plan

    conf = ctx.conf
    common.require(args.label, "--label")
    cidr = args.fixed_range_v4 or conf.fixed_range
    common.require(cidr, "--fixed_range_v4")
    bridge = args.bridge or conf.flat_network_bridge
    common.require(bridge, "--bridge")
    plans = plan.plan_networks(
        label=args.label,
        fixed_range_v4=cidr,
        bridge=bridge,
        bridge_interface=args.bridge_interface,
        num_networks=args.num_networks or conf.num_networks,
        network_size=args.network_size or conf.network_size,
        gateway=args.gateway,
        dns1=args.dns1 if args.dns1 is not None else conf.flat_network_dns,
        dns2=args.dns2,
        fixed_cidr=args.fixed_cidr,
        multi_host=args.multi_host if args.multi_host is not None else conf.multi_host,
        max_network_size=conf.max_network_size,
    )
    with Progress(f"network create {', '.join(str(p.cidr) for p in plans)}") as progress:
        created = networks.create_networks(ctx.database(), plans, progress=progress.update)
    emit(ctx.out, COLUMNS, _rows(created), common.fmt(args))
    rpcclient.notify_networks_changed(ctx.conf)
    return 0


def list_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.ipam import networks

    emit(ctx.out, COLUMNS, _rows(networks.list_networks(ctx.database())), common.fmt(args))
    return 0


def delete_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.ipam import networks

    db = ctx.database()
    net = networks.find_network(db, cidr=args.fixed_range, uuid=args.uuid)
    networks.delete_network(db, net)
    ctx.out.write(f"deleted network {net.cidr} ({net.uuid})\n")
    rpcclient.notify_networks_changed(ctx.conf)
    return 0


def modify_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.ipam import networks

    db = ctx.database()
    net = networks.find_network(db, cidr=args.fixed_range, uuid=args.uuid)
    changes = {key: getattr(args, key) for key in networks.MODIFIABLE}
    updated = networks.modify_network(db, net, changes)
    emit(ctx.out, COLUMNS, _rows([updated]), common.fmt(args))
    rpcclient.notify_networks_changed(ctx.conf)
    return 0
