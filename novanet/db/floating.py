"""Floating IPs: pools of addresses, and their mapping onto instances' fixed IPs.

``novanet-manage floating create|delete|list`` write and read the pools
here directly; associations are made by novanet-network (its RPC handler
calls :func:`associate` / :func:`disassociate`) so that the database and
the controller's kernel state change together. Every change is one
transaction, and an association is a compare-and-swap on ``fixed_ip_id``:
two concurrent associations of one address cannot both win.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from novanet.db.api import Database
from novanet.db.models import FIXED_IPS, FLOATING_IPS, NETWORKS, utcnow
from novanet.exception import Conflict, NotFound, UsageError

# nova-manage's limit (address_to_hosts): more is a typo, not a pool.
MAX_RANGE = 65536
_INSERT_CHUNK = 1000


@dataclasses.dataclass(frozen=True)
class FloatingRow:
    """One address of a pool as ``floating list`` shows it."""

    address: str
    pool: str
    interface: str
    fixed_address: str | None
    instance_uuid: str | None
    host: str | None
    auto_assigned: bool


@dataclasses.dataclass(frozen=True)
class Mapping:
    """An association as the controller applies it (rules, address, conntrack)."""

    address: str
    fixed_address: str
    interface: str
    instance_uuid: str | None = None


def range_hosts(ip_range: str) -> list[str]:
    """Every host address of ``ip_range`` (a CIDR, or one address), as nova-manage did.

    A single address (``192.168.56.230`` or ``/32``) is itself; a CIDR gives
    its hosts without network and broadcast addresses, and must hold at least
    two of them (/30) and at most MAX_RANGE addresses.
    """
    text = (ip_range or "").strip()
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise UsageError(f"--ip_range {text!r} is not an IPv4 address or CIDR: {exc}") from None
    if net.prefixlen == 32:
        return [str(net.network_address)]
    if net.num_addresses < 4:
        raise UsageError(f"--ip_range {text}: give a /{net.prefixlen} as single addresses")
    if net.num_addresses > MAX_RANGE:
        raise UsageError(f"--ip_range {text}: more than {MAX_RANGE} addresses")
    return [str(a) for a in net.hosts()]


def _in_range(addresses: Sequence[str]) -> sa.ColumnElement[bool]:
    return FLOATING_IPS.c.address.in_(list(addresses))


def create_range(
    db: Database,
    ip_range: str,
    pool: str,
    interface: str,
    reserved: Iterable[tuple[str, str]] = (),
) -> list[str]:
    """Add every host address of ``ip_range`` to ``pool``; returns them.

    Refused, writing nothing, when the range overlaps another pool's
    addresses, a fixed network, or one of ``reserved`` (``(what, address)``
    pairs: the controller's my_ip, routing_source_ip, metadata_host...).
    """
    hosts = range_hosts(ip_range)
    net = ipaddress.IPv4Network(ip_range.strip())
    for what, address in reserved:
        if address and ipaddress.ip_address(address) in net:
            raise Conflict(f"--ip_range {net} holds {what} {address}")
    now = utcnow()
    with db.transaction() as conn:
        for row in conn.execute(sa.select(NETWORKS.c.cidr, NETWORKS.c.label)).all():
            if ipaddress.IPv4Network(row.cidr).overlaps(net):
                raise Conflict(f"--ip_range {net} overlaps fixed network {row.cidr} ({row.label})")
        taken = _existing(conn, hosts)
        if taken:
            first = min(taken, key=ipaddress.IPv4Address)
            raise Conflict(
                f"--ip_range {net} overlaps existing floating IPs ({len(taken)}, "
                f"first {first} in pool {taken[first]})"
            )
        for start in range(0, len(hosts), _INSERT_CHUNK):
            conn.execute(
                FLOATING_IPS.insert(),
                [
                    {
                        "address": address,
                        "pool": pool,
                        "interface": interface,
                        "auto_assigned": False,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for address in hosts[start : start + _INSERT_CHUNK]
                ],
            )
    return hosts


def _existing(conn: Connection, addresses: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(addresses), _INSERT_CHUNK):
        chunk = addresses[start : start + _INSERT_CHUNK]
        query = sa.select(FLOATING_IPS.c.address, FLOATING_IPS.c.pool).where(_in_range(chunk))
        found.update({row.address: row.pool for row in conn.execute(query)})
    return found


def delete_range(db: Database, ip_range: str) -> int:
    """Remove the addresses of ``ip_range``; refused while any of them is associated."""
    hosts = range_hosts(ip_range)
    with db.transaction() as conn:
        existing = _existing(conn, hosts)
        if not existing:
            raise NotFound(f"no floating IP in {ip_range.strip()}")
        for start in range(0, len(hosts), _INSERT_CHUNK):
            chunk = hosts[start : start + _INSERT_CHUNK]
            busy = conn.execute(
                sa.select(FLOATING_IPS.c.address).where(
                    _in_range(chunk), FLOATING_IPS.c.fixed_ip_id.is_not(None)
                )
            ).first()
            if busy is not None:
                raise Conflict(
                    f"floating IP {busy.address} of {ip_range.strip()} is associated: "
                    "disassociate it first"
                )
        for start in range(0, len(hosts), _INSERT_CHUNK):
            conn.execute(
                FLOATING_IPS.delete().where(_in_range(hosts[start : start + _INSERT_CHUNK]))
            )
    return len(existing)


def _listing() -> sa.Select[Any]:
    return sa.select(
        FLOATING_IPS.c.address,
        FLOATING_IPS.c.pool,
        FLOATING_IPS.c.interface,
        FIXED_IPS.c.address.label("fixed_address"),
        FIXED_IPS.c.instance_uuid,
        FLOATING_IPS.c.host,
        FLOATING_IPS.c.auto_assigned,
    ).select_from(FLOATING_IPS.outerjoin(FIXED_IPS, FIXED_IPS.c.id == FLOATING_IPS.c.fixed_ip_id))


def _row(row: Any) -> FloatingRow:
    return FloatingRow(**{f.name: row._mapping[f.name] for f in dataclasses.fields(FloatingRow)})


def list_floating(db: Database, pool: str | None = None) -> list[FloatingRow]:
    query = _listing()
    if pool is not None:
        query = query.where(FLOATING_IPS.c.pool == pool)
    with db.reader() as conn:
        rows = [_row(r) for r in conn.execute(query)]
    return sorted(rows, key=lambda r: ipaddress.IPv4Address(r.address))


def get_floating(db: Database, address: str) -> FloatingRow:
    with db.reader() as conn:
        row = conn.execute(_listing().where(FLOATING_IPS.c.address == address)).first()
    if row is None:
        raise NotFound(f"floating IP {address} is in no pool ('novanet-manage floating list')")
    return _row(row)


def of_instances(db: Database, uuids: Iterable[str]) -> dict[str, list[str]]:
    """Floating addresses associated with each instance (metadata, instance show)."""
    wanted = list(uuids)
    result: dict[str, list[str]] = {u: [] for u in wanted}
    query = (
        sa.select(FLOATING_IPS.c.address, FIXED_IPS.c.instance_uuid)
        .join(FIXED_IPS, FIXED_IPS.c.id == FLOATING_IPS.c.fixed_ip_id)
        .where(FIXED_IPS.c.instance_uuid.in_(wanted))
        .order_by(FLOATING_IPS.c.updated_at, FLOATING_IPS.c.id)
    )
    with db.reader() as conn:
        for row in conn.execute(query):
            result[row.instance_uuid].append(row.address)
    return result


def mappings(db: Database, host: str) -> list[Mapping]:
    """The associations ``host`` applies, in association order (its rules' order)."""
    query = (
        sa.select(
            FLOATING_IPS.c.address,
            FIXED_IPS.c.address.label("fixed"),
            FLOATING_IPS.c.interface,
            FIXED_IPS.c.instance_uuid,
        )
        .join(FIXED_IPS, FIXED_IPS.c.id == FLOATING_IPS.c.fixed_ip_id)
        .where(FLOATING_IPS.c.host == host)
        .order_by(FLOATING_IPS.c.updated_at, FLOATING_IPS.c.id)
    )
    with db.reader() as conn:
        return [
            Mapping(r.address, r.fixed, r.interface, r.instance_uuid) for r in conn.execute(query)
        ]


def pool_addresses(db: Database) -> dict[str, str]:
    """Every pool address -> its interface (what a stale /32 on an interface may be)."""
    with db.reader() as conn:
        query = sa.select(FLOATING_IPS.c.address, FLOATING_IPS.c.interface)
        return {r.address: r.interface for r in conn.execute(query)}


def _fixed_of(conn: Connection, instance_uuid: str) -> tuple[int, str]:
    row = conn.execute(
        sa.select(FIXED_IPS.c.id, FIXED_IPS.c.address)
        .where(FIXED_IPS.c.instance_uuid == instance_uuid, FIXED_IPS.c.allocated.is_(True))
        .order_by(FIXED_IPS.c.id)
    ).first()
    if row is None:
        raise Conflict(f"instance {instance_uuid} has no fixed IP to map a floating IP onto")
    return row.id, row.address


def associate(
    db: Database,
    address: str,
    instance_uuid: str,
    host: str,
    *,
    force: bool = False,
    auto_assigned: bool = False,
) -> tuple[Mapping, Mapping | None]:
    """Map ``address`` onto the instance's fixed IP; returns (new, replaced or None).

    An address already associated with another fixed IP is refused unless
    ``force`` (the replaced mapping is returned: its kernel state must go).
    Associating it again with the same instance changes nothing.
    """
    with db.transaction() as conn:
        row = conn.execute(sa.select(FLOATING_IPS).where(FLOATING_IPS.c.address == address)).first()
        if row is None:
            raise NotFound(f"floating IP {address} is in no pool ('novanet-manage floating list')")
        fixed_id, fixed = _fixed_of(conn, instance_uuid)
        new = Mapping(address, fixed, row.interface, instance_uuid)
        previous = None
        if row.fixed_ip_id is not None:
            old = conn.execute(
                sa.select(FIXED_IPS.c.address, FIXED_IPS.c.instance_uuid).where(
                    FIXED_IPS.c.id == row.fixed_ip_id
                )
            ).first()
            if row.fixed_ip_id == fixed_id:
                return new, None
            owner = old.instance_uuid if old is not None else None
            if not force:
                raise Conflict(
                    f"floating IP {address} is associated with instance {owner}: "
                    "disassociate it first (or --force)"
                )
            if old is not None:
                previous = Mapping(address, old.address, row.interface, owner)
        taken = conn.execute(
            FLOATING_IPS.update()
            .where(FLOATING_IPS.c.id == row.id, _same(FLOATING_IPS.c.fixed_ip_id, row.fixed_ip_id))
            .values(
                fixed_ip_id=fixed_id,
                host=host,
                auto_assigned=auto_assigned,
                updated_at=utcnow(),
            )
        )
        if taken.rowcount != 1:
            raise Conflict(f"floating IP {address} changed meanwhile: try again")
    return new, previous


def _same(column: Any, value: int | None) -> sa.ColumnElement[bool]:
    return column.is_(None) if value is None else column == value  # type: ignore[no-any-return]


def disassociate(db: Database, address: str) -> Mapping | None:
    """Unmap ``address``; returns the mapping it had (None: it had none)."""
    with db.transaction() as conn:
        row = conn.execute(
            sa.select(
                FLOATING_IPS.c.id, FLOATING_IPS.c.interface, FLOATING_IPS.c.fixed_ip_id
            ).where(FLOATING_IPS.c.address == address)
        ).first()
        if row is None:
            raise NotFound(f"floating IP {address} is in no pool ('novanet-manage floating list')")
        if row.fixed_ip_id is None:
            return None
        fixed = conn.execute(
            sa.select(FIXED_IPS.c.address, FIXED_IPS.c.instance_uuid).where(
                FIXED_IPS.c.id == row.fixed_ip_id
            )
        ).first()
        conn.execute(
            FLOATING_IPS.update()
            .where(FLOATING_IPS.c.id == row.id)
            # auto-assigned addresses go back to the pool with the association
            .values(fixed_ip_id=None, host=None, auto_assigned=False, updated_at=utcnow())
        )
    if fixed is None:
        return None
    return Mapping(address, fixed.address, row.interface, fixed.instance_uuid)


def restore(db: Database, mapping: Mapping, previous: Mapping | None, host: str) -> None:
    """Undo :func:`associate` (the kernel refused it): the address as it was."""
    with db.transaction() as conn:
        fixed_id = None
        if previous is not None:
            found = conn.execute(
                sa.select(FIXED_IPS.c.id).where(FIXED_IPS.c.address == previous.fixed_address)
            ).first()
            fixed_id = found.id if found is not None else None
        conn.execute(
            FLOATING_IPS.update()
            .where(FLOATING_IPS.c.address == mapping.address)
            .values(fixed_ip_id=fixed_id, host=host if fixed_id else None, updated_at=utcnow())
        )


def free_address(db: Database, pool: str) -> str | None:
    """An unassociated address of ``pool`` (the first created), or None when it is exhausted."""
    with db.reader() as conn:
        row = conn.execute(
            sa.select(FLOATING_IPS.c.address)
            .where(FLOATING_IPS.c.pool == pool, FLOATING_IPS.c.fixed_ip_id.is_(None))
            .order_by(FLOATING_IPS.c.id)
            .limit(1)
        ).first()
    return None if row is None else str(row.address)


def pool_exists(db: Database, pool: str) -> bool:
    with db.reader() as conn:
        query = sa.select(FLOATING_IPS.c.id).where(FLOATING_IPS.c.pool == pool).limit(1)
        return conn.execute(query).first() is not None
