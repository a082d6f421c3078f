"""Instances: the integer id names the chain (inst-N) and the namespace."""

from __future__ import annotations

import dataclasses
import datetime
import re
import uuid as uuidlib
from typing import Any

import sqlalchemy as sa

from novanet.db.api import Database
from novanet.db.models import FIXED_IPS, INSTANCES, VIFS, inserted_id, utcnow
from novanet.exception import Conflict, NotFound, UsageError

STATES = ("building", "active", "deleting", "error")


@dataclasses.dataclass(frozen=True)
class InstanceRow:
    id: int
    uuid: str
    display_name: str
    hostname: str
    host: str
    vif_type: str
    vif_devname: str | None
    state: str
    user_data: bytes | None
    public_key: str | None
    created_at: datetime.datetime
    updated_at: datetime.datetime

    @classmethod
    def from_row(cls, row: Any) -> InstanceRow:
        m = row._mapping
        return cls(**{f.name: m[f.name] for f in dataclasses.fields(cls)})


def create_instance(
    db: Database,
    *,
    display_name: str,
    hostname: str,
    host: str,
    vif_type: str,
    user_data: bytes | None = None,
    public_key: str | None = None,
    uuid: str | None = None,
) -> InstanceRow:
    now = utcnow()
    with db.transaction() as conn:
        result = conn.execute(
            INSTANCES.insert().values(
                uuid=uuid or str(uuidlib.uuid4()),
                display_name=display_name,
                hostname=hostname,
                host=host,
                vif_type=vif_type,
                state="building",
                user_data=user_data,
                public_key=public_key,
                created_at=now,
                updated_at=now,
            )
        )
        instance_id = inserted_id(result)
    return get_instance(db, instance_id)


def get_instance(db: Database, instance_id: int) -> InstanceRow:
    with db.reader() as conn:
        row = conn.execute(sa.select(INSTANCES).where(INSTANCES.c.id == instance_id)).first()
    if row is None:
        raise NotFound(f"instance {instance_id} does not exist")
    return InstanceRow.from_row(row)


def get_by_uuid(db: Database, uuid: str) -> InstanceRow:
    with db.reader() as conn:
        row = conn.execute(sa.select(INSTANCES).where(INSTANCES.c.uuid == uuid)).first()
    if row is None:
        raise NotFound(f"instance {uuid} does not exist")
    return InstanceRow.from_row(row)


def exists(db: Database, uuid: str) -> bool:
    with db.reader() as conn:
        return (
            conn.execute(sa.select(INSTANCES.c.id).where(INSTANCES.c.uuid == uuid)).first()
            is not None
        )


def find_instance(db: Database, ref: str, name_template: str = "instance-%08x") -> InstanceRow:
    """An instance by integer id, uuid, instance name (instance-00000009) or display name.

    A reference that means two different instances (an instance named "2"
    and the instance with id 2) is refused, naming both: guessing could
    delete the wrong one.
    """
    ref = (ref or "").strip()
    if not ref:
        raise UsageError("an instance id, uuid or name is required")
    matches: dict[int, tuple[Any, str]] = {}  # id -> (row, how ref names it)
    with db.reader() as conn:
        query = sa.select(INSTANCES)
        by_id = [int(ref)] if ref.isdigit() and int(ref) <= MAX_ID else []
        by_id += [i for i in [_id_from_name(name_template, ref)] if i is not None]
        for row in conn.execute(query.where(INSTANCES.c.id.in_(by_id))).all():
            how = "id" if str(row.id) == ref else "instance name"
            matches.setdefault(row.id, (row, how))
        for row in conn.execute(query.where(INSTANCES.c.uuid == ref)).all():
            matches.setdefault(row.id, (row, "uuid"))
        named = conn.execute(query.where(INSTANCES.c.display_name == ref)).all()
        for row in named:
            matches.setdefault(row.id, (row, "display name"))
    if not matches:
        raise NotFound(f"no instance {ref!r}")
    if len(matches) > 1:
        if len(named) == len(matches):
            ids = ", ".join(str(r.id) for r in named)
            raise Conflict(
                f"{len(named)} instances are named {ref!r} (ids {ids}); use an id or uuid"
            )
        candidates = "; ".join(
            f"instance {row.id} ({row.display_name}, {row.uuid}) by its {how}"
            for row, how in sorted(matches.values(), key=lambda m: m[0].id)
        )
        raise Conflict(f"{ref!r} is ambiguous: {candidates}; use the uuid")
    ((row, _),) = matches.values()
    return InstanceRow.from_row(row)


# Integer ids fit every backend's INTEGER column; a longer number is no id.
MAX_ID = 2**31 - 1


def _id_from_name(template: str, name: str) -> int | None:
    """The id whose instance name (``template % id``) is ``name``, if any."""
    match = re.fullmatch(r"(.*?)%0?\d*([dxX])(.*)", template, flags=re.DOTALL)
    if match is None or "%" in match.group(1) + match.group(3):
        return None
    prefix, kind, suffix = match.groups()
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    digits = name[len(prefix) : len(name) - len(suffix)]
    try:
        value = int(digits, 10 if kind == "d" else 16)
    except ValueError:
        return None
    if not 0 < value <= MAX_ID or template % value != name:
        return None
    return value


def list_instances(db: Database, host: str | None = None) -> list[InstanceRow]:
    query = sa.select(INSTANCES).order_by(INSTANCES.c.id)
    if host is not None:
        query = query.where(INSTANCES.c.host == host)
    with db.reader() as conn:
        return [InstanceRow.from_row(row) for row in conn.execute(query).all()]


def hostnames_taken(db: Database, names: list[str], except_id: int) -> set[str]:
    """Which of ``names`` another instance already has as its hostname."""
    with db.reader() as conn:
        rows = conn.execute(
            sa.select(INSTANCES.c.hostname)
            .where(INSTANCES.c.hostname.in_(names))
            .where(INSTANCES.c.id != except_id)
        ).scalars()
        return set(rows)


def unfinished(db: Database) -> list[InstanceRow]:
    """Instances whose create or delete has not completed (``building``, ``deleting``)."""
    query = (
        sa.select(INSTANCES)
        .where(INSTANCES.c.state.in_(("building", "deleting")))
        .order_by(INSTANCES.c.id)
    )
    with db.reader() as conn:
        return [InstanceRow.from_row(row) for row in conn.execute(query).all()]


def update_instance(db: Database, instance_id: int, **values: Any) -> None:
    if "state" in values and values["state"] not in STATES:
        raise ValueError(f"unknown instance state {values['state']!r}")
    values["updated_at"] = utcnow()
    with db.transaction() as conn:
        conn.execute(INSTANCES.update().where(INSTANCES.c.id == instance_id).values(**values))


def delete_instance_row(db: Database, instance_id: int) -> None:
    with db.transaction() as conn:
        conn.execute(INSTANCES.delete().where(INSTANCES.c.id == instance_id))


@dataclasses.dataclass(frozen=True)
class Port:
    """An instance's network binding: what the compute host needs to plug it."""

    address: str
    mac: str
    network_id: int


def ports_of(db: Database, instance_uuid: str) -> list[Port]:
    with db.reader() as conn:
        rows = conn.execute(
            sa.select(FIXED_IPS.c.address, VIFS.c.address, FIXED_IPS.c.network_id)
            .join(VIFS, VIFS.c.id == FIXED_IPS.c.virtual_interface_id)
            .where(FIXED_IPS.c.instance_uuid == instance_uuid)
            .order_by(FIXED_IPS.c.id)
        ).all()
    return [Port(r[0], r[1], r[2]) for r in rows]
