"""Security groups in the database: groups, rules, membership, and what the hosts need.

Every change is one transaction that checks before it writes, so a refused
command (an unknown group, a duplicate rule, a group in use) writes nothing.
Changes lock the group row they change (``FOR UPDATE``; SQLite serialises
writers with ``BEGIN IMMEDIATE``): two operators adding the same rule at
once get one rule and one "already has" error.

The compute hosts' view is computed here too, in a few queries whatever the
number of instances: each instance's rules in the compact form of
:mod:`novanet.secrules`, and the addresses of each source group's members.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from novanet.db.api import Database
from novanet.db.models import (
    INSTANCES,
    SECURITY_GROUP_INSTANCES,
    SECURITY_GROUP_RULES,
    SECURITY_GROUPS,
    utcnow,
)
from novanet.exception import Conflict, NotFound, UsageError
from novanet.secrules import Rule

DEFAULT = "default"
MAX_NAME = 255
G, R, A = SECURITY_GROUPS, SECURITY_GROUP_RULES, SECURITY_GROUP_INSTANCES


@dataclasses.dataclass(frozen=True)
class RuleRow:
    rule: Rule
    source_name: str | None  # the source group's name (group rules)

    def source(self) -> str:
        return f"group {self.source_name}" if self.source_name is not None else str(self.rule.cidr)


@dataclasses.dataclass(frozen=True)
class GroupRow:
    id: int
    name: str
    description: str
    rules: tuple[RuleRow, ...]


def check_name(name: str, what: str = "group name") -> str:
    if not name or not name.strip():
        raise UsageError(f"a {what} must not be empty")
    if len(name) > MAX_NAME:
        raise UsageError(f"a {what} is at most {MAX_NAME} characters long")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise UsageError(f"a {what} must not contain control characters")
    return name


def _ensure_default(conn: Connection) -> None:
    """``default`` always exists: made again if someone removed the row by hand."""
    if conn.execute(sa.select(G.c.id).where(G.c.name == DEFAULT)).first() is None:
        now = utcnow()
        conn.execute(
            G.insert().values(name=DEFAULT, description=DEFAULT, created_at=now, updated_at=now)
        )


def _group_id(conn: Connection, name: str, lock: bool = False) -> int:
    if name == DEFAULT:
        _ensure_default(conn)
    query = sa.select(G.c.id).where(G.c.name == name)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no security group {name!r}")
    return int(row[0])


def _rules(conn: Connection, group_ids: Sequence[int]) -> dict[int, list[RuleRow]]:
    source = G.alias("source")
    rows = conn.execute(
        sa.select(R, source.c.name.label("source_name"))
        .outerjoin(source, source.c.id == R.c.group_id)
        .where(R.c.parent_group_id.in_(group_ids))
    ).all()
    out: dict[int, list[RuleRow]] = defaultdict(list)
    for row in rows:
        rule = Rule(row.protocol, row.from_port, row.to_port, row.cidr, row.group_id)
        out[row.parent_group_id].append(RuleRow(rule, row.source_name))
    for rules in out.values():
        rules.sort(key=lambda r: (r.rule.protocol, r.rule.from_port, r.rule.to_port, r.source()))
    return out


def list_groups(db: Database, names: Iterable[str] | None = None) -> list[GroupRow]:
    with db.transaction() as conn:
        _ensure_default(conn)
        query = sa.select(G).order_by(G.c.name)
        if names is not None:
            query = query.where(G.c.name.in_(list(names)))
        groups = conn.execute(query).all()
        rules = _rules(conn, [g.id for g in groups])
    return [GroupRow(g.id, g.name, g.description, tuple(rules.get(g.id, ()))) for g in groups]


def get_group(db: Database, name: str) -> GroupRow:
    found = list_groups(db, [name])
    if not found:
        raise NotFound(f"no security group {name!r}")
    return found[0]


def members(db: Database, name: str) -> list[tuple[str, str]]:
    """(uuid, display name) of the group's instances."""
    with db.reader() as conn:
        rows = conn.execute(
            sa.select(INSTANCES.c.uuid, INSTANCES.c.display_name)
            .join(A, A.c.instance_uuid == INSTANCES.c.uuid)
            .join(G, G.c.id == A.c.security_group_id)
            .where(G.c.name == name)
            .order_by(INSTANCES.c.id)
        ).all()
    return [(r[0], r[1]) for r in rows]


def create_group(db: Database, name: str, description: str | None = None) -> int:
    check_name(name)
    desc = check_name(description, "description") if description else name
    now = utcnow()
    with db.transaction() as conn:
        _ensure_default(conn)
        if conn.execute(sa.select(G.c.id).where(G.c.name == name)).first() is not None:
            raise Conflict(f"security group {name!r} already exists")
        result = conn.execute(
            G.insert().values(name=name, description=desc, created_at=now, updated_at=now)
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def delete_group(db: Database, name: str) -> None:
    """Refused for ``default``, a group with members, a group some rule grants."""
    if name == DEFAULT:
        raise Conflict("the security group 'default' cannot be deleted")
    with db.transaction() as conn:
        group_id = _group_id(conn, name, lock=True)
        used = conn.execute(
            sa.select(INSTANCES.c.display_name, INSTANCES.c.uuid)
            .join(A, A.c.instance_uuid == INSTANCES.c.uuid)
            .where(A.c.security_group_id == group_id)
            .order_by(INSTANCES.c.id)
        ).all()
        if used:
            who = ", ".join(f"{r[0]} ({r[1]})" for r in used[:10])
            more = f" and {len(used) - 10} more" if len(used) > 10 else ""
            raise Conflict(f"security group {name!r} is used by instance(s) {who}{more}")
        granted = conn.execute(
            sa.select(G.c.name)
            .join(R, R.c.parent_group_id == G.c.id)
            .where(R.c.group_id == group_id, R.c.parent_group_id != group_id)
            .distinct()
            .order_by(G.c.name)
        ).scalars()
        referencing = list(granted)
        if referencing:
            raise Conflict(
                f"security group {name!r} is the source of rules of group(s) "
                f"{', '.join(referencing)}: delete those rules first"
            )
        conn.execute(R.delete().where(R.c.parent_group_id == group_id))
        conn.execute(G.delete().where(G.c.id == group_id))


def _same_rule(rule: Rule) -> sa.ColumnElement[bool]:
    return sa.and_(
        R.c.protocol == rule.protocol,
        R.c.from_port == rule.from_port,
        R.c.to_port == rule.to_port,
        R.c.cidr.is_(None) if rule.cidr is None else R.c.cidr == rule.cidr,
        R.c.group_id.is_(None) if rule.source_group is None else R.c.group_id == rule.source_group,
    )


def _resolve(conn: Connection, rule: Rule | tuple[Rule, str]) -> Rule:
    """A rule whose source group is given by name: (rule without source, name)."""
    if isinstance(rule, Rule):
        return rule
    base, source = rule
    return dataclasses.replace(base, source_group=_group_id(conn, source))


def add_rule(db: Database, group: str, rule: Rule | tuple[Rule, str]) -> int:
    """Add ``rule`` to ``group``; returns the group's id. Conflict for a duplicate."""
    with db.transaction() as conn:
        group_id = _group_id(conn, group, lock=True)
        rule = _resolve(conn, rule)
        taken = sa.select(R.c.id).where(R.c.parent_group_id == group_id, _same_rule(rule))
        if conn.execute(taken).first() is not None:
            raise Conflict(f"security group {group!r} already has this rule")
        conn.execute(
            R.insert().values(
                parent_group_id=group_id,
                protocol=rule.protocol,
                from_port=rule.from_port,
                to_port=rule.to_port,
                cidr=rule.cidr,
                group_id=rule.source_group,
                created_at=utcnow(),
            )
        )
        conn.execute(G.update().where(G.c.id == group_id).values(updated_at=utcnow()))
        return group_id


def delete_rule(db: Database, group: str, rule: Rule | tuple[Rule, str]) -> int:
    """Remove ``rule`` from ``group``; returns the group's id. NotFound if it has no such rule."""
    with db.transaction() as conn:
        group_id = _group_id(conn, group, lock=True)
        rule = _resolve(conn, rule)
        done = conn.execute(R.delete().where(R.c.parent_group_id == group_id, _same_rule(rule)))
        if not done.rowcount:
            raise NotFound(f"security group {group!r} has no such rule")
        conn.execute(G.update().where(G.c.id == group_id).values(updated_at=utcnow()))
        return group_id


def add_instance(db: Database, instance_uuid: str, group: str) -> int:
    with db.transaction() as conn:
        group_id = _group_id(conn, group, lock=True)
        _check_instance(conn, instance_uuid)
        member = sa.select(A.c.id).where(
            A.c.security_group_id == group_id, A.c.instance_uuid == instance_uuid
        )
        if conn.execute(member).first() is not None:
            raise Conflict(f"the instance is already in security group {group!r}")
        conn.execute(
            A.insert().values(
                security_group_id=group_id, instance_uuid=instance_uuid, created_at=utcnow()
            )
        )
        return group_id


def remove_instance(db: Database, instance_uuid: str, group: str) -> int:
    with db.transaction() as conn:
        group_id = _group_id(conn, group, lock=True)
        done = conn.execute(
            A.delete().where(A.c.security_group_id == group_id, A.c.instance_uuid == instance_uuid)
        )
        if not done.rowcount:
            raise NotFound(f"the instance is not in security group {group!r}")
        return group_id


def _check_instance(conn: Connection, instance_uuid: str) -> None:
    if conn.execute(sa.select(INSTANCES.c.id).where(INSTANCES.c.uuid == instance_uuid)).first():
        return
    raise NotFound(f"instance {instance_uuid} does not exist")


def group_ids(db: Database, names: Sequence[str]) -> list[int]:
    """The ids of ``names`` (``default`` made if missing); NotFound names the first unknown."""
    with db.transaction() as conn:
        return [_group_id(conn, name) for name in names]


def join_groups(db: Database, instance_uuid: str, ids: Sequence[int]) -> None:
    """Make a new instance a member of ``ids`` (its create, before it is described)."""
    now = utcnow()
    with db.transaction() as conn:
        for group_id in dict.fromkeys(ids):
            conn.execute(
                A.insert().values(
                    security_group_id=group_id, instance_uuid=instance_uuid, created_at=now
                )
            )


def groups_of(db: Database, instance_uuid: str) -> tuple[str, ...]:
    with db.reader() as conn:
        rows = conn.execute(
            sa.select(G.c.name)
            .join(A, A.c.security_group_id == G.c.id)
            .where(A.c.instance_uuid == instance_uuid)
            .order_by(G.c.name)
        ).scalars()
        return tuple(rows)


def group_ids_of(db: Database, instance_uuids: Iterable[str]) -> set[int]:
    with db.reader() as conn:
        return set(
            conn.execute(
                sa.select(A.c.security_group_id).where(A.c.instance_uuid.in_(list(instance_uuids)))
            ).scalars()
        )
