"""Which instance is asking: the instance whose fixed IP is the request's source address.

The address is the TCP peer's and nothing else (never X-Forwarded-For or any
other header: an instance could claim to be another one). The controller's
DNAT of 169.254.169.254 keeps the source address, and its POSTROUTING
``-s <cidr> -d <metadata_host>/32 -j ACCEPT`` keeps the SNAT off it.

An address identifies an instance only while it is allocated to it
(``allocated`` and ``instance_uuid`` set): a deallocated address whose lease
the guest still holds belongs to nobody.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from novanet.db.api import Database
from novanet.db.models import FIXED_IPS, INSTANCES, NETWORKS, VIFS
from novanet.metadata.model import InstanceMetadata

# Bound on remembered addresses when the cache is on (a /16 of instances).
CACHE_MAX_ENTRIES = 65536


def normalize_address(address: str) -> str | None:
    """The peer address as stored in fixed_ips (IPv4-mapped IPv6 unwrapped), or None."""
    try:
        # The common case, cheaply: ipaddress costs more than the query's BEGIN.
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, address))
    except OSError:
        pass
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def security_groups(db: Database, instance_uuid: str) -> tuple[str, ...]:
    """The names of the instance's security groups (EC2 ``security-groups``), sorted.

    An instance taken out of every group has none (nova listed none either).
    """
    from novanet.db import secgroups

    return secgroups.groups_of(db, instance_uuid)


def floating_ips(db: Database, instance_uuid: str) -> tuple[str, ...]:
    """The instance's floating IPs, first associated first (EC2 ``public-ipv4``)."""
    from novanet.db import floating

    return tuple(floating.of_instances(db, [instance_uuid])[instance_uuid])


@functools.cache
def _statement() -> sa.Select[Any]:
    # Built once: constructing the select costs more than running it on SQLite.
    return (
        sa.select(
            INSTANCES.c.id,
            INSTANCES.c.uuid,
            INSTANCES.c.display_name,
            INSTANCES.c.hostname,
            FIXED_IPS.c.address,
            INSTANCES.c.user_data,
            INSTANCES.c.public_key,
            VIFS.c.address,
            VIFS.c.uuid,
            INSTANCES.c.vif_devname,
            NETWORKS.c.uuid,
            NETWORKS.c.netmask,
            NETWORKS.c.gateway,
            NETWORKS.c.dhcp_server,
        )
        .join(INSTANCES, INSTANCES.c.uuid == FIXED_IPS.c.instance_uuid)
        .join(NETWORKS, NETWORKS.c.id == FIXED_IPS.c.network_id)
        .outerjoin(VIFS, VIFS.c.id == FIXED_IPS.c.virtual_interface_id)
        .where(FIXED_IPS.c.address == sa.bindparam("address"))
        .where(FIXED_IPS.c.allocated.is_(True))
        .where(FIXED_IPS.c.instance_uuid.is_not(None))
        .limit(1)
    )


def find_by_address(db: Database, address: str) -> InstanceMetadata | None:
    """The instance holding ``address`` right now, or None."""
    normalized = normalize_address(address)
    if normalized is None:
        return None
    with db.reader() as conn:
        row = conn.execute(_statement(), {"address": normalized}).first()
    if row is None:
        return None
    return InstanceMetadata(
        id=int(row[0]),
        uuid=row[1],
        name=row[2],
        hostname=row[3],
        fixed_ip=row[4],
        user_data=row[5],
        public_key=row[6],
        mac=row[7],
        vif_uuid=row[8],
        devname=row[9],
        network_uuid=row[10],
        netmask=row[11],
        gateway=row[12],
        dhcp_server=row[13],
        security_groups=security_groups(db, row[1]),
        floating_ips=floating_ips(db, row[1]),
    )


class InstanceLookup:
    """find_by_address with an optional short per-address memory.

    With ``cache_ttl`` 0 every call reads the database. With a TTL, an
    answer (also "nobody") is reused for that many seconds: an instance
    created or deleted meanwhile is seen up to ``cache_ttl`` late.
    """

    def __init__(
        self,
        db: Database,
        *,
        cache_ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, InstanceMetadata | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, address: str) -> InstanceMetadata | None:
        if self.cache_ttl <= 0:
            return find_by_address(self.db, address)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(address)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = find_by_address(self.db, address)
        with self._lock:
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
            self._cache[address] = (now + self.cache_ttl, found)
        return found
