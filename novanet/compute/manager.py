"""The compute agent: the bridge without an address, VIFs and per-instance chains.

It holds no database credentials: what should run here comes from the
controller over RPC (get_host_instances at start and periodically,
setup_instance / teardown_instance as instances come and go).

Ordering is what keeps instances safe: an instance's chain is in the kernel
before its device is plugged, and the device is gone before its chain is
removed, so no instance is ever reachable unfiltered. A resync rewrites only
chains that differ (one atomic iptables-restore), so a restart never opens a
window either.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any, Protocol

from oslo_config import cfg

from novanet.compute import rules
from novanet.compute.rules import InstanceFilter
from novanet.exception import NovanetError, UsageError
from novanet.linux.devices import VifDevice, host_mac
from novanet.network.rules import declare
from novanet.rpc.objects import InstanceNetwork

LOG = logging.getLogger(__name__)

BINARY = "novanet-compute"
TOPIC = "compute"


class Bridges(Protocol):
    def setup_compute(self, bridge: str, interface: str | None) -> list[Any]: ...


class Vifs(Protocol):
    def plug(
        self, vif_type: str, instance_mac: str, bridge: str, netns: str | None = None
    ) -> str: ...

    def unplug(self, device: str | None = None, netns: str | None = None) -> None: ...

    def unplug_mac(self, instance_mac: str, netns: str | None = None) -> str | None: ...

    def list(self) -> list[VifDevice]: ...


class Namespaces(Protocol):
    def list_netns(self) -> list[str]: ...

    def delete_netns(self, name: str) -> bool: ...


def template_pattern(template: str) -> re.Pattern[str]:
    """A regex matching the names instance_name_template produces (instance-%08x)."""
    parts = re.split(r"(%0?\d*[dxX])", template)
    out = []
    for part in parts:
        spec = re.fullmatch(r"%0?(\d*)([dxX])", part)
        if spec:
            digits = (
                "0-9" if spec.group(2) == "d" else "0-9a-f" if spec.group(2) == "x" else "0-9A-F"
            )
            out.append(f"[{digits}]+")
        else:
            out.append(re.escape(part))
    return re.compile("^" + "".join(out) + "$")


class ComputeManager:
    def __init__(
        self,
        conf: cfg.ConfigOpts,
        *,
        bridges: Bridges,
        iptables: Any,
        vifs: Vifs,
        namespaces: Namespaces,
    ) -> None:
        self.conf = conf
        self.bridges = bridges
        self.iptables = iptables
        self.filter = iptables.ipv4["filter"]
        self.vifs = vifs
        self.namespaces = namespaces
        self.host = conf.host
        self._lock = threading.RLock()
        self._bridges: set[str] = set()
        self._instances: dict[str, InstanceNetwork] = {}  # uuid -> what is plugged here
        self._synced = False
        self._netns_pattern = template_pattern(conf.instance_name_template)
        # Each setup/teardown bumps the generation and records it per instance,
        # so that a resync whose list was read before the change leaves that
        # instance as it now is (no removal of a just-plugged instance, no
        # re-plug of a just-deleted one).
        self._generation = 0
        self._changed: dict[str, int] = {}

    # -- the host ------------------------------------------------------------------

    def init_host(self) -> None:
        """The bridge with its port and no address; refuse without bridge-nf-call-iptables."""
        bridge = self.conf.flat_network_bridge
        if not bridge:
            raise UsageError(
                "flat_network_bridge must be set on a compute host (br100 in the seed)"
            )
        with self._lock:
            self._ensure_bridge(bridge)
            self._declare_base()

    def _ensure_bridge(self, bridge: str) -> None:
        if bridge in self._bridges:
            return
        for step in self.bridges.setup_compute(bridge, self.conf.flat_interface):
            LOG.info("%s: %s", bridge, step)
        self._bridges.add(bridge)

    def _declare_base(self) -> None:
        declare(
            self.iptables.ipv4,
            rules.base_rules(
                sorted(self._bridges),
                self.conf.iptables_drop_action,
                self.conf.forward_bridge_interface,
            ),
        )

    @property
    def synced(self) -> bool:
        return self._synced

    @property
    def generation(self) -> int:
        """Take before asking the controller for the list given to :meth:`resync`."""
        with self._lock:
            return self._generation

    def _touch(self, uuid: str) -> None:
        self._generation += 1
        self._changed[uuid] = self._generation

    def _since(self, wanted: list[InstanceNetwork], since: int) -> list[InstanceNetwork]:
        """``wanted`` with the instances set up or torn down after ``since`` as they are now."""
        moved = {uuid for uuid, gen in self._changed.items() if gen > since}
        self._changed = {uuid: self._changed[uuid] for uuid in moved}
        if not moved:
            return wanted
        LOG.info(
            "resync: %d instance(s) changed while the list was read: kept as they are", len(moved)
        )
        now = [self._instances[uuid] for uuid in moved if uuid in self._instances]
        return [inst for inst in wanted if inst.uuid not in moved] + now

    def resync(self, wanted: Iterable[InstanceNetwork], since: int | None = None) -> dict[str, int]:
        """Converge devices and chains to ``wanted`` (the controller's list for this host).

        ``since``: :attr:`generation` when the list was asked for; instances
        set up or torn down after that are left as they are.
        """
        wanted = list(wanted)
        with self._lock:
            if since is not None:
                wanted = self._since(wanted, since)
            for inst in wanted:
                self._ensure_bridge(inst.bridge)
            stale_chains = [
                uuid for uuid in self._instances if uuid not in {i.uuid for i in wanted}
            ]
            with self.iptables.defer_apply():
                self._declare_base()
                for uuid in stale_chains:
                    self._remove_rules(self._instances[uuid])
                for inst in wanted:
                    self._add_rules(inst)
                if not self._synced:
                    # Deletes chains of ours the model does not have (instances
                    # deleted while we were away) and rewrites only chains that
                    # differ, in one read and one restore (full_sync ignores the
                    # deferral, so nothing is left to apply after it).
                    for line in self.iptables.full_sync():
                        LOG.info("iptables: %s", line)
            # Rules are in place: now devices may come up.
            present = {vif.mac: vif for vif in self.vifs.list()}
            plugged = failed = 0
            for inst in wanted:
                vif = present.get(host_mac(inst.mac))
                if vif is None or vif.bridge != inst.bridge or vif.vif_type != inst.vif_type:
                    # One instance that cannot be plugged (a full bridge, a
                    # device in the way) must not keep the others down; its
                    # chain is in place and the next resync tries again.
                    try:
                        if vif is not None:
                            self.vifs.unplug(vif.name, self._netns(inst))
                        self._plug(inst)
                        plugged += 1
                    except NovanetError as exc:
                        failed += 1
                        LOG.error(
                            "cannot plug %s (%s %s): %s", inst.name, inst.address, inst.mac, exc
                        )
                else:
                    self._instances[inst.uuid] = _with_devname(inst, vif.name)
            keep = {host_mac(inst.mac) for inst in wanted}
            removed = 0
            for mac, vif in present.items():
                if mac not in keep:
                    LOG.info("removing stale device %s (%s)", vif.name, mac)
                    self.vifs.unplug(vif.name)
                    removed += 1
            for uuid in stale_chains:
                self._instances.pop(uuid, None)
            removed += self._remove_stale_namespaces({self._netns(i) for i in wanted} - {None})
            self._instances = {i.uuid: self._instances.get(i.uuid, i) for i in wanted}
            self._synced = True
            summary = {"instances": len(wanted), "plugged": plugged, "removed": removed}
            if failed:
                summary["failed"] = failed
            return summary

    def _remove_stale_namespaces(self, keep: set[str | None]) -> int:
        removed = 0
        for name in self.namespaces.list_netns():
            if name not in keep and self._netns_pattern.match(name):
                LOG.info("removing stale instance namespace %s", name)
                self.namespaces.delete_netns(name)
                removed += 1
        return removed

    # -- instances ------------------------------------------------------------------

    def _netns(self, inst: InstanceNetwork) -> str | None:
        return inst.name if inst.vif_type == "netns" else None

    def _filter(self, inst: InstanceNetwork) -> InstanceFilter:
        return InstanceFilter(inst.id, inst.address, inst.cidr, inst.dhcp_server)

    def _add_rules(self, inst: InstanceNetwork) -> None:
        spec = self._filter(inst)
        chain = rules.chain_name(inst.id)
        self.filter.add_chain(chain)
        self.filter.set_rules(chain, rules.instance_chain(spec, self.conf.allow_same_net_traffic))
        self.filter.add_rule("local", rules.local_jump(spec))

    def _remove_rules(self, inst: InstanceNetwork) -> None:
        self.filter.remove_rule("local", rules.local_jump(self._filter(inst)))
        self.filter.remove_chain(rules.chain_name(inst.id))

    def _plug(self, inst: InstanceNetwork) -> str:
        devname = self.vifs.plug(inst.vif_type, inst.mac, inst.bridge, self._netns(inst))
        self._instances[inst.uuid] = _with_devname(inst, devname)
        LOG.info("plugged %s (%s %s) as %s", inst.name, inst.address, inst.mac, devname)
        return devname

    def setup_instance(self, inst: InstanceNetwork) -> str:
        """Chain first, then the device; returns the host device name (vnetN)."""
        with self._lock:
            self._touch(inst.uuid)
            self._ensure_bridge(inst.bridge)
            old = self._instances.get(inst.uuid)
            with self.iptables.defer_apply():
                if old is not None and old != _with_devname(inst, old.devname):
                    self._remove_rules(old)
                self._add_rules(inst)
            try:
                return self._plug(inst)
            except NovanetError:
                # Nothing half-plugged stays behind.
                self._teardown(inst)
                raise

    def teardown_instance(self, inst: InstanceNetwork) -> None:
        """Device first, then the chain. Idempotent."""
        with self._lock:
            self._touch(inst.uuid)
            self._teardown(inst)

    def _teardown(self, inst: InstanceNetwork) -> None:
        device = self.vifs.unplug_mac(inst.mac, self._netns(inst))
        netns = self._netns(inst)
        if netns and netns in self.namespaces.list_netns():
            self.namespaces.delete_netns(netns)
        with self.iptables.defer_apply():
            if self.filter.has_chain(rules.chain_name(inst.id)):
                self._remove_rules(inst)
        self._instances.pop(inst.uuid, None)
        LOG.info(
            "unplugged %s (%s)%s", inst.name, inst.address, f" from {device}" if device else ""
        )

    def instances(self) -> list[InstanceNetwork]:
        with self._lock:
            return list(self._instances.values())

    def check_iptables(self) -> None:
        if not self._synced:
            return
        repaired = self.iptables.check_and_repair()
        if repaired:
            LOG.warning(
                "iptables rules were changed by someone else; repaired: %s", "; ".join(repaired)
            )


def _with_devname(inst: InstanceNetwork, devname: str | None) -> InstanceNetwork:
    return dataclasses.replace(inst, devname=devname)
