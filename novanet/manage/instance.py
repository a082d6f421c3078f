"""novanet-manage instance list | show (create and delete talk to novanet-network)."""

from __future__ import annotations

import argparse
from typing import Any

from novanet.exception import UsageError
from novanet.ipam.macs import normalize_mac
from novanet.manage import common, floating, rpcclient, secgroup
from novanet.manage.context import Context
from novanet.manage.output import emit, emit_record

MAX_USER_DATA = 65536
MAX_PUBLIC_KEY = 16384

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
    register_lifecycle(actions)
    secgroup.register_instance(actions)  # add-secgroup, remove-secgroup


def describe(ctx: Context, inst: Any) -> list[Any]:
    from novanet.db import instances

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
    from novanet.db import instances

    rows = [describe(ctx, i) for i in instances.list_instances(ctx.database(), host=args.host)]
    emit(ctx.out, COLUMNS, rows, common.fmt(args))
    return 0


def show_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import instances

    inst = instances.find_instance(ctx.database(), args.ref, ctx.conf.instance_name_template)
    values = describe(ctx, inst)
    fields = list(zip(COLUMNS, values, strict=True))
    fields += [("hostname", inst.hostname), ("created_at", inst.created_at)]
    from novanet.db import secgroups

    groups = list(secgroups.groups_of(ctx.database(), inst.uuid))
    json = common.fmt(args) == "json"
    fields.append(("security_groups", groups if json else ", ".join(groups) or None))
    from novanet.db import floating as floating_db

    addresses = floating_db.of_instances(ctx.database(), [inst.uuid])[inst.uuid]
    fields.append(("floating_ips", addresses if json else ", ".join(addresses) or None))
    emit_record(ctx.out, fields, common.fmt(args))
    return 0


def register_lifecycle(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    create = actions.add_parser("create", help="create an instance: address, DHCP, VIF and chain")
    common.option(create, "name", metavar="NAME", help="display name (required)")
    common.option(create, "host", metavar="COMPUTE_HOST", help="compute host (required)")
    common.option(create, "vif_type", metavar="tap|netns", choices=["tap", "netns"])
    common.option(
        create, "mac", metavar="MAC", help="the instance's MAC (default: fa:16:3e:xx:xx:xx)"
    )
    common.option(
        create, "user_data", metavar="FILE", help=f"user data (at most {MAX_USER_DATA} bytes)"
    )
    common.option(create, "public_key", metavar="FILE", help="an OpenSSH public key file")
    common.option(
        create,
        "security_group",
        metavar="GROUP",
        action="append",
        help="a security group of the instance (repeatable; default: default)",
    )
    common.option(
        create,
        "floating_ip",
        metavar="ADDRESS",
        nargs="?",
        const="",
        help="associate a floating IP once it runs: ADDRESS, or without it any free "
        "one of default_floating_pool",
    )
    common.add_format(create)
    create.set_defaults(func=create_cmd)
    delete = actions.add_parser("delete", help="delete an instance and everything it had")
    delete.add_argument("ref", metavar="ID|UUID|NAME")
    delete.set_defaults(func=delete_cmd)


def _read_file(path: str | None, flag: str, limit: int) -> bytes | None:
    """The file's bytes, as they are: user data may be binary (gzip'd cloud-config...)."""
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"{flag}: cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise UsageError(f"{flag}: {path} is larger than {limit} bytes")
    return data


def _public_key(path: str | None) -> str | None:
    data = _read_file(path, "--public-key", MAX_PUBLIC_KEY)
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--public-key: {path} is not UTF-8 text") from None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if (
        len(lines) != 1
        or len(lines[0].split()) < 2
        or not lines[0].split()[0].startswith(("ssh-", "ecdsa-", "sk-"))
    ):
        raise UsageError(f"--public-key: {path} is not one OpenSSH public key line")
    return lines[0]


def qemu_hint(devname: str, mac: str) -> str:
    """QEMU's arguments for the persistent tap (it exists already: no script)."""
    return (
        f"-netdev tap,id=net0,ifname={devname},script=no,downscript=no "
        f"-device virtio-net-pci,netdev=net0,mac={mac}"
    )


def libvirt_hint(devname: str, mac: str) -> str:
    """A libvirt <interface> using the existing tap (managed='no': libvirt must not recreate it)."""
    return (
        f"<interface type='ethernet'><mac address='{mac}'/>"
        f"<target dev='{devname}' managed='no'/><model type='virtio'/></interface>"
    )


def create_cmd(ctx: Context, args: argparse.Namespace) -> int:
    common.require(args.name, "--name")
    common.require(args.host, "--host")
    mac = normalize_mac(args.mac) if args.mac else None
    user_data = _read_file(args.user_data, "--user-data", MAX_USER_DATA)
    public_key = _public_key(args.public_key)
    if args.floating_ip:
        args.floating_ip = floating.check_address(args.floating_ip, "--floating-ip")
    vif_type = args.vif_type or ctx.conf.default_vif_type
    timeout = ctx.conf.instance_create_timeout + 10
    with rpcclient.network_api(ctx.conf, timeout) as api:
        created = api.create_instance(
            display_name=args.name,
            host=args.host,
            vif_type=vif_type,
            mac=mac,
            user_data=user_data,
            public_key=public_key,
            security_groups=args.security_group,
            floating_ip=args.floating_ip,
        )
    fields = [
        ("id", created["id"]),
        ("uuid", created["uuid"]),
        ("name", created["name"]),
        ("display_name", created["display_name"]),
        ("host", created["host"]),
        ("address", created["address"]),
        ("mac", created["mac"]),
        ("vif_type", created["vif_type"]),
        ("device", created["devname"]),
    ]
    fields += floating.floating_field(created)
    if created["vif_type"] == "tap" and created["devname"]:
        fields.append(("qemu", qemu_hint(created["devname"], created["mac"])))
        fields.append(("libvirt", libvirt_hint(created["devname"], created["mac"])))
    emit_record(ctx.out, fields, common.fmt(args))
    return 0


def delete_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import instances

    inst = instances.find_instance(ctx.database(), args.ref, ctx.conf.instance_name_template)
    with rpcclient.network_api(ctx.conf, ctx.conf.instance_create_timeout + 10) as api:
        result = api.delete_instance(instance_uuid=inst.uuid)
    ctx.out.write(f"deleted instance {inst.id} ({inst.display_name}, {inst.uuid})\n")
    for note in (result or {}).get("notes", []):
        ctx.out.write(f"note: {note}\n")
    return 0
