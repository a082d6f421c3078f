"""DnsmasqDriver: one dnsmasq per network, kept in step with the allocated hosts.

Interface (neutron-like)::

    driver = DnsmasqDriver(conf, hosts_provider)   # hosts_provider(network_id) -> [DhcpHost]
    driver.enable(network)               # files + (re)start or SIGHUP; raises on failure
    driver.reload_allocations(network)   # coalesced; never raises (errors are logged)
    driver.flush(network)                # synchronous reload; raises
    driver.release(network, address, mac)  # forget the host, then dhcp_release
    driver.active(network) -> bool
    driver.check_alive() -> [network ids restarted]   # call every dnsmasq_check_interval
    driver.disable(network)              # stop dnsmasq, remove its files

Each network has a lock; the hosts provider is called with it held, each
time the driver writes dnsmasq's files. See hostsdir.py for the fast path of
networks with more than ``dhcp_hostsdir_threshold`` hosts.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from oslo_config import cfg

from novanet.dhcp import argv as dnsmasq_argv
from novanet.dhcp import hostsfile
from novanet.dhcp.models import DhcpHost, DhcpNetwork
from novanet.dhcp.reloader import CoalescingReloader
from novanet.dhcp.sync import DriverStats, HostsProvider, NetworkSync, SyncSettings
from novanet.linux import processutils
from novanet.linux.process import Execute, PidFileProcess, ProcessFactory

LOG = logging.getLogger(__name__)

__all__ = ["DnsmasqDriver", "DriverStats", "HostsProvider"]


class DnsmasqDriver:
    """Runs and feeds one dnsmasq per network.

    :param hosts_provider: network id -> the hosts that must get DHCP now
    :param process_factory: (pid_file, marker) -> process handle; default
        :class:`PidFileProcess` with ``execute``
    :param execute: runs dnsmasq and dhcp_release (a wrapper may add
        ``ip netns exec``)
    :param script_env: environment for the dhcp-script (see
        :func:`novanet.dhcp.argv.build_command`), e.g. ``NOVANET_CONFIG_FILES``
    :param extra_args: appended to dnsmasq's argv (debugging and tests only)
    :param compact_interval: seconds between compactions of the hostsdir while
        removed hosts linger in dnsmasq (default: half of
        fixed_ip_disassociate_timeout, so a removed address is out of dnsmasq
        before the pool may hand it out again)
    :param max_hostsdir_files: compact when the hostsdir holds this many files
    :param clock: monotonic clock for the compaction interval (tests)
    :param reloader: makes each network's :class:`CoalescingReloader` from
        (action, delay, name=...); tests pass one with their own ``spawn``
        and ``clock`` to run the coalesced reloads when they choose
    """

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        hosts_provider: HostsProvider,
        *,
        process_factory: ProcessFactory | None = None,
        execute: Execute = processutils.execute,
        script_env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        dnsmasq: str = dnsmasq_argv.DNSMASQ,
        compact_interval: float | None = None,
        max_hostsdir_files: int = 256,
        clock: Callable[[], float] = time.monotonic,
        reloader: Callable[..., CoalescingReloader] = CoalescingReloader,
    ) -> None:
        self.conf = conf
        self._reloader = reloader
        self._execute = execute
        self._process_factory: ProcessFactory = process_factory or (
            lambda pid_file, marker: PidFileProcess(pid_file, marker, execute=execute)
        )
        self._script_env = dict(script_env or {})
        self._extra_args = tuple(extra_args)
        self._dnsmasq = dnsmasq
        if compact_interval is None:
            compact_interval = conf.fixed_ip_disassociate_timeout / 2
        self._settings = SyncSettings(
            hosts_provider=hosts_provider,
            command=self._command,
            domain=dnsmasq_argv.check_domain(conf.dhcp_domain or ""),
            tagged=bool(conf.use_single_default_gateway),
            hostsdir_threshold=int(conf.dhcp_hostsdir_threshold),
            compact_interval=float(compact_interval),
            max_files=max(1, int(max_hostsdir_files)),
            clock=clock,
        )
        self._lock = threading.Lock()
        self._nets: dict[int, NetworkSync] = {}

    # -- public interface -------------------------------------------------------

    def enable(self, network: DhcpNetwork) -> None:
        """Write the files and start dnsmasq, or SIGHUP the one already running.

        A dnsmasq of ours running with other arguments (lease time, range,
        DNS servers, domain changed: a SIGHUP does not reload those) is
        restarted. Raises if dnsmasq cannot be started.
        """
        net = self._net(network)
        with net.lock:
            net.enabled = True
            net.sync(full=True, urgent=True)

    def restart(self, network: DhcpNetwork) -> None:
        """Stop our dnsmasq (if it runs) and start it again with the current files.

        For when its interface lost the address it was bound to: with
        --bind-interfaces dnsmasq binds its sockets once, at start, so after
        ``ip link del br100`` and the bridge's repair it serves nothing
        until restarted. Leases survive (the dhcp-script's ``init``).
        """
        net = self._net(network)
        with net.lock:
            net.enabled = True
            if net.process.stop():
                net.stats.stops += 1
            net.sync(full=True, urgent=True)

    def reload_allocations(self, network: DhcpNetwork) -> None:
        """Bring dnsmasq up to date with the hosts, coalescing bursts (never raises)."""
        net = self._net(network)
        with net.lock:
            net.enabled = True
        net.reloader.request()

    def flush(self, network: DhcpNetwork) -> None:
        """Reload now, synchronously (after a reload in progress); raises on failure."""
        net = self._net(network)
        with net.lock:
            net.enabled = True
        net.reloader.flush()

    def release(self, network: DhcpNetwork, address: str, mac: str) -> None:
        """A fixed IP was deallocated: make dnsmasq forget it, then free the lease.

        With force_dhcp_release the hostsfile is rewritten and dnsmasq reloaded
        synchronously BEFORE ``dhcp_release <bridge> <address> <mac>`` is sent,
        so the guest cannot renew in between (nova's ordering). The host must
        already be gone from what the hosts provider returns. Without
        force_dhcp_release this is a coalesced reload; the lease expires.
        """
        entry = hostsfile.validate_host(DhcpHost(mac, "release", address))
        if not self.conf.force_dhcp_release:
            self.reload_allocations(network)
            return
        net = self._net(network)
        with net.lock:
            net.enabled = True
            net.forget.add(entry.mac)
        net.reloader.flush()
        self._execute(["dhcp_release", network.bridge, entry.address, entry.mac])
        with net.lock:
            net.stats.releases += 1

    def active(self, network: DhcpNetwork) -> bool:
        """True if our dnsmasq for ``network`` runs (pid file + cmdline check)."""
        return self._net(network).process.is_active()

    def check_alive(self) -> list[int]:
        """Restart the dnsmasq of every enabled network that died; return their ids.

        Also starts a hostsdir compaction that fell due while nothing changed.
        """
        with self._lock:
            nets = [n for n in self._nets.values() if n.enabled]
        restarted = []
        for net in nets:
            with net.lock:
                if not net.enabled:
                    continue
                alive = net.process.is_active()
                due = net.compaction_due()
            if not alive:
                LOG.warning("dnsmasq for %s is not running; starting it", net.network.bridge)
                try:
                    with net.lock:
                        net.sync(full=True, urgent=True)
                    restarted.append(net.network.id)
                except Exception:
                    LOG.exception("cannot restart dnsmasq for %s", net.network.bridge)
            elif due:
                net.reloader.request()
        return restarted

    def disable(self, network: DhcpNetwork) -> None:
        """Stop dnsmasq and remove its pid file, hostsfile and hostsdir.

        The files are removed rather than kept: a disabled network is being
        deleted, and enable() rewrites all of them from the database anyway,
        so a leftover file could only mislead an operator reading it.
        """
        with self._lock:
            net = self._nets.pop(network.id, None)
        if net is None:
            net = self._new_net(network)
        net.reloader.close()
        with net.lock:
            net.enabled = False
            if net.process.stop():
                net.stats.stops += 1
            net.remove_files()

    def stats(self, network: DhcpNetwork) -> DriverStats:
        net = self._net(network)
        with net.lock:
            return dataclasses.replace(net.stats)

    def wait_idle(self, network: DhcpNetwork, timeout: float | None = None) -> bool:
        """Wait until no reload of ``network`` is running or pending."""
        return self._net(network).reloader.wait_idle(timeout)

    def close(self) -> None:
        """Drop pending reloads (dnsmasq processes keep running)."""
        with self._lock:
            nets = list(self._nets.values())
        for net in nets:
            net.reloader.close()

    # -- internals --------------------------------------------------------------

    def _net(self, network: DhcpNetwork) -> NetworkSync:
        with self._lock:
            net = self._nets.get(network.id)
            if net is None:
                net = self._nets[network.id] = self._new_net(network)
        if net.network != network:
            with net.lock:
                net.set_network(network)
        return net

    def _new_net(self, network: DhcpNetwork) -> NetworkSync:
        files = dnsmasq_argv.network_files(self.conf, network.bridge)
        process = self._process_factory(files.pid_file, files.hostsfile)
        net = NetworkSync(network, files, process, self._settings)
        net.reloader = self._reloader(
            lambda urgent: self._sync_if_enabled(net, urgent),
            self.conf.dnsmasq_reload_delay,
            name=f"dnsmasq-reload-{network.bridge}",
        )
        return net

    @staticmethod
    def _sync_if_enabled(net: NetworkSync, urgent: bool) -> None:
        with net.lock:
            if net.enabled:
                net.sync(full=False, urgent=urgent)

    def _command(self, network: DhcpNetwork, use_hostsdir: bool) -> dnsmasq_argv.DnsmasqCommand:
        return dnsmasq_argv.build_command(
            self.conf,
            network,
            hostsdir=use_hostsdir,
            script_env=self._script_env,
            extra_args=self._extra_args,
            dnsmasq=self._dnsmasq,
        )
