"""The fixed-IP pool: allocation by compare-and-swap, deallocation, leases.

Allocation (nova's final, Galera-safe form): read a few free candidates,
least recently used first, then claim one with
``UPDATE ... WHERE id = ? AND <still free>``; zero rows updated means a
concurrent allocator won it, so try the next candidate. Never
``SELECT ... FOR UPDATE`` (it deadlocked on Galera and made every allocator
queue on the same row).

The life of an address: free -> associated + allocated (allocate) ->
leased (dnsmasq ``add``) -> not allocated (deallocate; the instance is gone
but the guest may still hold the lease) -> free again when dnsmasq reports
``del`` or, without a lease, after ``fixed_ip_disassociate_timeout``. An
address is therefore never handed to a new instance while dnsmasq may still
hold a lease for the old one.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from novanet.db.api import Database
from novanet.db.models import FIXED_IPS, NETWORKS, VIFS, free_address, inserted_id, utcnow
from novanet.exception import Conflict, NoMoreFixedIps, NotFound, UsageError
from novanet.ipam.macs import normalize_mac, random_mac

# How many free candidates one read fetches. An allocator takes the least
# recently used one; once it has lost a race (another allocator claimed the
# same row first, and on PostgreSQL/MariaDB it had to wait for that
# transaction to commit to find out), it picks at random among the first
# CANDIDATES for the next SPREAD_SECONDS, so concurrent allocators stop
# queueing on the same row. A lone allocator never loses: strict LRU order.
CANDIDATES = 64
# Without recent contention the first candidate wins: reading a few is enough
# (fetching 64 rows was a sixth of an uncontended allocation on SQLite).
FEW_CANDIDATES = 4
SPREAD_SECONDS = 2.0
MAC_ATTEMPTS = 5


@dataclasses.dataclass(frozen=True)
class Allocation:
    address: str
    mac: str
    network_id: int
    vif_id: int
    fixed_ip_id: int


# The hot path's statements are built once: composing them per call cost a
# third of an allocation's time (SQLAlchemy's expression coercions).
_CANDIDATES = (
    sa.select(FIXED_IPS.c.id, FIXED_IPS.c.address)
    .where(FIXED_IPS.c.network_id == sa.bindparam("b_network"))
    .where(free_address(FIXED_IPS))
    .order_by(FIXED_IPS.c.updated_at, FIXED_IPS.c.id)
    .limit(CANDIDATES)
)
_FEW_CANDIDATES = _CANDIDATES.limit(FEW_CANDIDATES)
_CLAIM = (
    FIXED_IPS.update()
    .where(FIXED_IPS.c.id == sa.bindparam("b_id"))
    .where(free_address(FIXED_IPS))
    .values(
        instance_uuid=sa.bindparam("b_instance"),
        virtual_interface_id=sa.bindparam("b_vif"),
        allocated=True,
        updated_at=sa.bindparam("b_now"),
    )
)
_INSERT_VIF = VIFS.insert()


def _candidates(conn: Connection, network_id: int, many: bool) -> list[tuple[int, str]]:
    statement = _CANDIDATES if many else _FEW_CANDIDATES
    return [(row[0], row[1]) for row in conn.execute(statement, {"b_network": network_id})]


def _claim(conn: Connection, fixed_ip_id: int, instance_uuid: str, vif_id: int) -> bool:
    params = {"b_id": fixed_ip_id, "b_instance": instance_uuid, "b_vif": vif_id, "b_now": utcnow()}
    return conn.execute(_CLAIM, params).rowcount == 1


def _insert_vif(conn: Connection, network_id: int, instance_uuid: str, mac: str) -> int:
    row = {
        "uuid": str(uuidlib.uuid4()),
        "address": mac,
        "network_id": network_id,
        "instance_uuid": instance_uuid,
        "created_at": utcnow(),
    }
    return inserted_id(conn.execute(_INSERT_VIF, row))


def _is_retryable(exc: OperationalError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return "deadlock" in text or "lock wait timeout" in text or "could not serialize" in text


def allocate_for_instance(
    db: Database,
    *,
    network_id: int,
    instance_uuid: str,
    mac: str | None = None,
    mac_attempts: int = MAC_ATTEMPTS,
    new_mac: Callable[[], str] = random_mac,
) -> Allocation:
    """Give an instance a VIF (MAC) and a fixed IP of the network, atomically.

    A generated MAC (``new_mac``) that happens to be taken (the unique index
    says so) is replaced by another, ``mac_attempts`` tries in all
    (create_unique_mac_address_attempts); a requested MAC that is taken is
    refused (Conflict). Either way nothing is left behind.
    """
    if mac is not None:
        mac = normalize_mac(mac)
    tries = 0
    deadlocks = 0
    while True:
        address_mac = mac or new_mac()
        try:
            with db.transaction() as conn:
                vif_id = _insert_vif(conn, network_id, instance_uuid, address_mac)
                won = _claim_any(db, conn, network_id, instance_uuid, vif_id)
                if won is None:
                    raise NoMoreFixedIps(f"no more fixed IPs in network {_cidr(conn, network_id)}")
                fixed_ip_id, address = won
                return Allocation(address, address_mac, network_id, vif_id, fixed_ip_id)
        except IntegrityError as exc:
            if not _is_duplicate_mac(exc):
                raise
            if mac is not None:
                raise Conflict(f"MAC address {mac} is already in use") from None
            tries += 1
            if tries >= mac_attempts:
                raise Conflict(
                    f"could not find a free MAC address in {mac_attempts} attempts "
                    "(create_unique_mac_address_attempts)"
                ) from None
        except OperationalError as exc:
            deadlocks += 1
            if not _is_retryable(exc) or deadlocks >= db.max_retries:
                raise


def _is_duplicate_mac(exc: IntegrityError) -> bool:
    text = str(exc.orig).lower()
    return (
        "virtual_interfaces" in text
        or "uq_virtual_interfaces_address" in text
        or ("unique" in text and "address" in text)
    )


def _claim_any(
    db: Database, conn: Connection, network_id: int, instance_uuid: str, vif_id: int
) -> tuple[int, str] | None:
    for _ in range(db.max_retries):
        contended = time.monotonic() < db.contention_until
        candidates = _candidates(conn, network_id, many=contended)
        if not candidates:
            return None
        if contended:
            random.shuffle(candidates)
        for index, (fixed_ip_id, address) in enumerate(candidates):
            if _claim(conn, fixed_ip_id, instance_uuid, vif_id):
                return fixed_ip_id, address
            if time.monotonic() >= db.contention_until:
                # first loss: the others are probably heading down the same list
                rest = candidates[index + 1 :]
                random.shuffle(rest)
                candidates[index + 1 :] = rest
            db.contention_until = time.monotonic() + SPREAD_SECONDS
    raise Conflict(
        f"lost the race for a free address {db.max_retries} times in a row; the pool is "
        "under heavy contention, try again"
    )


def _cidr(conn: Connection, network_id: int) -> str:

    cidr = conn.execute(sa.select(NETWORKS.c.cidr).where(NETWORKS.c.id == network_id)).scalar()
    if cidr is None:
        raise NotFound(f"network {network_id} does not exist")
    return str(cidr)


def deallocate_for_instance(db: Database, instance_uuid: str) -> list[tuple[str, str, int]]:
    """Mark the instance's addresses not allocated; returns (address, mac, network_id).

    The addresses stay associated (not reusable) until dnsmasq reports the
    lease gone or fixed_ip_disassociate_timeout passes.
    """
    with db.transaction() as conn:
        rows = conn.execute(
            sa.select(FIXED_IPS.c.id, FIXED_IPS.c.address, FIXED_IPS.c.network_id, VIFS.c.address)
            .join(VIFS, VIFS.c.id == FIXED_IPS.c.virtual_interface_id)
            .where(FIXED_IPS.c.instance_uuid == instance_uuid)
        ).all()
        if rows:
            conn.execute(
                FIXED_IPS.update()
                .where(FIXED_IPS.c.id.in_([r[0] for r in rows]))
                .values(allocated=False, updated_at=utcnow())
            )
    return [(r[1], r[3], r[2]) for r in rows]


def free_unleased(db: Database, instance_uuid: str) -> list[str]:
    """Return an instance's never-leased addresses to the pool at once.

    For an instance whose creation failed: no guest ever held a lease, so
    there is nothing to wait for. Leased addresses keep the normal path.
    """
    with db.transaction() as conn:
        rows = conn.execute(
            sa.select(FIXED_IPS.c.id, FIXED_IPS.c.address, FIXED_IPS.c.virtual_interface_id)
            .where(FIXED_IPS.c.instance_uuid == instance_uuid)
            .where(FIXED_IPS.c.leased.is_(False))
        ).all()
        _disassociate(conn, [r[0] for r in rows], [r[2] for r in rows])
    return [r[1] for r in rows]


def _disassociate(conn: Connection, ids: list[int], vif_ids: Iterable[int | None]) -> None:
    if not ids:
        return
    conn.execute(
        FIXED_IPS.update()
        .where(FIXED_IPS.c.id.in_(ids))
        .values(
            instance_uuid=None,
            virtual_interface_id=None,
            allocated=False,
            leased=False,
            host=None,
            updated_at=utcnow(),
        )
    )
    stale = [v for v in set(vif_ids) if v is not None]
    if stale:
        still_used = set(
            conn.execute(
                sa.select(FIXED_IPS.c.virtual_interface_id).where(
                    FIXED_IPS.c.virtual_interface_id.in_(stale)
                )
            ).scalars()
        )
        gone = [v for v in stale if v not in still_used]
        if gone:
            conn.execute(VIFS.delete().where(VIFS.c.id.in_(gone)))


def _owned(conn: Connection, address: str, mac: str) -> tuple[int, bool, int | None] | None:
    """(fixed ip id, allocated, vif id) if ``address`` is currently bound to ``mac``."""
    row = conn.execute(
        sa.select(FIXED_IPS.c.id, FIXED_IPS.c.allocated, FIXED_IPS.c.virtual_interface_id)
        .join(VIFS, VIFS.c.id == FIXED_IPS.c.virtual_interface_id)
        .where(FIXED_IPS.c.address == address)
        .where(VIFS.c.address == mac)
    ).first()
    return None if row is None else (row[0], bool(row[1]), row[2])


def lease_fixed_ip(db: Database, address: str, mac: str) -> bool:
    """dnsmasq ``add``: mark leased if the address belongs to that MAC."""
    mac = normalize_mac(mac)
    with db.transaction() as conn:
        owned = _owned(conn, address, mac)
        if owned is None:
            return False
        conn.execute(
            FIXED_IPS.update()
            .where(FIXED_IPS.c.id == owned[0])
            .values(leased=True, updated_at=utcnow())
        )
    return True


def release_fixed_ip(db: Database, address: str, mac: str) -> bool:
    """dnsmasq ``del``: clear leased; free the address if no longer allocated.

    nova's guard: a late ``del`` for an address that meanwhile went to another
    instance (another MAC) must not free it; it is ignored (returns False).
    """
    mac = normalize_mac(mac)
    with db.transaction() as conn:
        owned = _owned(conn, address, mac)
        if owned is None:
            return False
        fixed_ip_id, allocated, vif_id = owned
        if allocated:
            conn.execute(
                FIXED_IPS.update()
                .where(FIXED_IPS.c.id == fixed_ip_id)
                .values(leased=False, updated_at=utcnow())
            )
        else:
            _disassociate(conn, [fixed_ip_id], [vif_id])
    return True


def disassociate_stale(
    db: Database, timeout: int, now: datetime.datetime | None = None
) -> list[str]:
    """Free addresses deallocated more than ``timeout`` seconds ago; returns them."""
    cutoff = (now or utcnow()) - datetime.timedelta(seconds=timeout)
    with db.transaction() as conn:
        rows = conn.execute(
            sa.select(FIXED_IPS.c.id, FIXED_IPS.c.address, FIXED_IPS.c.virtual_interface_id)
            .where(FIXED_IPS.c.allocated.is_(False))
            .where(FIXED_IPS.c.instance_uuid.is_not(None))
            .where(FIXED_IPS.c.updated_at < cutoff)
        ).all()
        _disassociate(conn, [r[0] for r in rows], [r[2] for r in rows])
    return [r[1] for r in rows]


def set_reserved(db: Database, address: str, reserved: bool) -> None:
    """`fixed reserve` / `fixed unreserve` an address of some network."""
    networks = NETWORKS
    with db.transaction() as conn:
        row = conn.execute(
            sa.select(
                FIXED_IPS.c.id,
                FIXED_IPS.c.instance_uuid,
                FIXED_IPS.c.reserved,
                networks.c.cidr,
                networks.c.gateway,
                networks.c.dhcp_server,
                networks.c.broadcast,
            )
            .join(networks, networks.c.id == FIXED_IPS.c.network_id)
            .where(FIXED_IPS.c.address == address)
        ).first()
        if row is None:
            raise NotFound(f"fixed IP {address} does not exist in any network")
        if reserved and row.instance_uuid is not None:
            raise Conflict(f"fixed IP {address} is in use by instance {row.instance_uuid}")
        structural = {row.cidr.split("/")[0], row.gateway, row.dhcp_server, row.broadcast}
        if not reserved and address in structural:
            raise Conflict(
                f"fixed IP {address} is the network, gateway, DHCP server or broadcast "
                f"address of {row.cidr} and stays reserved"
            )
        conn.execute(
            FIXED_IPS.update()
            .where(FIXED_IPS.c.id == row.id)
            .values(reserved=reserved, updated_at=utcnow())
        )


def check_address(address: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.IPv4Address(address.strip()))
    except ValueError:
        raise UsageError(f"--address: {address!r} is not an IPv4 address") from None
