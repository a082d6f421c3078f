"""The hosts a network's dnsmasq must serve, kept up to date incrementally.

The hosts provider returns the whole list on every reload. For a network of
50,000 hosts, validating and de-duplicating it again each time costs a few
hundred milliseconds of Python, more than the whole latency budget of the
fast path. :class:`HostSet` compares the raw rows with the previous call's
(a set difference) and validates and applies only the rows that changed,
falling back to the full computation when a change touches nova's
one-address-per-MAC or one-MAC-per-address rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from novanet.dhcp.hostsfile import (
    HostEntry,
    InvalidHost,
    log_reject,
    one_per_mac_and_ip,
    validate_host,
)
from novanet.dhcp.models import DhcpHost

# A raw row as one string, "MAC\0HOSTNAME\0ADDRESS": strings are not tracked
# by Python's cyclic garbage collector, tuples are, and building 50,000 new
# tuples per reload set off full collections worth tens of milliseconds.
RowKey = str


class HostSet:
    """Validated hosts of one network: ``entries`` maps MAC -> :class:`HostEntry`."""

    def __init__(
        self,
        network: ipaddress.IPv4Network | None = None,
        on_reject: Callable[[DhcpHost, str], None] = log_reject,
    ) -> None:
        self.network = network
        self.entries: dict[str, HostEntry] = {}
        self._on_reject = on_reject
        self._verdicts: dict[RowKey, HostEntry | str] = {}
        self._keys: set[RowKey] = set()
        self._ips: set[int] = set()  # addresses of ``entries``
        # True when some valid row is shadowed (a MAC's second address, or an
        # address given twice): an incremental change could then reveal it.
        self._shadowed = False

    def update(self, hosts: Iterable[DhcpHost]) -> set[str]:
        """Take the provider's full list; return the MACs whose entry changed."""
        keys = {f"{h.mac}\0{h.hostname}\0{h.address}" for h in hosts}
        added = keys - self._keys
        removed = self._keys - keys
        if not added and not removed:
            return set()
        if self._shadowed or len(added) + len(removed) > max(64, len(keys) // 8):
            return self._full(keys)
        changed = self._incremental(added, removed)
        if changed is None:
            return self._full(keys)
        self._keys = keys
        return changed

    def _verdict(self, key: RowKey) -> HostEntry | str:
        verdict = self._verdicts.get(key)
        if verdict is None:
            fields = key.split("\0")
            host = DhcpHost(*fields) if len(fields) == 3 else DhcpHost(key, "", "")
            try:
                if len(fields) != 3:
                    raise InvalidHost("NUL character in the row")
                verdict = validate_host(host, self.network)
            except InvalidHost as exc:
                verdict = str(exc)
                self._on_reject(host, verdict)
            self._verdicts[key] = verdict
        return verdict

    def _incremental(self, added: set[RowKey], removed: set[RowKey]) -> set[str] | None:
        """Apply a small change, or return None (nothing touched) if it needs the full rules."""
        gone: dict[str, HostEntry] = {}
        for key in removed:
            verdict = self._verdicts.get(key)
            if isinstance(verdict, HostEntry) and self.entries.get(verdict.mac) == verdict:
                gone[verdict.mac] = verdict
        freed = {e.sort_key for e in gone.values()}
        new: dict[str, HostEntry] = {}
        taken: set[int] = set()
        for key in added:
            verdict = self._verdict(key)
            if isinstance(verdict, str):
                continue
            mac, ip = verdict.mac, verdict.sort_key
            if (mac in self.entries and mac not in gone) or mac in new:
                return None  # a MAC with two addresses
            if (ip in self._ips and ip not in freed) or ip in taken:
                return None  # an address given twice
            new[mac] = verdict
            taken.add(ip)
        for key in removed:
            del self._verdicts[key]
        for mac, entry in gone.items():
            del self.entries[mac]
            self._ips.discard(entry.sort_key)
        self.entries.update(new)
        self._ips.update(taken)
        return set(gone) | set(new)

    def _full(self, keys: set[RowKey]) -> set[str]:
        valid = []
        for key in keys:
            verdict = self._verdict(key)
            if isinstance(verdict, HostEntry):
                valid.append(verdict)
        self._verdicts = {k: self._verdicts[k] for k in keys}
        chosen = one_per_mac_and_ip(valid, self._on_reject)
        self._shadowed = len(chosen) != len(valid)
        old, self.entries = self.entries, {e.mac: e for e in chosen}
        self._ips = {e.sort_key for e in chosen}
        self._keys = keys
        return {
            mac for mac in old.keys() | self.entries.keys() if old.get(mac) != self.entries.get(mac)
        }
