"""novanet-manage secgroup ... and instance add-secgroup / remove-secgroup (novaclient's verbs).

A change is checked and written in one database transaction (a refused
command writes nothing), then novanet-network is asked to tell the compute
hosts concerned, and the command returns once they applied it. Should
novanet-network not answer, the change stays written and the hosts apply it
at their next resync (every 60 s): the command says so and exits 0.
"""

from __future__ import annotations

import argparse
from typing import Any

from novanet import secrules
from novanet.compute.secgroups import set_name
from novanet.exception import NovanetError
from novanet.manage import common, rpcclient
from novanet.manage.context import Context
from novanet.manage.output import emit, emit_record

COLUMNS = ["name", "description", "rules"]
RULE_COLUMNS = ["ip_protocol", "from_port", "to_port", "ip_range", "source_group"]
# A change reaches every host concerned, each within its own timeout.
TELL_TIMEOUT = 30


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("secgroup", help="security groups and their ingress rules")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list security groups with their rules")
    common.add_format(listing)
    listing.set_defaults(func=list_cmd)
    show = actions.add_parser("show", help="a group: rules, members, ipset")
    show.add_argument("group", metavar="GROUP")
    common.add_format(show)
    show.set_defaults(func=show_cmd)
    create = actions.add_parser("create", help="create a group (no rules: admits nothing)")
    create.add_argument("group", metavar="GROUP")
    create.add_argument("--description", metavar="D", help="default: the name")
    create.set_defaults(func=create_cmd)
    delete = actions.add_parser("delete", help="delete an unused group")
    delete.add_argument("group", metavar="GROUP")
    delete.set_defaults(func=delete_cmd)
    for verb, text in (("add", "allow"), ("delete", "stop allowing")):
        rule = actions.add_parser(
            f"{verb}-rule", help=f"{text} IP_PROTO FROM_PORT..TO_PORT from CIDR"
        )
        rule.add_argument("group", metavar="GROUP")
        _rule_args(rule)
        rule.add_argument("cidr", metavar="CIDR")
        rule.set_defaults(func=rule_cmd, add=verb == "add")
        grule = actions.add_parser(f"{verb}-group-rule", help=f"{text} the members of SOURCE_GROUP")
        grule.add_argument("group", metavar="GROUP")
        grule.add_argument("source", metavar="SOURCE_GROUP")
        _rule_args(grule)
        grule.set_defaults(func=rule_cmd, add=verb == "add", cidr=None)


def _rule_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("protocol", metavar="IP_PROTO", help="tcp, udp or icmp")
    parser.add_argument("from_port", metavar="FROM_PORT", help="icmp: the type (-1: any)")
    parser.add_argument("to_port", metavar="TO_PORT", help="icmp: the code (-1: any)")


def register_instance(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for verb, text in (("add", "put INSTANCE in GROUP"), ("remove", "take INSTANCE out of GROUP")):
        action = actions.add_parser(f"{verb}-secgroup", help=text)
        action.add_argument("ref", metavar="INSTANCE")
        action.add_argument("group", metavar="GROUP")
        action.set_defaults(func=membership_cmd, add=verb == "add")


def _rule_fields(row: Any) -> list[Any]:
    rule = row.rule
    return [rule.protocol, rule.from_port, rule.to_port, rule.cidr, row.source_name]


def _rule_text(row: Any) -> str:
    rule = row.rule
    if rule.protocol == "icmp":
        ports = "any" if rule.from_port == -1 else f"type {rule.from_port}"
        ports += f" code {rule.to_port}" if rule.to_port != -1 else ""
    elif rule.from_port == rule.to_port:
        ports = str(rule.from_port)
    else:
        ports = f"{rule.from_port}:{rule.to_port}"
    return f"{rule.protocol} {ports} from {row.source()}"


def _rules_json(group: Any) -> list[dict[str, Any]]:
    return [dict(zip(RULE_COLUMNS, _rule_fields(r), strict=True)) for r in group.rules]


def list_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import secgroups

    groups = secgroups.list_groups(ctx.database())
    fmt = common.fmt(args)
    rows: list[list[Any]] = []
    for group in groups:
        rules: Any = _rules_json(group) if fmt == "json" else len(group.rules)
        rows.append([group.name, group.description, rules])
    emit(ctx.out, COLUMNS, rows, fmt)
    return 0


def show_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import secgroups

    db = ctx.database()
    group = secgroups.get_group(db, args.group)
    members = secgroups.members(db, group.name)
    fmt = common.fmt(args)
    names = [name for _, name in members]
    fields: list[tuple[str, Any]] = [
        ("name", group.name),
        ("description", group.description),
        ("id", group.id),
        ("rules", _rules_json(group) if fmt == "json" else len(group.rules)),
        ("instances", names if fmt == "json" else ", ".join(names) or None),
        # the set of its members on compute hosts whose rules name it as source
        ("ipset", set_name(ctx.conf.iptables_prefix, group.id)),
    ]
    emit_record(ctx.out, fields, fmt)
    if fmt != "json" and group.rules:
        ctx.out.write("\n")
        emit(ctx.out, RULE_COLUMNS, [_rule_fields(r) for r in group.rules])
    return 0


def create_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import secgroups

    secgroups.create_group(ctx.database(), args.group, args.description)
    ctx.out.write(f"created security group {args.group}\n")
    return 0


def delete_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import secgroups

    secgroups.delete_group(ctx.database(), args.group)
    ctx.out.write(f"deleted security group {args.group}\n")
    return 0


def _rule(args: argparse.Namespace) -> secrules.Rule | tuple[secrules.Rule, str]:
    """The rule the arguments give, checked before the database is opened."""
    if args.cidr is not None:
        return secrules.cidr_rule(args.protocol, args.from_port, args.to_port, args.cidr)
    proto, low, high = secrules.check_ports(args.protocol, args.from_port, args.to_port)
    return secrules.Rule(proto, low, high), args.source


def rule_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import secgroups

    rule = _rule(args)
    change = secgroups.add_rule if args.add else secgroups.delete_rule
    group_id = change(ctx.database(), args.group, rule)
    verb = "added to" if args.add else "deleted from"
    ctx.out.write(f"rule {verb} security group {args.group}\n")
    _tell(ctx, rules_changed=[group_id])
    return 0


def membership_cmd(ctx: Context, args: argparse.Namespace) -> int:
    from novanet.db import instances, secgroups

    db = ctx.database()
    inst = instances.find_instance(db, args.ref, ctx.conf.instance_name_template)
    change = secgroups.add_instance if args.add else secgroups.remove_instance
    group_id = change(db, inst.uuid, args.group)
    name = ctx.conf.instance_name_template % inst.id
    where = "added to" if args.add else "removed from"
    ctx.out.write(f"instance {name} ({inst.display_name}) {where} security group {args.group}\n")
    _tell(ctx, members_changed=[group_id], instances=[inst.uuid])
    return 0


def _tell(ctx: Context, **changes: Any) -> None:
    """Have novanet-network tell the hosts concerned; a failure is a note, not an error."""
    try:
        with rpcclient.network_api(ctx.conf, TELL_TIMEOUT) as api:
            result = api.security_groups_changed(**changes) or {}
    except NovanetError as exc:
        first = (str(exc).strip().splitlines() or ["no answer"])[0]
        ctx.out.write(
            f"note: novanet-network was not reached ({first}): the compute hosts apply "
            "the change at their next resync (within 60 s)\n"
        )
        return
    hosts = result.get("hosts") or []
    ctx.out.write(f"applied on: {', '.join(hosts) if hosts else 'no compute host concerned'}\n")
    for note in result.get("notes", []):
        ctx.out.write(f"note: {note}\n")
