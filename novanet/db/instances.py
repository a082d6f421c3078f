"""Instances: the integer id names the chain (inst-N) and the namespace."""

from __future__ import annotations

import dataclasses
import datetime
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
    user_data: str | None
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
    user_data: str | None = None,
    public_key: str | None = None,
) -> InstanceRow:
    now = utcnow()
    with db.transaction() as conn:
        result = conn.execute(
            INSTANCES.insert().values(
                uuid=str(uuidlib.uuid4()),
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


def find_instance(db: Database, ref: str, name_template: str = "instance-%08x") -> InstanceRow:
    """An instance by integer id, uuid, instance name (instance-00000009) or display name."""
    ref = (ref or "").strip()
    if not ref:
        raise UsageError("an instance id, uuid or name is required")
    with db.reader() as conn:
        query = sa.select(INSTANCES)
        if ref.isdigit():
            rows = conn.execute(query.where(INSTANCES.c.id == int(ref))).all()
        else:
            rows = conn.execute(query.where(INSTANCES.c.uuid == ref)).all()
        if not rows:
            rows = conn.execute(query.where(INSTANCES.c.display_name == ref)).all()
        if not rows:
            rows = [
                row
                for row in conn.execute(query).all()
                if _instance_name(name_template, row.id) == ref
            ]
    if not rows:
        raise NotFound(f"no instance {ref!r}")
    if len(rows) > 1:
        ids = ", ".join(str(r.id) for r in rows)
        raise Conflict(f"{len(rows)} instances are named {ref!r} (ids {ids}); use an id or uuid")
    return InstanceRow.from_row(rows[0])


def _instance_name(template: str, instance_id: int) -> str:
    try:
        return template % instance_id
    except (TypeError, ValueError):
        return ""


def list_instances(db: Database, host: str | None = None) -> list[InstanceRow]:
    query = sa.select(INSTANCES).order_by(INSTANCES.c.id)
    if host is not None:
        query = query.where(INSTANCES.c.host == host)
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
