"""dnsmasq's lease events (from novanet-dhcpbridge), handled on the database.

The same code runs in the daemon (events arriving over its unix socket) and
in novanet-dhcpbridge itself when the daemon is not running.
"""

from __future__ import annotations

import calendar
import datetime
import ipaddress
import json
import logging
import os
import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from novanet.db.api import Database
from novanet.db.models import utcnow
from novanet.exception import NovanetError
from novanet.ipam import networks, pool, queries

LOG = logging.getLogger(__name__)

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def lease_lines(
    db: Database, network_id: int, lease_time: int, now: datetime.datetime | None = None
) -> str:
    """The lease database for dnsmasq's ``init``: ``EXPIRY MAC IP HOSTNAME *`` lines.

    A renewal reaches the dhcp-script as ``old``, which novanet ignores (it
    costs a process per lease per reload), so the database knows when a
    lease was granted, not when it was last renewed. Reporting "granted +
    lease time" made a restarted dnsmasq drop, as expired, every lease older
    than one lease time while its guest still renewed it. As nova did, an
    address still allocated to its instance is reported as leased for a
    full lease time from now: the guest renews within that time, or dnsmasq
    expires it then. A deallocated address (its instance is gone) keeps
    "deallocated + lease time", so a forgotten lease runs out. One dnsmasq
    serves every network on its bridge: their leases are its leases.
    """
    now = now or utcnow()
    lines = []
    for lease in (
        lease
        for net_id in networks.sharing_bridge(db, network_id)
        for lease in queries.leases_for_network(db, net_id)
    ):
        since = now if lease.allocated else lease.updated_at
        expiry = calendar.timegm(since.utctimetuple()) + lease_time
        lines.append(f"{expiry} {lease.mac} {lease.address} {lease.hostname or '*'} *\n")
    return "".join(lines)


# Network ids are INTEGER columns; a larger number cannot name a network
# (and SQLite overflows on it instead of answering "not found").
MAX_NETWORK_ID = 2**31 - 1


def handle(db: Database, lease_time: int, event: Mapping[str, Any]) -> dict[str, Any]:
    """Apply one event; returns the reply sent back to novanet-dhcpbridge."""
    try:
        action = event.get("action")
        network_id = event.get("network_id")
        if not isinstance(network_id, int) or isinstance(network_id, bool):
            return {"ok": False, "code": 2, "error": "network_id must be an integer"}
        if not 1 <= network_id <= MAX_NETWORK_ID:
            return {
                "ok": False,
                "code": 2,
                "error": f"network_id must be between 1 and {MAX_NETWORK_ID}",
            }
        networks.get_network(db, network_id)  # NotFound for a stale dnsmasq
        if action == "init":
            return {"ok": True, "output": lease_lines(db, network_id, lease_time)}
        if action == "old":
            return {"ok": True}
        mac, address = event.get("mac"), event.get("address")
        if not isinstance(mac, str) or not _MAC.match(mac) or not _is_ipv4(address):
            return {"ok": False, "code": 2, "error": "bad mac or address"}
        if action == "add":
            done = pool.lease_fixed_ip(db, address, mac)
            if not done:
                LOG.warning(
                    "dnsmasq leased %s to %s, which novanet did not allocate to it", address, mac
                )
            else:
                LOG.info("leased %s to %s", address, mac)
            return {"ok": True}
        if action == "del":
            done = pool.release_fixed_ip(db, address, mac)
            if not done:
                # nova's guard: the address now belongs to someone else (or nobody).
                LOG.info("ignored the release of %s by %s: not its address any more", address, mac)
            else:
                LOG.info("released %s from %s", address, mac)
            return {"ok": True}
        return {"ok": False, "code": 2, "error": f"unknown action {action!r}"}
    except NovanetError as exc:
        return {"ok": False, "code": exc.exit_code, "error": str(exc)}


def _is_ipv4(value: object) -> TypeGuard[str]:
    if not isinstance(value, str) or len(value) > 15:
        return False
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def handle_direct(event: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """novanet-dhcpbridge's fallback: load the configuration, open the database, handle."""
    from novanet import conf as novanet_conf
    from novanet.conf import loader

    conf = novanet_conf.new_conf()
    raw = environ.get("NOVANET_CONFIG_FILES", "[]")
    try:
        sources = [loader.Source(kind, path) for kind, path in json.loads(raw)]
    except (ValueError, TypeError):
        return {
            "ok": False,
            "code": 2,
            "error": f"NOVANET_CONFIG_FILES is not a JSON list: {raw!r}",
        }
    try:
        loader.load(conf, sources, prog="novanet-dhcpbridge")
    except loader.ConfigError as exc:
        return {"ok": False, "code": 2, "error": str(exc)}
    db = Database.from_conf(conf)
    try:
        return handle(db, conf.dhcp_lease_time, event)
    finally:
        db.dispose()


def dhcpbridge_environment(
    conf_sources: list[tuple[str, str]], network_id: int, socket_path: str
) -> dict[str, str]:
    """What novanet-network puts in dnsmasq's environment for its dhcp-script."""
    return {
        "NOVANET_NETWORK_ID": str(network_id),
        "NOVANET_CONFIG_FILES": json.dumps(
            [[kind, os.path.abspath(path)] for kind, path in conf_sources]
        ),
        "NOVANET_DHCPBRIDGE_SOCKET": socket_path,
    }
