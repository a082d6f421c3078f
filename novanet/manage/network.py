"""novanet-manage network create | list | delete | modify, verb by verb as nova-manage's.

nova-manage (nova/cmd/manage.py, NetworkCommands) is the reference for the
flags, the positional spellings (nova passed any extra words to the method
in order: ``network modify 10.0.0.0/24 --host h``, ``network delete
10.0.0.0/24``) and the ``list`` columns; what novanet does differently, and
why, is listed in the README.
"""

from __future__ import annotations

import argparse
from typing import Any

from novanet.exception import UsageError
from novanet.manage import common, rpcclient
from novanet.manage.context import Context
from novanet.manage.output import emit
from novanet.manage.progress import Progress

# nova-manage network list's columns, then novanet's own (shown by --format json).
COLUMNS = ["id", "IPv4", "IPv6", "start address", "DNS1", "DNS2", "VlanID", "project", "uuid"]
EXTRA = ["label", "gateway", "bridge", "bridge_interface", "host", "priority"]

# nova-manage flags of other managers or IPv6: refused by name instead of "unrecognized".
UNSUPPORTED = {
    "vlan": "VLAN networks are VlanManager's; novanet runs FlatDHCP",
    "vlan_start": "VLAN networks are VlanManager's; novanet runs FlatDHCP",
    "vpn": "cloudpipe VPNs are VlanManager's; novanet runs FlatDHCP",
    "fixed_range_v6": "novanet's networks are IPv4 only",
    "gateway_v6": "novanet's networks are IPv4 only",
}


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
    common.option(create, "num_networks", metavar="N", type=common.positive_int)
    common.option(create, "network_size", metavar="N", type=common.positive_int)
    common.option(create, "bridge", metavar="BR", help="bridge (default: flat_network_bridge)")
    common.option(create, "bridge_interface", metavar="IF", help="interface enslaved to the bridge")
    common.option(create, "gateway", metavar="IP")
    common.option(create, "dns1", metavar="IP")
    common.option(create, "dns2", metavar="IP")
    common.option(create, "fixed_cidr", metavar="CIDR", help="restrict handed-out addresses")
    common.option(create, "allowed_start", metavar="IP", help="first address handed out")
    common.option(create, "allowed_end", metavar="IP", help="last address handed out")
    common.option(create, "multi_host", metavar="T|F", type=common.parse_bool, default=None)
    common.option(create, "uuid", metavar="UUID", help="the network's uuid (default: a new one)")
    common.option(create, "project_id", metavar="PROJECT", help="project owning the network")
    common.option(
        create, "priority", metavar="N", type=int, help="lower first when handing out addresses"
    )
    for name in UNSUPPORTED:
        common.option(create, name, help=argparse.SUPPRESS)
    common.add_format(create)
    create.set_defaults(func=create_cmd)

    listing = actions.add_parser("list", help="list networks (nova-manage's columns)")
    common.add_format(listing)
    listing.set_defaults(func=list_cmd)

    delete = actions.add_parser("delete", help="delete a network without addresses in use")
    common.option_or_positional(delete, "fixed_range", metavar="CIDR")
    common.option(delete, "uuid", metavar="UUID")
    delete.set_defaults(func=delete_cmd)

    modify = actions.add_parser("modify", help="associate a network with a project or host, ...")
    common.option_or_positional(modify, "fixed_range", metavar="CIDR")
    common.option(modify, "uuid", metavar="UUID")
    common.option(modify, "project", metavar="PROJECT", help="associate with a project")
    common.option(modify, "host", metavar="HOST", help="associate with a network host")
    modify.add_argument("--disassociate-project", "--disassociate_project", action="store_true")
    modify.add_argument("--disassociate-host", "--disassociate_host", action="store_true")
    common.option(modify, "label", metavar="L")
    common.option(modify, "dns1", metavar="IP", help="'' clears it")
    common.option(modify, "dns2", metavar="IP", help="'' clears it")
    common.option(modify, "bridge_interface", metavar="IF", help="'' clears it")
    common.option(modify, "priority", metavar="N", type=int)
    common.add_format(modify)
    modify.set_defaults(func=modify_cmd)


def _rows(nets: list[Any], fmt: str) -> tuple[list[str], list[list[object]]]:
    columns = COLUMNS + (EXTRA if fmt == "json" else [])
    rows = []
    for n in nets:
        nova = [n.id, n.cidr, None, n.dhcp_start, n.dns1, n.dns2, None, n.project_id, n.uuid]
        rows.append(nova + [getattr(n, c) for c in EXTRA] if fmt == "json" else nova)
    return columns, rows


def _emit(ctx: Context, args: argparse.Namespace, nets: list[Any]) -> None:
    fmt = common.fmt(args)
    emit(ctx.out, *_rows(nets, fmt), fmt)


def create_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.ipam import networks, plan

    for name, reason in UNSUPPORTED.items():
        if getattr(args, name) is not None:
            raise UsageError(f"--{name} is not supported: {reason}")
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
        allowed_start=args.allowed_start,
        allowed_end=args.allowed_end,
        project_id=args.project_id,
        priority=args.priority,
        uuid=args.uuid,
        max_network_size=conf.max_network_size,
    )
    with Progress(f"network create {', '.join(str(p.cidr) for p in plans)}") as progress:
        created = networks.create_networks(ctx.database(), plans, progress=progress.update)
    _emit(ctx, args, created)
    rpcclient.notify_networks_changed(ctx.conf)
    return 0


def list_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.ipam import networks

    _emit(ctx, args, networks.list_networks(ctx.database()))
    return 0


def delete_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.ipam import networks

    db = ctx.database()
    net = networks.find_network(db, cidr=common.pick(args, "fixed_range"), uuid=args.uuid)
    networks.delete_network(db, net)
    ctx.out.write(f"deleted network {net.cidr} ({net.uuid})\n")
    rpcclient.notify_networks_changed(ctx.conf)
    return 0


def modify_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.ipam import networks

    if (args.disassociate_project or args.disassociate_host) and (args.project or args.host):
        # nova-manage: a value given by mistake to a --disassociate-X flag would
        # otherwise be read as the project or host; it asked for two commands.
        raise UsageError(
            "--disassociate-project/--disassociate-host cannot be combined with "
            "--project/--host: use separate commands"
        )
    db = ctx.database()
    net = networks.find_network(db, cidr=common.pick(args, "fixed_range"), uuid=args.uuid)
    changes: dict[str, Any] = {key: getattr(args, key, None) for key in networks.MODIFIABLE}
    changes["project_id"] = "" if args.disassociate_project else args.project
    changes["host"] = "" if args.disassociate_host else args.host
    updated = networks.modify_network(db, net, changes)
    _emit(ctx, args, [updated])
    rpcclient.notify_networks_changed(ctx.conf)
    return 0
