"""What compute hosts need of the security groups, in a few queries whatever the size.

* the rules of instances (compact strings of :mod:`novanet.secrules`, the
  rules of all their groups, sorted, each once);
* the addresses of the members of source groups (the content of each
  host's ipset for that group);
* which hosts a change concerns: hosts of a group's members (their chains
  change) and hosts whose instances' rules name a group as source (their
  set of that group changes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from novanet.db.api import Database
from novanet.db.models import (
    FIXED_IPS,
    INSTANCES,
    SECURITY_GROUP_INSTANCES,
    SECURITY_GROUP_RULES,
)
from novanet.secrules import Rule

R, A = SECURITY_GROUP_RULES, SECURITY_GROUP_INSTANCES
LIVE = ("building", "active")


def _rules_query() -> sa.Select[tuple[str, str, int, int, str | None, int | None]]:
    return sa.select(
        A.c.instance_uuid, R.c.protocol, R.c.from_port, R.c.to_port, R.c.cidr, R.c.group_id
    ).join(R, R.c.parent_group_id == A.c.security_group_id)


def _collect(rows: Iterable[Any]) -> dict[str, tuple[str, ...]]:
    out: dict[str, set[str]] = defaultdict(set)
    for uuid, proto, low, high, cidr, group in rows:
        out[uuid].add(Rule(proto, low, high, cidr, group).compact())
    return {uuid: tuple(sorted(rules)) for uuid, rules in out.items()}


def rules_for(db: Database, instance_uuids: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """uuid -> its rules (every uuid asked for is a key; no rules: ``()``)."""
    uuids = list(dict.fromkeys(instance_uuids))
    if not uuids:
        return {}
    with db.reader() as conn:
        found = _collect(conn.execute(_rules_query().where(A.c.instance_uuid.in_(uuids))).all())
    return {uuid: found.get(uuid, ()) for uuid in uuids}


def rules_on_host(db: Database, host: str) -> dict[str, tuple[str, ...]]:
    """uuid -> rules of the instances on ``host`` that have any (one query)."""
    query = (
        _rules_query()
        .join(INSTANCES, INSTANCES.c.uuid == A.c.instance_uuid)
        .where(INSTANCES.c.host == host)
    )
    with db.reader() as conn:
        return _collect(conn.execute(query).all())


def member_addresses(db: Database, group_ids: Iterable[int]) -> dict[int, list[str]]:
    """gid -> fixed IPs of its members, sorted (every gid asked for is a key)."""
    ids = sorted(set(group_ids))
    if not ids:
        return {}
    out: dict[int, list[str]] = {gid: [] for gid in ids}
    with db.reader() as conn:
        rows = conn.execute(
            sa.select(A.c.security_group_id, FIXED_IPS.c.address)
            .join(FIXED_IPS, FIXED_IPS.c.instance_uuid == A.c.instance_uuid)
            .where(A.c.security_group_id.in_(ids))
        ).all()
    for gid, address in rows:
        out[gid].append(address)
    for addresses in out.values():
        addresses.sort()
    return out


def member_hosts(db: Database, group_ids: Iterable[int]) -> dict[str, set[str]]:
    """host -> uuids of its live instances in any of ``group_ids``."""
    ids = list(set(group_ids))
    if not ids:
        return {}
    with db.reader() as conn:
        rows = conn.execute(
            sa.select(INSTANCES.c.host, INSTANCES.c.uuid)
            .join(A, A.c.instance_uuid == INSTANCES.c.uuid)
            .where(A.c.security_group_id.in_(ids), INSTANCES.c.state.in_(LIVE))
        ).all()
    out: dict[str, set[str]] = defaultdict(set)
    for host, uuid in rows:
        out[host].add(uuid)
    return dict(out)


def instance_hosts(db: Database, instance_uuids: Iterable[str]) -> dict[str, set[str]]:
    """host -> those of ``instance_uuids`` that live there."""
    uuids = list(set(instance_uuids))
    if not uuids:
        return {}
    with db.reader() as conn:
        rows = conn.execute(
            sa.select(INSTANCES.c.host, INSTANCES.c.uuid).where(
                INSTANCES.c.uuid.in_(uuids), INSTANCES.c.state.in_(LIVE)
            )
        ).all()
    out: dict[str, set[str]] = defaultdict(set)
    for host, uuid in rows:
        out[host].add(uuid)
    return dict(out)


def referencing_hosts(db: Database, group_ids: Iterable[int] | None = None) -> dict[str, set[int]]:
    """host -> source groups (of ``group_ids``; all if None) its live instances' rules name."""
    query = (
        sa.select(INSTANCES.c.host, R.c.group_id)
        .join(A, A.c.instance_uuid == INSTANCES.c.uuid)
        .join(R, R.c.parent_group_id == A.c.security_group_id)
        .where(R.c.group_id.is_not(None), INSTANCES.c.state.in_(LIVE))
        .distinct()
    )
    if group_ids is not None:
        ids = list(set(group_ids))
        if not ids:
            return {}
        query = query.where(R.c.group_id.in_(ids))
    with db.reader() as conn:
        rows = conn.execute(query).all()
    out: dict[str, set[int]] = defaultdict(set)
    for host, gid in rows:
        out[host].add(int(gid))
    return dict(out)
