"""novanet-compute, wired: bridge, VIFs, iptables, RPC server, resync and heartbeats."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from oslo_config import cfg

from novanet import metrics as metrics_mod
from novanet.compute import antispoof
from novanet.compute.endpoint import ComputeEndpoint
from novanet.compute.manager import BINARY, TOPIC, ComputeManager
from novanet.compute.security import agent_ipsets
from novanet.conf.loader import Source
from novanet.linux.bridge import BridgeManager
from novanet.linux.devices import VifDevices
from novanet.linux.ip_lib import IpLib
from novanet.linux.nftables.backend import NftKernel, require_nft
from novanet.linux.nftables.generation import SharedGeneration
from novanet.linux.nftables.table import NftTable
from novanet.linux.sysctl import Sysctl
from novanet.rpc import transport as rpc
from novanet.rpc.dispatch import ServerEndpoint
from novanet.rpc.network_api import NetworkAPI
from novanet.rpc.objects import InstanceNetwork, members_from
from novanet.service.health import Check
from novanet.service.periodic import PeriodicRunner

LOG = logging.getLogger(__name__)

RESYNC_RETRY = 2.0


class ComputeService:
    def __init__(self, conf: cfg.ConfigOpts, sources: list[Source]) -> None:
        self.conf = conf
        os.makedirs(conf.lock_path, mode=0o755, exist_ok=True)
        ip = IpLib()
        self.metrics = metrics_mod.Metrics("novanet-compute") if conf.metrics_listen else None
        # One nf_tables generation probe for both nf_tables writers (see
        # novanet/linux/nftables/generation.py): anti-spoofing commits must
        # not make the iptables manager read its tables again.
        generation = SharedGeneration()
        self.iptables = metrics_mod.iptables_manager(
            conf, "compute", self.metrics, generation=generation
        )
        self.ports = antispoof.PortFilter(NftTable(antispoof.TABLE, NftKernel(None, generation)))
        self.manager = ComputeManager(
            conf,
            bridges=BridgeManager(ip, conf.lock_path, Sysctl()),
            iptables=self.iptables,
            vifs=VifDevices(ip, conf.lock_path),
            namespaces=ip,
            ipsets=agent_ipsets(conf.iptables_prefix),
            antispoof=self.ports if conf.vif_antispoof else None,
        )
        self.transport = rpc.get_transport(conf)
        self.network = NetworkAPI(self.transport, timeout=conf.rpc_connect_timeout)
        endpoint = ServerEndpoint(ComputeEndpoint(self.manager, self.resync), self.metrics)
        self.rpc_server = rpc.get_server(self.transport, TOPIC, conf.host, [endpoint])
        self.periodic = PeriodicRunner(stuck_after=conf.periodic_task_timeout)
        self.periodic.add(
            "heartbeat",
            conf.report_interval,
            self.heartbeat,
            run_immediately=True,
            option="report_interval",
        )
        self.periodic.add(
            "iptables-drift",
            conf.iptables_check_interval,
            self.manager.check_iptables,
            option="iptables_check_interval",
        )
        self.periodic.add(
            "bridge-drift",
            conf.bridge_check_interval,
            self.manager.check_bridges,
            option="bridge_check_interval",
        )
        if conf.vif_antispoof:
            self.periodic.add(
                "antispoof-drift",
                conf.iptables_check_interval,
                self.manager.check_antispoof,
                option="iptables_check_interval",
            )
        self.periodic.add("resync", conf.resync_interval, self.resync, option="resync_interval")
        self._stopping = threading.Event()
        self._resync_lock = threading.Lock()
        self._first_sync_thread: threading.Thread | None = None
        self._last_heartbeat: float | None = None
        self._serving = False
        if self.metrics is not None:
            self.metrics.add_collector(metrics_mod.FunctionCollector(self._families))

    def start(self) -> None:
        if self.conf.vif_antispoof:
            require_nft()  # one clear line now, not a first resync failing forever
        # Refuses to start (NovanetError) without bridge-nf-call-iptables.
        self.manager.init_host()
        if not self.conf.vif_antispoof:
            LOG.warning(
                "vif_antispoof is off: guests on this host can send with any MAC or IP "
                "address, answer ARP for others and run a DHCP server"
            )
            self.ports.disable()
        self._first_sync_thread = threading.Thread(
            target=self._first_sync, name="first-resync", daemon=True
        )
        self._first_sync_thread.start()

    def _first_sync(self) -> None:
        """Until the controller answers, leave the kernel as it is: nothing is torn down blind."""
        while not self._stopping.is_set():
            if self.resync():
                break
            self._stopping.wait(RESYNC_RETRY)
        if self._stopping.is_set():
            return
        try:
            self.rpc_server.start()
        except Exception:  # noqa: BLE001
            LOG.exception("cannot start the RPC server")
            return
        LOG.info("serving RPC on topic %r as %r", TOPIC, self.conf.host)
        self._serving = True
        self.periodic.start()

    def resync(self) -> bool:
        with self._resync_lock:
            since = self.manager.generation
            try:
                wanted = [
                    InstanceNetwork.from_dict(item)
                    for item in self.network.get_host_instances(host=self.conf.host)
                ]
            except Exception as exc:  # noqa: BLE001 - controller or broker away: retried
                LOG.warning(
                    "cannot get this host's instances from the controller: %s", _first_line(exc)
                )
                return False
            members = self._members(wanted)
            if members is None:
                return False
            try:
                summary = self.manager.resync(wanted, since=since, members=members)
            except Exception:  # noqa: BLE001 - logged; the caller retries
                LOG.exception("resync failed")
                return False
            LOG.info("resync: %s", ", ".join(f"{k} {v}" for k, v in summary.items()))
            return True

    def _members(self, wanted: list[InstanceNetwork]) -> dict[int, tuple[str, ...]] | None:
        """Members of the source groups of the instances' rules (None: not now)."""
        if not any("@" in rule for inst in wanted for rule in inst.rules):
            return {}
        try:
            return members_from(self.network.get_host_members(host=self.conf.host))
        except Exception as exc:  # noqa: BLE001 - retried with the resync
            LOG.warning("cannot get security-group members from the controller: %s", exc)
            return None

    def heartbeat(self) -> None:
        try:
            self.network.report_state(host=self.conf.host, binary=BINARY, topic=TOPIC)
        except Exception as exc:  # noqa: BLE001
            LOG.warning("heartbeat not sent: %s", _first_line(exc))
            return
        self._last_heartbeat = time.monotonic()

    def health(self) -> list[Check]:
        """Fatal: a stuck task or a dead first-resync thread; not fatal: the controller away."""
        checks = list(self.periodic.checks())
        first = self._first_sync_thread
        if self._serving:
            checks.append(Check("rpc", True, f"serving topic {TOPIC!r}"))
        elif first is not None and not first.is_alive() and not self._stopping.is_set():
            checks.append(Check("rpc", False, "the first resync thread ended", fatal=True))
        else:
            checks.append(Check("rpc", False, "waiting for the controller's instance list"))
        if self._serving:
            age = None if self._last_heartbeat is None else time.monotonic() - self._last_heartbeat
            if age is None or age > self.conf.service_down_time:
                detail = "never sent" if age is None else f"last sent {age:.0f} s ago"
                checks.append(Check("heartbeat", False, f"{detail}: shown down in service list"))
            else:
                checks.append(Check("heartbeat", True, f"sent {age:.0f} s ago"))
        return checks

    def _families(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        instances = GaugeMetricFamily(
            "novanet_instances", "Instances plugged on this compute host.", labels=["host"]
        )
        instances.add_metric([self.conf.host], self.manager.instance_count())
        yield instances
        yield from metrics_mod.periodic_families(self.periodic.tasks)

    def stop(self) -> None:
        self._stopping.set()
        self.periodic.stop()
        try:
            self.rpc_server.stop()
            self.rpc_server.wait()
        except Exception:  # noqa: BLE001 - not started
            pass
        self.transport.cleanup()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def build(conf: cfg.ConfigOpts, sources: list[Source]) -> Any:
    return ComputeService(conf, sources)
