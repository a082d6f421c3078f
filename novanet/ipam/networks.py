"""Networks in the database: create, list, find, modify, delete."""

from __future__ import annotations

import dataclasses
import uuid as uuidlib
from typing import Any

import sqlalchemy as sa

from novanet.db.api import Database
from novanet.db.models import FIXED_IPS, NETWORKS, VIFS, inserted_id, utcnow
from novanet.exception import Conflict, NotFound, UsageError
from novanet.ipam import bulk
from novanet.ipam.plan import NetworkPlan, check_ifname, overlapping, parse_cidr, parse_ip


@dataclasses.dataclass(frozen=True)
class NetworkRow:
    id: int
    uuid: str
    label: str
    cidr: str
    netmask: str
    gateway: str
    broadcast: str
    dhcp_server: str
    dhcp_start: str
    dns1: str | None
    dns2: str | None
    bridge: str
    bridge_interface: str | None
    multi_host: bool
    host: str | None

    @classmethod
    def from_row(cls, row: Any) -> NetworkRow:
        m = row._mapping
        return cls(**{f.name: m[f.name] for f in dataclasses.fields(cls)})


def create_networks(
    db: Database, plans: list[NetworkPlan], progress: bulk.Progress | None = None
) -> list[NetworkRow]:
    """Insert planned networks and their fixed IPs in one transaction.

    Refuses (Conflict) a CIDR overlapping an existing network, or a bridge
    already serving one: nothing is written then. ``progress(written, total)``
    is called as the addresses are written.
    """
    created: list[int] = []
    now = utcnow()
    written = 0
    total = sum(plan.cidr.num_addresses for plan in plans)
    with db.transaction() as conn:
        existing = conn.execute(sa.select(NETWORKS.c.cidr, NETWORKS.c.bridge)).all()
        cidrs = [row.cidr for row in existing]
        bridges = {row.bridge for row in existing}
        for plan in plans:
            clash = overlapping(plan.cidr, cidrs)
            if clash:
                raise Conflict(f"{plan.cidr} overlaps the existing network {clash}")
            if plan.bridge in bridges:
                raise Conflict(
                    f"bridge {plan.bridge} already serves a network (one network per bridge)"
                )
            cidrs.append(str(plan.cidr))
            bridges.add(plan.bridge)
            result = conn.execute(
                NETWORKS.insert().values(
                    uuid=str(uuidlib.uuid4()),
                    label=plan.label,
                    cidr=str(plan.cidr),
                    netmask=plan.netmask,
                    gateway=str(plan.gateway),
                    broadcast=str(plan.broadcast),
                    dhcp_server=str(plan.dhcp_server),
                    dhcp_start=str(plan.dhcp_start),
                    dns1=plan.dns1,
                    dns2=plan.dns2,
                    bridge=plan.bridge,
                    bridge_interface=plan.bridge_interface,
                    multi_host=False,
                    host=None,
                    created_at=now,
                    updated_at=now,
                )
            )
            network_id = inserted_id(result)
            created.append(network_id)
            written += bulk.insert_fixed_ips(
                conn, network_id, plan, now, progress, done_before=written, total=total
            )
    return [get_network(db, network_id) for network_id in created]


def list_networks(db: Database) -> list[NetworkRow]:
    with db.reader() as conn:
        rows = conn.execute(sa.select(NETWORKS).order_by(NETWORKS.c.id)).all()
    return [NetworkRow.from_row(row) for row in rows]


def get_network(db: Database, network_id: int) -> NetworkRow:
    with db.reader() as conn:
        row = conn.execute(sa.select(NETWORKS).where(NETWORKS.c.id == network_id)).first()
    if row is None:
        raise NotFound(f"network {network_id} does not exist")
    return NetworkRow.from_row(row)


def find_network(db: Database, *, cidr: str | None = None, uuid: str | None = None) -> NetworkRow:
    """The network with this CIDR or uuid (exactly one must be given)."""
    if (cidr is None) == (uuid is None):
        raise UsageError("give exactly one of --fixed_range or --uuid")
    query = sa.select(NETWORKS)
    if cidr is not None:
        query = query.where(NETWORKS.c.cidr == str(parse_cidr(cidr, "--fixed_range")))
        what = cidr
    else:
        query = query.where(NETWORKS.c.uuid == uuid)
        what = str(uuid)
    with db.reader() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no network {what}")
    return NetworkRow.from_row(row)


def delete_network(db: Database, network: NetworkRow) -> None:
    """Delete a network; refused while any of its addresses is allocated."""
    with db.transaction() as conn:
        in_use = conn.execute(
            sa.select(sa.func.count())
            .select_from(FIXED_IPS)
            .where(FIXED_IPS.c.network_id == network.id)
            .where(sa.or_(FIXED_IPS.c.allocated.is_(True), FIXED_IPS.c.instance_uuid.is_not(None)))
        ).scalar_one()
        if in_use:
            raise Conflict(
                f"network {network.cidr} still has {in_use} address(es) in use; "
                "delete its instances first"
            )
        conn.execute(VIFS.delete().where(VIFS.c.network_id == network.id))
        conn.execute(FIXED_IPS.delete().where(FIXED_IPS.c.network_id == network.id))
        conn.execute(NETWORKS.delete().where(NETWORKS.c.id == network.id))


MODIFIABLE = ("label", "dns1", "dns2", "bridge_interface")


def modify_network(db: Database, network: NetworkRow, changes: dict[str, str | None]) -> NetworkRow:
    """Change label, dns1, dns2 or bridge_interface ('' clears an optional field)."""
    values: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in MODIFIABLE:
            raise UsageError(f"network modify cannot change {key}")
        if value is None:
            continue
        if key == "label":
            if not value.strip():
                raise UsageError("--label must not be empty")
            values[key] = value
        elif value == "":
            values[key] = None
        elif key in ("dns1", "dns2"):
            values[key] = str(parse_ip(value, f"--{key}"))
        else:
            values[key] = check_ifname(value, f"--{key}")
    if not values:
        raise UsageError(
            "network modify needs at least one of --label, --dns1, --dns2, --bridge_interface"
        )
    values["updated_at"] = utcnow()
    with db.transaction() as conn:
        conn.execute(NETWORKS.update().where(NETWORKS.c.id == network.id).values(**values))
    return get_network(db, network.id)
