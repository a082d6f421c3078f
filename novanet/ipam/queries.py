"""Read-side views of the pool: fixed list, dnsmasq hosts, leases for init."""

from __future__ import annotations

import dataclasses
import datetime

import sqlalchemy as sa

from novanet.db.api import Database
from novanet.db.models import FIXED_IPS, INSTANCES, NETWORKS, VIFS


@dataclasses.dataclass(frozen=True)
class FixedIpView:
    address: str
    network: str
    reserved: bool
    allocated: bool
    leased: bool
    instance_uuid: str | None
    host: str | None
    mac: str | None
    hostname: str | None


def list_fixed_ips(
    db: Database, host: str | None = None, network_id: int | None = None
) -> list[FixedIpView]:
    query = (
        sa.select(
            FIXED_IPS.c.address,
            NETWORKS.c.cidr,
            FIXED_IPS.c.reserved,
            FIXED_IPS.c.allocated,
            FIXED_IPS.c.leased,
            FIXED_IPS.c.instance_uuid,
            INSTANCES.c.host,
            VIFS.c.address,
            INSTANCES.c.hostname,
        )
        .join(NETWORKS, NETWORKS.c.id == FIXED_IPS.c.network_id)
        .outerjoin(VIFS, VIFS.c.id == FIXED_IPS.c.virtual_interface_id)
        .outerjoin(INSTANCES, INSTANCES.c.uuid == FIXED_IPS.c.instance_uuid)
        .order_by(FIXED_IPS.c.network_id, FIXED_IPS.c.id)
    )
    if host is not None:
        query = query.where(INSTANCES.c.host == host)
    if network_id is not None:
        query = query.where(FIXED_IPS.c.network_id == network_id)
    with db.reader() as conn:
        rows = conn.execute(query).all()
    return [
        FixedIpView(r[0], r[1], bool(r[2]), bool(r[3]), bool(r[4]), r[5], r[6], r[7], r[8])
        for r in rows
    ]


@dataclasses.dataclass(frozen=True)
class HostEntry:
    """One dnsmasq host: the allocated address of a VIF and its hostname."""

    mac: str
    hostname: str
    address: str
    instance_id: int | None = None


def hosts_for_network(db: Database, network_id: int) -> list[HostEntry]:
    """Allocated addresses of a network with their MAC and hostname, first IP per MAC."""
    with db.reader() as conn:
        rows = conn.execute(
            sa.select(VIFS.c.address, INSTANCES.c.hostname, FIXED_IPS.c.address, INSTANCES.c.id)
            .join(VIFS, VIFS.c.id == FIXED_IPS.c.virtual_interface_id)
            .join(INSTANCES, INSTANCES.c.uuid == FIXED_IPS.c.instance_uuid)
            .where(FIXED_IPS.c.network_id == network_id)
            .where(FIXED_IPS.c.allocated.is_(True))
            .order_by(FIXED_IPS.c.id)
        ).all()
    seen: set[str] = set()
    hosts = []
    for mac, hostname, address, instance_id in rows:
        if mac in seen:
            continue
        seen.add(mac)
        hosts.append(HostEntry(mac, hostname, address, instance_id))
    return hosts


@dataclasses.dataclass(frozen=True)
class LeaseEntry:
    mac: str
    address: str
    hostname: str | None
    updated_at: datetime.datetime
    allocated: bool = True


def leases_for_network(db: Database, network_id: int) -> list[LeaseEntry]:
    """Leased addresses still bound to a VIF (what dnsmasq's ``init`` must restore)."""
    with db.reader() as conn:
        rows = conn.execute(
            sa.select(
                VIFS.c.address,
                FIXED_IPS.c.address,
                INSTANCES.c.hostname,
                FIXED_IPS.c.updated_at,
                FIXED_IPS.c.allocated,
            )
            .join(VIFS, VIFS.c.id == FIXED_IPS.c.virtual_interface_id)
            .outerjoin(INSTANCES, INSTANCES.c.uuid == FIXED_IPS.c.instance_uuid)
            .where(FIXED_IPS.c.network_id == network_id)
            .where(FIXED_IPS.c.leased.is_(True))
            .order_by(FIXED_IPS.c.id)
        ).all()
    return [LeaseEntry(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]
