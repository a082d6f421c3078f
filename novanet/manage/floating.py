"""novanet-manage floating: create|list|delete (nova-manage), associate|disassociate (novaclient).

Pools are written here directly, in one transaction (a refused range
writes nothing). Associations go through novanet-network, which writes the
row and the controller's kernel state together and answers once both are
in place: a command that could not reach it changed nothing.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from typing import Any

from novanet.exception import UsageError
from novanet.linux.netlink import check_ifname
from novanet.manage import common, rpcclient
from novanet.manage.context import Context
from novanet.manage.output import emit

COLUMNS = ["address", "pool", "interface", "fixed_address", "instance_uuid", "host"]
# An association waits for the controller's rules and address (and conntrack).
CALL_TIMEOUT = 30
_POOL_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("floating", help="floating IPs: pools and associations")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="add every host address of a range to a pool")
    common.option_or_positional(create, "ip_range", metavar="CIDR", help="CIDR or one address")
    common.option(create, "pool", metavar="NAME", help="default: default_floating_pool")
    common.option(create, "interface", metavar="IF", help="default: public_interface")
    create.set_defaults(func=create_cmd)
    listing = actions.add_parser("list", help="list floating IPs and what they map onto")
    common.option(listing, "pool", metavar="NAME", help="only this pool")
    common.add_format(listing)
    listing.set_defaults(func=list_cmd)
    delete = actions.add_parser("delete", help="remove a range's addresses (none associated)")
    common.option_or_positional(delete, "ip_range", metavar="CIDR", help="CIDR or one address")
    delete.set_defaults(func=delete_cmd)
    associate = actions.add_parser("associate", help="map ADDRESS onto INSTANCE's fixed IP")
    associate.add_argument("address", metavar="ADDRESS")
    associate.add_argument("ref", metavar="INSTANCE", help="id, uuid or name")
    associate.add_argument(
        "--force", action="store_true", help="take ADDRESS from the instance that has it"
    )
    associate.set_defaults(func=associate_cmd)
    disassociate = actions.add_parser("disassociate", help="unmap ADDRESS")
    disassociate.add_argument("address", metavar="ADDRESS")
    disassociate.set_defaults(func=disassociate_cmd)


def check_address(text: str, flag: str = "ADDRESS") -> str:
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not an IPv4 address") from None


def _reserved(ctx: Context) -> list[tuple[str, str]]:
    """The controller's own addresses: never a floating IP (and never a /32 we remove)."""
    conf = ctx.conf
    return [
        ("my_ip", conf.my_ip),
        ("routing_source_ip", conf.routing_source_ip),
        ("metadata_host", conf.metadata_host),
    ]


def create_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import floating

    ip_range = common.pick(args, "ip_range")
    common.require(ip_range, "--ip_range")
    floating.range_hosts(ip_range or "")  # checked before the database is opened
    pool = args.pool if args.pool is not None else ctx.conf.default_floating_pool
    if not _POOL_RE.match(pool):
        raise UsageError(f"--pool {pool!r}: letters, digits and _.:- only")
    interface = args.interface if args.interface is not None else ctx.conf.public_interface
    try:
        check_ifname(interface)
    except ValueError as exc:
        raise UsageError(f"--interface: {exc}") from None
    added = floating.create_range(ctx.database(), ip_range or "", pool, interface, _reserved(ctx))
    ctx.out.write(
        f"created {len(added)} floating IP(s) in pool {pool} on {interface}: "
        f"{added[0]} - {added[-1]}\n"
    )
    return 0


def list_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import floating

    rows = [
        [r.address, r.pool, r.interface, r.fixed_address, r.instance_uuid, r.host]
        for r in floating.list_floating(ctx.database(), args.pool)
    ]
    emit(ctx.out, COLUMNS, rows, common.fmt(args))
    return 0


def delete_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import floating

    ip_range = common.pick(args, "ip_range")
    common.require(ip_range, "--ip_range")
    floating.range_hosts(ip_range or "")
    count = floating.delete_range(ctx.database(), ip_range or "")
    ctx.out.write(f"deleted {count} floating IP(s) of {(ip_range or '').strip()}\n")
    return 0


def associate_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import floating, instances

    address = check_address(args.address)
    db = ctx.database()
    inst = instances.find_instance(db, args.ref, ctx.conf.instance_name_template)
    floating.get_floating(db, address)  # in no pool: refused here, without the daemon
    with rpcclient.network_api(ctx.conf, CALL_TIMEOUT) as api:
        done = api.associate_floating_ip(address=address, instance_uuid=inst.uuid, force=args.force)
    name = ctx.conf.instance_name_template % inst.id
    ctx.out.write(
        f"floating IP {address} associated with instance {name} ({inst.display_name}): "
        f"{done['fixed_address']}{'' if done.get('changed', True) else ' (already)'}\n"
    )
    return 0


def disassociate_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import floating

    address = check_address(args.address)
    floating.get_floating(ctx.database(), address)
    with rpcclient.network_api(ctx.conf, CALL_TIMEOUT) as api:
        done = api.disassociate_floating_ip(address=address)
    ctx.out.write(f"floating IP {address} disassociated from {done['fixed_address']}\n")
    return 0


def floating_field(created: dict[str, Any]) -> list[tuple[str, Any]]:
    """``instance create``'s floating_ip line, when it got one."""
    addresses = created.get("floating_ips") or []
    return [("floating_ip", ", ".join(addresses))] if addresses else []
