"""novanet-network, wired: database, kernel objects, dnsmasq, RPC, lease socket, periodic tasks.

It also owns the ``nova-api-*`` chains of the seed (the ACCEPT of the
metadata port): novanet-metadata runs unprivileged and cannot write
iptables, and this daemon already installs the 169.254.169.254 DNAT that the
ACCEPT belongs to.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from oslo_config import cfg

from novanet import metrics as metrics_mod
from novanet.conf.loader import Source
from novanet.db import schema
from novanet.db.api import Database
from novanet.dhcp.driver import DnsmasqDriver
from novanet.linux.bridge import BridgeManager
from novanet.linux.ip_lib import IpLib
from novanet.linux.iptables.declare import declare
from novanet.linux.sysctl import Sysctl
from novanet.metadata.rules import metadata_rules
from novanet.network import leases, served
from novanet.network.endpoint import NetworkEndpoint, node_facts
from novanet.network.lease_socket import LeaseEventServer
from novanet.network.manager import CONTROLLER_TABLES, TOPIC, NetworkManager
from novanet.network.metrics import NetworkCollector
from novanet.rpc import transport as rpc
from novanet.rpc.compute_api import ComputeAPI
from novanet.rpc.dispatch import ServerEndpoint
from novanet.service.health import Check, thread_check
from novanet.service.periodic import PeriodicRunner

LOG = logging.getLogger(__name__)

NETWORK_REFRESH_INTERVAL = 10
DISASSOCIATE_INTERVAL = 60
# Creates and deletes a crash left unfinished: at start, then this often.
RECONCILE_INTERVAL = 60
# Connection attempts when sending to a compute host: a create or a repair
# fails (and is undone, or retried at the next pass) instead of waiting for
# the broker for ever.
COMPUTE_SEND_RETRIES = 2


def lease_socket_path(conf: cfg.ConfigOpts) -> str:
    return os.path.join(conf.state_path, "dhcpbridge.sock")


def script_environment(conf: cfg.ConfigOpts, sources: list[Source]) -> dict[str, str]:
    """dnsmasq's environment for novanet-dhcpbridge (NOVANET_NETWORK_ID is per network)."""
    if conf.dhcpbridge_flagfile:
        files = [["config", os.path.abspath(path)] for path in conf.dhcpbridge_flagfile]
    else:
        files = [[s.kind, os.path.abspath(s.path)] for s in sources]
    return {
        "NOVANET_CONFIG_FILES": json.dumps(files),
        "NOVANET_DHCPBRIDGE_SOCKET": lease_socket_path(conf),
    }


class NetworkService:
    def __init__(self, conf: cfg.ConfigOpts, sources: list[Source]) -> None:
        self.conf = conf
        # dnsmasq re-reads the hostsfile as nobody: it must pass through
        # state_path and networks_path, and needs to list neither. The
        # database in state_path is itself owner-only (novanet.db.engine).
        for path, mode in (
            (conf.state_path, 0o711),
            (conf.networks_path, 0o711),
            (conf.lock_path, 0o700),
        ):
            os.makedirs(path, mode=mode, exist_ok=True)
        self.db = Database.from_conf(conf)
        schema.check_current(self.db.engine)
        self.metrics = metrics_mod.Metrics("novanet-network") if conf.metrics_listen else None
        # mangle: the CHECKSUM rule for DHCP replies (network/rules.py)
        self.iptables = metrics_mod.iptables_manager(
            conf, "network", self.metrics, tables=CONTROLLER_TABLES
        )
        # binary "api": the seed's nova-api-* chains (see the module docstring)
        self.api_iptables = metrics_mod.iptables_manager(conf, "api", self.metrics)
        self.manager = NetworkManager(
            conf,
            self.db,
            bridges=BridgeManager(IpLib(), conf.lock_path, Sysctl()),
            iptables=self.iptables,
            dhcp=None,  # type: ignore[arg-type]  # set just below: it needs manager.hosts
            compute=None,
        )
        self.dhcp = DnsmasqDriver(
            conf, self.manager.hosts, script_env=script_environment(conf, sources)
        )
        self.manager.dhcp = self.dhcp
        self.transport = rpc.get_transport(conf)
        self.manager.compute = ComputeAPI(self.transport, retry=COMPUTE_SEND_RETRIES)
        self.rpc_server = rpc.get_server(
            self.transport,
            TOPIC,
            conf.host,
            [ServerEndpoint(NetworkEndpoint(self.manager, self._facts), self.metrics)],
        )
        self.lease_server = LeaseEventServer(lease_socket_path(conf), self._lease_event)
        self.periodic = PeriodicRunner(stuck_after=conf.periodic_task_timeout)
        m = self.manager
        self.periodic.add("heartbeat", conf.report_interval, m.heartbeat, option="report_interval")
        self.periodic.add(
            "dnsmasq-liveness",
            conf.dnsmasq_check_interval,
            self._check_dnsmasq,
            option="dnsmasq_check_interval",
        )
        self.periodic.add(
            "iptables-drift",
            conf.iptables_check_interval,
            self._check_iptables,
            option="iptables_check_interval",
        )
        self.periodic.add(
            "bridge-drift",
            conf.bridge_check_interval,
            m.check_bridges,
            option="bridge_check_interval",
        )
        # floating addresses removed by hand come back with the rules' repair
        self.periodic.add(
            "floating-drift",
            conf.iptables_check_interval,
            m.check_floating,
            option="iptables_check_interval",
        )
        self.periodic.add("network-refresh", NETWORK_REFRESH_INTERVAL, m.refresh_networks)
        self.periodic.add(
            "disassociate",
            min(DISASSOCIATE_INTERVAL, max(1, conf.fixed_ip_disassociate_timeout)),
            m.disassociate_stale,
            run_immediately=True,
        )
        self.periodic.add(
            "reconcile-instances", RECONCILE_INTERVAL, m.reconcile_instances, run_immediately=True
        )
        self._rpc_started = threading.Event()
        self._stopping = threading.Event()
        if self.metrics is not None:
            self.metrics.add_collector(NetworkCollector(self.db, self._dnsmasq_stats))
            self.metrics.add_collector(
                metrics_mod.FunctionCollector(
                    lambda: metrics_mod.periodic_families(self.periodic.tasks)
                )
            )

    def _facts(self) -> dict[str, Any]:
        """RPC node_facts: with the drift of the nova-api chains too."""
        return node_facts(self.manager, self.api_iptables)

    def _lease_event(self, event: dict[str, Any]) -> dict[str, Any]:
        if self.metrics is not None:
            self.metrics.lease_events.labels(str(event.get("action"))[:8]).inc()
        return leases.handle(self.db, self.conf.dhcp_lease_time, event)

    def _dnsmasq_stats(self) -> dict[str, Any]:
        return {
            bridge: self.dhcp.stats(dhcp)
            for bridge, dhcp in served.dhcp_networks(self.manager.serving()).items()
        }

    def _check_dnsmasq(self) -> None:
        restarted = self.manager.check_dnsmasq()
        if restarted and self.metrics is not None:
            self.metrics.dnsmasq_restarts.inc(len(restarted))

    def _check_iptables(self) -> None:
        self.manager.check_iptables()
        self.api_iptables.check_and_repair()

    def _declare_api_rules(self) -> None:
        declare(
            self.api_iptables.ipv4,
            metadata_rules(
                metadata_host=self.conf.metadata_host, metadata_port=self.conf.metadata_port
            ),
        )
        self.api_iptables.full_sync()

    def health(self) -> list[Check]:
        checks = list(self.periodic.checks())
        checks.append(thread_check("lease socket", self.lease_server.thread, required=True))
        if self._rpc_started.is_set():
            checks.append(Check("rpc", True, f"serving topic {TOPIC!r}"))
        else:
            checks.append(Check("rpc", False, "not serving yet (is RabbitMQ reachable?)"))
        return checks

    def start(self) -> None:
        self.manager.init_host()
        self._declare_api_rules()  # after ours: the seed lists nova-network-* jumps first
        self.lease_server.start()
        self.manager.heartbeat()
        threading.Thread(target=self._serve_rpc, name="rpc-start", daemon=True).start()
        self.periodic.start()

    def _serve_rpc(self) -> None:
        # The broker may be down when we start; dnsmasq and the lease socket
        # work without it, so keep trying in the background.
        delay = 1.0
        while not self._stopping.is_set():
            try:
                self.rpc_server.start()
                self._rpc_started.set()
                LOG.info("serving RPC on topic %r as %r", TOPIC, self.conf.host)
                return
            except Exception as exc:  # noqa: BLE001 - retried
                LOG.warning("RPC server not started (%s); retrying in %.0f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def stop(self) -> None:
        self._stopping.set()
        self.periodic.stop()
        if self._rpc_started.is_set():
            self.rpc_server.stop()
            self.rpc_server.wait()
        self.lease_server.stop()
        self.dhcp.close()  # stops reload threads; dnsmasq keeps running
        self.api_iptables.close()
        self.transport.cleanup()
        self.db.dispose()


def build(conf: cfg.ConfigOpts, sources: list[Source]) -> Any:
    return NetworkService(conf, sources)
