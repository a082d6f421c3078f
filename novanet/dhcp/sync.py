"""One network's dnsmasq kept in step: files, start/restart, SIGHUP, hostsdir.

:class:`NetworkSync` holds what the driver knows of one network's dnsmasq
(what it has read, which hostsdir files it holds) and does one
synchronisation at a time; callers hold its ``lock``. The public interface
is :class:`novanet.dhcp.driver.DnsmasqDriver`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from novanet.dhcp import argv as dnsmasq_argv
from novanet.dhcp import hostsdir, hostsfile
from novanet.dhcp.hostset import HostSet
from novanet.dhcp.hostsfile import HostEntry
from novanet.dhcp.models import DhcpHost, DhcpNetwork
from novanet.dhcp.reloader import CoalescingReloader
from novanet.linux.process import ManagedProcess

LOG = logging.getLogger(__name__)

HostsProvider = Callable[[int], Sequence[DhcpHost]]
CommandFactory = Callable[[DhcpNetwork, bool], dnsmasq_argv.DnsmasqCommand]

# A coalesced reload does not SIGHUP a dnsmasq that is still busy (state R)
# with the previous re-read, since every SIGHUP queues one more complete
# re-read (5 SIGHUPs to a 20,000-host dnsmasq: 5 s of no DHCP); it retries
# after dnsmasq_reload_delay, and sends anyway after this many seconds.
MAX_DEFER = 60.0

# A network that went above the threshold keeps the hostsdir until it falls
# below 90 % of it: switching costs a dnsmasq restart, and a network hovering
# around the threshold would otherwise restart dnsmasq on every other change.
HYSTERESIS = 0.9


# Work budget of one hostsdir file during a burst, in (lines x hosts)
# comparisons of dnsmasq's duplicate check: about 160 ms of dnsmasq's time on
# the test machine (120 lines at 50,000 hosts), so that a burst of 1,000
# allocations reaches dnsmasq as at most 10 files at 50,000 hosts. Each file
# also makes dnsmasq re-match every lease it holds, so fewer, bigger files
# finish a burst sooner; a single allocation is one line whatever this is.
FILE_WORK = 6_000_000


def unreadable_by_others(path: str) -> str | None:
    """The first directory (or the file) on ``path`` that 'other' users cannot pass.

    dnsmasq reads its files after dropping root for user nobody: a hostsfile
    under a 0700 directory gives "cannot read ...: Permission denied" in its
    log, and no DHCP answer for anyone.
    """
    if os.path.exists(path) and not os.stat(path).st_mode & 0o004:
        return path
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        if os.path.isdir(directory) and not os.stat(directory).st_mode & 0o001:
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def _one_network(network: DhcpNetwork) -> ipaddress.IPv4Network | None:
    """The network every host's address must be in; None for a bridge serving several
    (the hosts provider gives each network's own hosts)."""
    if network.more:
        return None
    return ipaddress.IPv4Network(network.cidr, strict=False)


def lines_per_file(hosts: int) -> int:
    """How many new hosts one hostsdir file may carry (600 at 10,000 hosts, 120 at 50,000)."""
    return max(16, min(2000, FILE_WORK // max(1, hosts)))


@dataclasses.dataclass
class DriverStats:
    """Counters per network (for logs, tests and the benchmark)."""

    reloads: int = 0
    hostsfile_writes: int = 0
    hostsdir_files: int = 0
    hups: int = 0
    starts: int = 0
    stops: int = 0
    compactions: int = 0
    releases: int = 0


@dataclasses.dataclass(frozen=True)
class SyncSettings:
    """What every network's synchronisation shares (from the driver)."""

    hosts_provider: HostsProvider
    command: CommandFactory  # (network, use_hostsdir) -> dnsmasq command
    domain: str
    tagged: bool  # use_single_default_gateway: host tags and the opts file
    hostsdir_threshold: int
    compact_interval: float
    max_files: int
    clock: Callable[[], float]


class NetworkSync:
    """The driver's state for one network, and its synchronisation (lock held)."""

    def __init__(
        self,
        network: DhcpNetwork,
        files: dnsmasq_argv.NetworkFiles,
        process: ManagedProcess,
        settings: SyncSettings,
    ) -> None:
        self.network = network
        self.files = files
        self.process = process
        self.settings = settings
        self.lock = threading.RLock()
        self.reloader: CoalescingReloader  # set by the driver
        self.hostset = HostSet(_one_network(network))
        self.pending: set[str] = set()  # MACs changed since dnsmasq last caught up
        self.enabled = False
        self.loaded: hostsdir.LoadedHosts | None = None  # fast path: what dnsmasq holds
        self.written: str | None = None  # seed mode: hostsfile text dnsmasq last read
        self.forget: set[str] = set()
        self.deferred_since: float | None = None  # a SIGHUP waits for dnsmasq to idle
        self.seq = 0
        self.stats = DriverStats()

    def set_network(self, network: DhcpNetwork) -> None:
        if self.network.bridge != network.bridge:
            raise ValueError(
                f"network {network.id} moved from {self.network.bridge} to "
                f"{network.bridge}: disable it first"
            )
        if _one_network(self.network) != _one_network(network) or self.network.more != network.more:
            self.hostset = HostSet(_one_network(network))
            self.loaded = None  # start over: full rewrite at the next reload
        self.network = network

    def remove_files(self) -> None:
        for path in (self.files.hostsfile, self.files.pid_file, self.files.opts_file):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        hostsdir.remove_dir(self.files.hostsdir)

    def _wants_hostsdir(self, count: int, running: tuple[str, ...] | None) -> bool:
        threshold = self.settings.hostsdir_threshold
        if threshold <= 0:
            return False
        if count > threshold:
            return True
        had = running is not None and any(a.startswith("--dhcp-hostsdir=") for a in running)
        return had and count > threshold * HYSTERESIS

    def sync(self, *, full: bool, urgent: bool) -> None:
        """Make dnsmasq serve exactly the provider's hosts (self.lock held).

        Not ``urgent`` (a coalesced reload): a SIGHUP that dnsmasq is too
        busy to take now is left to a later run (see MAX_DEFER).
        """
        self.stats.reloads += 1
        self.pending |= self.hostset.update(self.settings.hosts_provider(self.network.id))
        entries = list(self.hostset.entries.values())
        running = self.process.cmdline()
        use_hostsdir = self._wants_hostsdir(len(entries), running)
        command = self.settings.command(self.network, use_hostsdir)
        done = True
        if running != command.argv or not self._env_matches(command):
            self._restart(command, entries, running is not None)
        elif use_hostsdir:
            done = self._sync_hostsdir(entries, full, urgent)
        else:
            done = self._sync_hostsfile(entries, full, urgent)
        if not done:
            self.reloader.request()  # runs again after dnsmasq_reload_delay
            return
        self.deferred_since = None
        self.pending.clear()
        self.forget.clear()

    def _must_wait(self, urgent: bool) -> bool:
        """A non-urgent SIGHUP or hostsdir file waits while dnsmasq is busy."""
        if urgent or not self.process.is_busy():
            return False
        now = self.settings.clock()
        if self.deferred_since is None:
            self.deferred_since = now
        if now - self.deferred_since < MAX_DEFER:
            return True
        LOG.warning("dnsmasq for %s busy for %.0f s; going ahead", self.network.bridge, MAX_DEFER)
        return False

    def _env_matches(self, command: dnsmasq_argv.DnsmasqCommand) -> bool:
        env = self.process.environ()
        if env is None:  # not readable: do not restart for that alone
            return True
        return all(env.get(key) == value for key, value in command.env.items())

    def _restart(
        self,
        command: dnsmasq_argv.DnsmasqCommand,
        entries: list[HostEntry],
        running: bool,
    ) -> None:
        if command.uses_hostsdir:
            hostsdir.ensure_dir(self.files.hostsdir)
            self.seq = max(self.seq, hostsdir.last_seq(self.files.hostsdir))
            hostsdir.clear_dir(self.files.hostsdir)
        else:
            hostsdir.remove_dir(self.files.hostsdir)
        text = self._write_hostsfile(entries)
        if running:
            LOG.info("restarting dnsmasq for %s: its arguments changed", self.network.bridge)
            if self.process.stop():
                self.stats.stops += 1
        self.loaded = None
        self.written = None
        unreadable = unreadable_by_others(self.files.hostsfile)
        if unreadable:
            LOG.error(
                "dnsmasq drops to user nobody and will not be able to re-read %s: "
                "%s is mode %04o (every directory on the way needs o+x)",
                self.files.hostsfile,
                unreadable,
                os.stat(unreadable).st_mode & 0o7777,
            )
        self.process.start(command.argv, command.env)
        self.stats.starts += 1
        self.written = text
        if command.uses_hostsdir:
            self.loaded = hostsdir.LoadedHosts.fresh(entries, self.settings.clock())

    def _sync_hostsfile(self, entries: list[HostEntry], full: bool, urgent: bool) -> bool:
        text = hostsfile.hostsfile_text(entries, self.settings.domain, self.settings.tagged)
        if not full and text == self.written:
            return True  # dnsmasq already serves exactly this
        if self._must_wait(urgent):
            return False
        self.written = None
        self._write_hostsfile(entries, text)
        self._hup()
        self.written = text
        return True

    def _sync_hostsdir(self, entries: list[HostEntry], full: bool, urgent: bool) -> bool:
        desired = self.hostset.entries
        loaded = self.loaded
        if full or loaded is None:
            if self._must_wait(urgent):
                return False
            self._compact(entries, "full reload")
            return True
        still_wanted = self.forget & desired.keys()
        if still_wanted:
            LOG.warning(
                "releasing %s, which the hosts provider still returns", sorted(still_wanted)
            )
        update = hostsdir.plan(
            loaded,
            desired,
            self.pending | self.forget,
            self.forget,
            self.settings.clock(),
            compact_interval=self.settings.compact_interval,
            max_files=self.settings.max_files,
        )
        if update.compact is not None:
            if self._must_wait(urgent):
                return False
            self._compact(entries, update.compact)
            return True
        if not update.writes_file:
            hostsdir.apply(loaded, update)
            return True
        if self._must_wait(urgent):
            return False
        # dnsmasq checks each new line against every config it holds: a file
        # of k lines keeps it from answering DHCP for k x hosts comparisons
        # (about 1.3 ms a line at 50,000 hosts here). A burst is therefore
        # written in pieces, one per run, each when dnsmasq is idle again.
        limit = len(update.add) if urgent else lines_per_file(len(desired))
        chunk = update if len(update.add) <= limit else replace(update, add=update.add[:limit])
        self.seq += 1
        hostsdir.write_file(
            self.files.hostsdir,
            self.seq,
            hostsdir.file_text(chunk, self.settings.domain, self.settings.tagged),
        )
        self.stats.hostsdir_files += 1
        self.deferred_since = None
        hostsdir.apply(loaded, chunk)
        return chunk is update

    def _compact(self, entries: list[HostEntry], reason: str) -> None:
        LOG.info("dnsmasq %s: rewriting the hostsfile and SIGHUP (%s)", self.network.bridge, reason)
        self.loaded = None
        self._write_hostsfile(entries)
        hostsdir.ensure_dir(self.files.hostsdir)
        hostsdir.clear_dir(self.files.hostsdir)
        self._hup()
        self.stats.compactions += 1
        self.loaded = hostsdir.LoadedHosts.fresh(entries, self.settings.clock())

    def _write_hostsfile(self, entries: list[HostEntry], text: str | None = None) -> str:
        if text is None:
            text = hostsfile.hostsfile_text(entries, self.settings.domain, self.settings.tagged)
        os.makedirs(os.path.dirname(self.files.hostsfile) or ".", mode=0o755, exist_ok=True)
        if self.settings.tagged:
            # Before the hostsfile: dnsmasq re-reads both on the SIGHUP that
            # follows. Hosts that reach dnsmasq through the hostsdir get their
            # line at the next compaction; until then dnsmasq gives them its
            # own address as router, which is the gateway of every network
            # novanet creates.
            opts = hostsfile.opts_text(entries, self.network.gateway)
            hostsfile.write_atomic(self.files.opts_file, opts)
        hostsfile.write_atomic(self.files.hostsfile, text)
        self.stats.hostsfile_writes += 1
        return text

    def _hup(self) -> None:
        if self.process.hup():
            self.stats.hups += 1
            return
        # It died between the check and the signal: start it on the new files.
        LOG.warning("dnsmasq for %s vanished before SIGHUP; starting it", self.network.bridge)
        entries = list(self.hostset.entries.values())
        command = self.settings.command(self.network, self._wants_hostsdir(len(entries), None))
        self._restart(command, entries, running=False)

    def compaction_due(self) -> bool:
        loaded = self.loaded
        return (
            loaded is not None
            and bool(loaded.stale)
            and self.settings.clock() - loaded.last_compaction >= self.settings.compact_interval
        )
