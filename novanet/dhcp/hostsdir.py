"""The large-network fast path: new hosts through ``--dhcp-hostsdir``, no SIGHUP.

What dnsmasq 2.90 does (tried on this machine; the functional tests in
tests/functional/test_dnsmasq_hostsdir.py check each point):

- A file that appears in the hostsdir is read at once through inotify
  (IN_CLOSE_WRITE, IN_MOVED_TO). Names starting with '.' or ending in '~' are
  skipped, so files are written under a dot name and renamed.
- A line whose address another config already holds is refused ("duplicate
  dhcp-host IP address ... at line N"): the older config keeps serving. A host
  in both the hostsfile and the hostsdir is therefore served once, from the
  hostsfile (read first on SIGHUP), with an error in dnsmasq's log.
- Configs are prepended to dnsmasq's list: for a MAC present twice the newest
  config wins. A ``MAC,ignore`` line makes dnsmasq ignore a host it still has
  from the hostsfile, and it still processes that host's DHCPRELEASE (used
  by release(): forgetting one host costs one small file, not a SIGHUP).
- A deleted or rewritten file changes nothing until SIGHUP. SIGHUP drops every
  hostsfile and hostsdir config, then reads the hostsfile and every file of
  the hostsdir again.

What a file costs dnsmasq (its main loop answers no DHCP meanwhile): the
duplicate check, O(lines x hosts), about 1.3 ms a line at 50,000 hosts on
the test machine (so a burst is written in pieces, see sync.lines_per_file);
then a refresh of every lease it holds against the configs and a rebuild of
the DNS names of the leases (lease_update_from_configs, lease_update_dns),
O(leases x hosts) and more: at 10,000 hosts a new host is answered 0.12 s
after reload_allocations with no lease in dnsmasq's memory, 0.38 s with
1,000 leases, 2.5 s with 5,000 and 8 s with 10,000, about what a SIGHUP
costs then. The fast path removes the hostsfile's quadratic re-read; the
lease-proportional cost is dnsmasq's own and only fewer reloads reduce it.

So additions are files; removals only become "stale" (dnsmasq keeps serving a
MAC nobody has, which is harmless) until a compaction: write the hostsfile
with every host, empty the directory, one SIGHUP. A compaction is needed when
an address still held by a stale config is handed to a new MAC (dnsmasq would
refuse the new line), and is done anyway every ``compact_interval`` seconds
while stale configs exist, or when the directory holds ``max_files`` files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from novanet.dhcp.hostsfile import HostEntry, write_atomic


@dataclass
class LoadedHosts:
    """What the running dnsmasq holds (as far as the driver knows)."""

    active: dict[str, HostEntry] = field(default_factory=dict)
    stale: dict[str, HostEntry] = field(default_factory=dict)
    ignored: set[str] = field(default_factory=set)
    ips: dict[int, str] = field(default_factory=dict)
    files: int = 0
    last_compaction: float = 0.0

    @classmethod
    def fresh(cls, entries: Iterable[HostEntry], now: float) -> LoadedHosts:
        """dnsmasq has just read a hostsfile with ``entries`` and an empty hostsdir."""
        active = {e.mac: e for e in entries}
        return cls(
            active=active,
            ips={e.sort_key: e.mac for e in active.values()},
            last_compaction=now,
        )


@dataclass(frozen=True)
class Update:
    """What one reload does to dnsmasq on the fast path."""

    compact: str | None = None  # why a full rewrite + SIGHUP is needed, or None
    add: tuple[HostEntry, ...] = ()
    ignore: tuple[str, ...] = ()
    revive: tuple[str, ...] = ()  # stale MACs wanted again, unchanged: nothing to do
    removed: tuple[str, ...] = ()  # MACs that become stale

    @property
    def writes_file(self) -> bool:
        return self.compact is None and bool(self.add or self.ignore)


def plan(
    loaded: LoadedHosts,
    desired: Mapping[str, HostEntry],
    changed: Iterable[str],
    forget: Iterable[str],
    now: float,
    *,
    compact_interval: float,
    max_files: int,
) -> Update:
    """Compare what dnsmasq holds with ``desired`` (MAC -> entry).

    ``changed``: the MACs whose desired entry may differ from what dnsmasq
    holds (every change since the last update that reached dnsmasq); only
    they are looked at, so a reload of a 50,000-host network stays cheap.
    ``forget``: MACs (no longer desired) that dnsmasq must stop serving now,
    before a DHCPRELEASE is sent for them.
    """
    add: list[HostEntry] = []
    revive: list[str] = []
    removed: list[str] = []
    conflict: str | None = None
    for mac in sorted(set(changed)):
        entry = desired.get(mac)
        current = loaded.active.get(mac)
        if entry is None:
            if current is not None:
                removed.append(mac)
            continue
        if current == entry:
            continue
        if current is not None:
            conflict = f"host {mac} changed from {current.address} to {entry.address}"
            break
        stale = loaded.stale.get(mac)
        if stale is not None:
            if stale == entry and mac not in loaded.ignored:
                revive.append(mac)
                continue
            conflict = f"host {mac} is back with a different entry"
            break
        holder = loaded.ips.get(entry.sort_key)
        if holder is not None and holder != mac:
            conflict = f"address {entry.address} is still held by {holder} in dnsmasq"
            break
        add.append(entry)
    ignore = tuple(
        sorted(
            mac
            for mac in set(forget)
            if mac not in desired
            and mac not in loaded.ignored
            and (mac in loaded.active or mac in loaded.stale)
        )
    )
    if conflict is None and loaded.files + 1 > max_files and (add or ignore):
        conflict = f"the hostsdir holds {loaded.files} files"
    due = now - loaded.last_compaction >= compact_interval
    if conflict is None and (loaded.stale or removed) and due:
        conflict = "stale hosts older than the compaction interval"
    if conflict is not None:
        return Update(compact=conflict)
    add.sort(key=lambda e: e.sort_key)
    return Update(add=tuple(add), ignore=ignore, revive=tuple(revive), removed=tuple(removed))


def apply(loaded: LoadedHosts, update: Update) -> None:
    """Record that ``update`` (not a compaction) reached dnsmasq."""
    if update.compact is not None:
        raise ValueError("a compaction replaces LoadedHosts (LoadedHosts.fresh)")
    for entry in update.add:
        loaded.active[entry.mac] = entry
        loaded.ips[entry.sort_key] = entry.mac
    for mac in update.revive:
        loaded.active[mac] = loaded.stale.pop(mac)
    for mac in update.removed:
        loaded.stale[mac] = loaded.active.pop(mac)
    loaded.ignored.update(update.ignore)
    if update.writes_file:
        loaded.files += 1


def file_text(update: Update, domain: str, tagged: bool = False) -> str:
    """A hostsdir file: the new hosts' lines, then ``MAC,ignore`` lines."""
    lines = [entry.line(domain, tagged) for entry in update.add]
    lines += [f"{mac},ignore" for mac in update.ignore]
    return "".join(line + "\n" for line in lines)


def write_file(directory: str, seq: int, text: str) -> str:
    """Write one hostsdir file atomically (dot temp name, then rename)."""
    path = os.path.join(directory, f"{seq:010d}")
    write_atomic(path, text)
    return path


def ensure_dir(directory: str) -> None:
    os.makedirs(directory, mode=0o755, exist_ok=True)


def clear_dir(directory: str) -> None:
    """Remove every file of the hostsdir (dnsmasq notices only at the next SIGHUP)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(directory, name))
        except (FileNotFoundError, IsADirectoryError):
            pass


def remove_dir(directory: str) -> None:
    clear_dir(directory)
    try:
        os.rmdir(directory)
    except (FileNotFoundError, OSError):
        pass


def last_seq(directory: str) -> int:
    """The highest file number in the hostsdir (0 if none): numbering continues."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    return max((int(n) for n in names if n.isdigit()), default=0)
