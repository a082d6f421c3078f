"""Databases with instances for the metadata tests (unit, functional and the benchmark)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from novanet.db import instances, migration, secgroups
from novanet.db.api import Database
from novanet.ipam import networks, plan, pool

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0aGlzaXNub3RhcmVhbGtleWF0YWxsMTIz alice@laptop"
USER_DATA = b"#!/bin/sh\necho hello from user data\n"


@dataclasses.dataclass(frozen=True)
class Made:
    id: int
    uuid: str
    address: str


def migrated_sqlite(path: Path) -> Database:
    """A migrated SQLite database at ``path`` holding one network 10.0.0.0/24 on br100."""
    db = Database(f"sqlite:///{path}")
    migration.upgrade(db.engine)
    networks.create_networks(
        db, plan.plan_networks(label="private", fixed_range_v4="10.0.0.0/24", bridge="br100")
    )
    return db


def network_id(db: Database) -> int:
    return networks.list_networks(db)[0].id


def add_instance(
    db: Database,
    name: str,
    *,
    user_data: bytes | None = None,
    public_key: str | None = None,
    mac: str | None = None,
) -> Made:
    """An instance with a fixed IP allocated the way the controller does it."""
    inst = instances.create_instance(
        db,
        display_name=name,
        hostname=name,
        host="compute-1",
        vif_type="netns",
        user_data=user_data,
        public_key=public_key,
    )
    alloc = pool.allocate_for_instance(
        db, network_id=network_id(db), instance_uuid=inst.uuid, mac=mac
    )
    # as a create does: every instance is in at least one group (default)
    secgroups.add_instance(db, inst.uuid, "default")
    return Made(inst.id, inst.uuid, alloc.address)
