"""Networks in the database: create, list, find, modify, delete."""

from __future__ import annotations

import dataclasses
import uuid as uuidlib
from typing import Any

import sqlalchemy as sa

from novanet.db.api import Database
from novanet.db.models import FIXED_IPS, NETWORKS, VIFS, inserted_id, utcnow
from novanet.exception import Conflict, NoMoreFixedIps, NotFound, UsageError
from novanet.ipam import bulk, pool
from novanet.ipam.plan import (
    NetworkPlan,
    check_ifname,
    check_project,
    overlapping,
    parse_cidr,
    parse_ip,
)


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
    project_id: str | None = None
    priority: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> NetworkRow:
        m = row._mapping
        return cls(**{f.name: m[f.name] for f in dataclasses.fields(cls)})


def create_networks(
    db: Database, plans: list[NetworkPlan], progress: bulk.Progress | None = None
) -> list[NetworkRow]:
    """Insert planned networks and their fixed IPs in one transaction.

    Refuses (Conflict) a CIDR overlapping an existing network, a uuid in use,
    or a bridge already serving networks through another bridge_interface
    (one bridge has one port to the VM network): nothing is written then.
    Networks on one bridge share it, as nova's did. ``progress(written, total)``
    is called as the addresses are written.
    """
    created: list[int] = []
    now = utcnow()
    written = 0
    total = sum(plan.cidr.num_addresses for plan in plans)
    with db.transaction() as conn:
        existing = conn.execute(
            sa.select(
                NETWORKS.c.cidr, NETWORKS.c.bridge, NETWORKS.c.bridge_interface, NETWORKS.c.uuid
            )
        ).all()
        cidrs = [row.cidr for row in existing]
        ports = {row.bridge: row.bridge_interface for row in existing}
        uuids = {row.uuid for row in existing}
        for plan in plans:
            clash = overlapping(plan.cidr, cidrs)
            if clash:
                raise Conflict(f"{plan.cidr} overlaps the existing network {clash}")
            if plan.bridge in ports and ports[plan.bridge] != plan.bridge_interface:
                raise Conflict(
                    f"bridge {plan.bridge} already serves networks with bridge_interface "
                    f"{ports[plan.bridge] or '(none)'}, not {plan.bridge_interface or '(none)'}"
                )
            if plan.uuid is not None and plan.uuid in uuids:
                raise Conflict(f"a network with uuid {plan.uuid} exists already")
            cidrs.append(str(plan.cidr))
            ports[plan.bridge] = plan.bridge_interface
            result = conn.execute(
                NETWORKS.insert().values(
                    uuid=plan.uuid or str(uuidlib.uuid4()),
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
                    project_id=plan.project_id,
                    priority=plan.priority,
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


def allocation_order(nets: list[NetworkRow]) -> list[NetworkRow]:
    """The order in which networks hand out addresses: priority (lower first, unset
    last), then creation (id). An instance gets its address from the first
    network that has a free one."""
    return sorted(nets, key=lambda n: (n.priority is None, n.priority or 0, n.id))


def allocate_in_order(
    db: Database,
    nets: list[NetworkRow],
    *,
    instance_uuid: str,
    mac: str | None,
    mac_attempts: int,
) -> tuple[pool.Allocation, NetworkRow]:
    """An address from the first network in :func:`allocation_order` with one free.

    nova's FlatDHCP gave an instance one address in every network; a
    novanet instance has one NIC, so the networks are tried in turn instead.
    """
    if not nets:
        raise NotFound("there is no network: create one with 'novanet-manage network create'")
    full: NoMoreFixedIps | None = None
    for net in allocation_order(nets):
        try:
            alloc = pool.allocate_for_instance(
                db,
                network_id=net.id,
                instance_uuid=instance_uuid,
                mac=mac,
                mac_attempts=mac_attempts,
            )
        except NoMoreFixedIps as exc:
            full = exc
            continue
        return alloc, net
    if len(nets) > 1:
        raise NoMoreFixedIps(f"no free fixed IP in any of the {len(nets)} networks")
    assert full is not None
    raise full


def sharing_bridge(db: Database, network_id: int) -> list[int]:
    """Ids of the networks on the same bridge as ``network_id`` (itself included), in order."""
    same = sa.select(NETWORKS.c.bridge).where(NETWORKS.c.id == network_id).scalar_subquery()
    with db.reader() as conn:
        ids = conn.execute(
            sa.select(NETWORKS.c.id).where(NETWORKS.c.bridge == same).order_by(NETWORKS.c.id)
        ).scalars()
        return [int(i) for i in ids]


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
    """Delete a network; refused while any of its addresses is allocated, or
    while it belongs to a project (nova's NetworkHasProject)."""
    if network.project_id is not None:
        raise Conflict(
            f"network {network.cidr} must be disassociated from project {network.project_id} "
            "before delete (network modify --disassociate-project)"
        )
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


MODIFIABLE = ("label", "dns1", "dns2", "bridge_interface", "project_id", "host", "priority")


def modify_network(db: Database, network: NetworkRow, changes: dict[str, Any]) -> NetworkRow:
    """Change a network; ``''`` clears an optional text field.

    nova-manage's own fields: ``project_id`` and ``host`` (``network modify
    --project/--host``, cleared by ``--disassociate-project/-host``);
    novanet's: label, dns1, dns2, bridge_interface, priority.
    """
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
        elif key == "priority":
            values[key] = int(value)
        elif value == "":
            values[key] = None
        elif key in ("dns1", "dns2"):
            values[key] = str(parse_ip(value, f"--{key}"))
        elif key == "project_id":
            values[key] = check_project(value, "--project")
        elif key == "host":
            values[key] = check_project(value, "--host")
        else:
            values[key] = check_ifname(value, f"--{key}")
    if not values:
        raise UsageError(
            "network modify needs at least one of --project, --host, --disassociate-project, "
            "--disassociate-host, --label, --dns1, --dns2, --bridge_interface, --priority"
        )
    values["updated_at"] = utcnow()
    with db.transaction() as conn:
        if "bridge_interface" in values:
            # one port per bridge: every network on the bridge follows
            conn.execute(
                NETWORKS.update()
                .where(NETWORKS.c.bridge == network.bridge)
                .values(
                    bridge_interface=values["bridge_interface"], updated_at=values["updated_at"]
                )
            )
        conn.execute(NETWORKS.update().where(NETWORKS.c.id == network.id).values(**values))
    return get_network(db, network.id)
