"""The compute agent: the bridge without an address, VIFs and per-instance chains.

It holds no database credentials: what should run here comes from the
controller over RPC (get_host_instances at start and periodically,
setup_instance / teardown_instance as instances come and go).

Ordering is what keeps instances safe: an instance's chain is in the kernel
before its device is plugged, and the device is gone before its chain is
removed, so no instance is ever reachable unfiltered. A resync rewrites only
chains that differ (one atomic iptables-restore), so a restart never opens a
window either; it is planned (:mod:`novanet.compute.resync_plan`) from what
the kernel shows and applied by :class:`novanet.compute.kernel.AgentKernel`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from oslo_config import cfg

from novanet.compute.antispoof import PortFilter
from novanet.compute.kernel import AgentKernel, Bridges, Namespaces, Vifs
from novanet.compute.resync_plan import plan_resync, template_pattern
from novanet.compute.security import AgentSecurity
from novanet.exception import NovanetError, UsageError
from novanet.linux.ipset import IpsetManager
from novanet.linux.iptables.manager import drift_item
from novanet.rpc.objects import InstanceNetwork

__all__ = ["BINARY", "TOPIC", "ComputeManager", "template_pattern"]

LOG = logging.getLogger(__name__)

BINARY = "novanet-compute"
TOPIC = "compute"


class ComputeManager:
    def __init__(
        self,
        conf: cfg.ConfigOpts,
        *,
        bridges: Bridges,
        iptables: Any,
        vifs: Vifs,
        namespaces: Namespaces,
        ipsets: IpsetManager | None = None,
        antispoof: PortFilter | None = None,
    ) -> None:
        self.conf = conf
        self.host = conf.host
        self.iptables = iptables
        self.kernel = AgentKernel(
            conf,
            bridges=bridges,
            iptables=iptables,
            vifs=vifs,
            namespaces=namespaces,
            netns_pattern=template_pattern(conf.instance_name_template),
            ports=antispoof,
        )
        self._lock = threading.RLock()
        self._instances: dict[str, InstanceNetwork] = {}  # uuid -> what is plugged here
        # Security groups: the members told, the ipsets (novanet.compute.security).
        self.security = AgentSecurity(ipsets, conf.iptables_prefix)
        self._synced = False
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
            self.kernel.ensure_bridge(bridge)
            self.kernel.declare_base()

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

    def _since(
        self, wanted: list[InstanceNetwork], since: int
    ) -> tuple[list[InstanceNetwork], set[str]]:
        """(``wanted`` with instances changed after ``since`` as they are now, their uuids)."""
        moved = {uuid for uuid, gen in self._changed.items() if gen > since}
        self._changed = {uuid: self._changed[uuid] for uuid in moved}
        if not moved:
            return wanted, moved
        LOG.info(
            "resync: %d instance(s) changed while the list was read: kept as they are", len(moved)
        )
        now = [self._instances[uuid] for uuid in moved if uuid in self._instances]
        return [inst for inst in wanted if inst.uuid not in moved] + now, moved

    def resync(
        self,
        wanted: Iterable[InstanceNetwork],
        since: int | None = None,
        members: Mapping[int, Iterable[str]] | None = None,
    ) -> dict[str, int]:
        """Converge devices and chains to ``wanted`` (the controller's list for this host).

        ``members``: addresses of the source groups the rules name.
        ``since``: :attr:`generation` when the list was asked for; instances
        set up or torn down after that are left as they are. The kernel is
        read before the agent's lock is taken (a link dump grows with the
        devices): creates and deletes wait only for the plan and its steps,
        and a resync that finds nothing to do holds the lock for a few
        milliseconds at 5,000 instances.
        """
        wanted = list(wanted)
        view = self.kernel.observe()
        with self._lock:
            settled: set[str] = set()
            if since is not None:
                wanted, settled = self._since(wanted, since)
            plan = plan_resync(
                wanted,
                self._instances,
                view,
                bridges_ready=self.kernel.ready,
                first=not self._synced,
                settled=settled,
            )
            # security groups: sets for old and new chains before any chain
            self.security.tell(members)
            self.security.ensure([*wanted, *self._instances.values()])
            self.kernel.filter_ports(plan, wanted)  # anti-spoofing: before anything moves
            done = self.kernel.apply(plan, self._instances)
            known: dict[str, InstanceNetwork] = {}
            for inst in wanted:
                if inst.uuid in settled:
                    known[inst.uuid] = inst  # as setup_instance left it
                    continue
                old = self._instances.get(inst.uuid)
                devname = done.devices.get(inst.uuid) or plan.in_place.get(inst.uuid)
                if devname is None and old is not None:
                    devname = old.devname  # its plug failed: retried next time
                if old is not None and old.devname == devname and old == inst:
                    known[inst.uuid] = old  # the usual case: no copy of 5,000 records
                else:
                    known[inst.uuid] = _with_devname(inst, devname)
            # An instance whose device could not be removed keeps its chain
            # (and its place here) until a later resync removes both.
            known.update(done.kept)
            self._instances = known
            self.kernel.converge_ports(list(known.values()))  # anti-spoofing: stale ports go
            self._synced = self._synced or done.synced
            if done.synced or not done.failed_removals:
                self.security.prune(known.values())  # no chain names them any more
        summary = {"instances": len(wanted), "plugged": done.plugged, "removed": done.removed}
        if done.attached:
            summary["attached"] = done.attached
        if done.failed:
            summary["failed"] = done.failed
        return summary

    # -- instances ------------------------------------------------------------------

    def setup_instance(
        self, inst: InstanceNetwork, members: Mapping[int, Iterable[str]] | None = None
    ) -> str:
        """Sets, chain, then the device; returns the host device name (vnetN)."""
        with self._lock:
            self._touch(inst.uuid)
            self.kernel.ensure_bridge(inst.bridge)
            old = self._instances.get(inst.uuid)
            self.security.tell(members)
            self.security.ensure([*self._instances.values(), inst])
            with self.iptables.defer_apply():
                if old is not None and old != _with_devname(inst, old.devname):
                    self.kernel.remove_rules(old)
                self.kernel.add_rules(inst)
            try:
                devname = self.kernel.plug(inst)
            except NovanetError:
                # Nothing half-plugged stays behind.
                self._teardown(inst)
                raise
            self._instances[inst.uuid] = _with_devname(inst, devname)
            if old is not None:
                self.security.prune(self._instances.values())
            return devname

    def teardown_instance(self, inst: InstanceNetwork) -> None:
        """Device first, then the chain. Idempotent."""
        with self._lock:
            self._touch(inst.uuid)
            self._teardown(inst)

    def _teardown(self, inst: InstanceNetwork) -> None:
        device = self.kernel.unplug(inst)
        with self.iptables.defer_apply():
            self.kernel.remove_rules(inst)
        self._instances.pop(inst.uuid, None)
        self.security.prune(self._instances.values())
        LOG.info(
            "unplugged %s (%s)%s", inst.name, inst.address, f" from {device}" if device else ""
        )

    def update_security(
        self, rules: Mapping[str, tuple[str, ...]], members: Mapping[int, Iterable[str]]
    ) -> dict[str, int]:
        """New rules of instances here and new members of groups: sets, chains, stale sets.

        Instances not plugged here are ignored (one being created gets its
        rules again once plugged). Each changed chain is rewritten, all in
        one iptables-restore; a membership change is a set update alone.
        """
        with self._lock:
            changed = {
                uuid: dataclasses.replace(self._instances[uuid], rules=tuple(new))
                for uuid, new in rules.items()
                if uuid in self._instances and self._instances[uuid].rules != tuple(new)
            }
            for uuid in changed:
                self._touch(uuid)
            self.security.tell(members)
            self.security.ensure([*self._instances.values(), *changed.values()])
            with self.iptables.defer_apply():
                for inst in changed.values():
                    self.kernel.add_rules(inst)
            self._instances.update(changed)
            self.security.prune(self._instances.values())
            return {"chains": len(changed)}

    def instances(self) -> list[InstanceNetwork]:
        with self._lock:
            return list(self._instances.values())

    # -- periodic checks -----------------------------------------------------------

    def check_iptables(self) -> None:
        if self._synced:
            with self._lock:  # sets first: the rules name them
                self.security.check(self._instances.values())
            self.iptables.check_and_repair()  # logs each repair it makes

    def check_antispoof(self) -> list[str]:
        """Repair the anti-spoofing table (iptables_check_interval); returns the repairs."""
        if self._synced and self.kernel.ports is not None:
            return self.kernel.ports.check()  # logs each repair it makes
        return []

    def check_bridges(self) -> list[str]:
        """Repair bridges deleted or changed by hand, and put the VIFs back on them.

        A bridge deleted with ``ip link del`` takes its ports off it (the
        devices themselves stay): it is made again with its flat interface
        and every instance's device is attached to it again, unchanged, so
        a tap QEMU holds open and a veth with its guest's address keep
        working. Nothing is removed here (that is the resync's job, with the
        controller's list). Returns what was done.
        """
        with self._lock:
            done = self.kernel.repair_bridges()
            if not done:
                return []
            LOG.warning("bridges were changed by someone else; repaired: %s", "; ".join(done))
            known = list(self._instances.values())
            view = self.kernel.observe()
            plan = plan_resync(
                known, self._instances, view, bridges_ready=self.kernel.ready, remove_stale=False
            )
            self.kernel.filter_ports(plan, known)  # anti-spoofing: before re-attaching
            applied = self.kernel.apply(plan, self._instances)
            for uuid, devname in applied.devices.items():
                self._instances[uuid] = _with_devname(self._instances[uuid], devname)
            return done + [str(step) for step in plan.steps]

    def drift(self) -> list[dict[str, Any]]:
        """What the periodic checks would repair now, without repairing (diagnose's dry run).

        ``repair_within``: the check's interval in seconds (the check repairs it
        by then). Nothing before the first resync: until the controller has
        said what runs here, nothing is known to be missing or stale.
        """
        if not self._synced:
            return []
        within = int(self.conf.iptables_check_interval)
        found: list[dict[str, Any]] = []
        with self._lock:
            wanted_sets = self.security.wanted(self._instances.values())
        ipsets = self.security.ipsets
        if ipsets is not None:
            for line in ipsets.drift(wanted_sets):
                found.append(_drift(" ".join(line.split()[:2]), line, within))
        for line in self.iptables.drift():
            found.append(_drift(*drift_item(line), within))
        if self.kernel.ports is not None:
            for line in self.kernel.ports.table.drift():
                found.append(_drift("table bridge novanet", line, within))
        return found

    def instance_count(self) -> int:
        """Instances plugged here (for the metrics)."""
        return len(self._instances)


def _with_devname(inst: InstanceNetwork, devname: str | None) -> InstanceNetwork:
    return dataclasses.replace(inst, devname=devname)


def _drift(obj: str, problem: str, within: int | None) -> dict[str, Any]:
    return {"object": obj, "problem": problem, "repair_within": within}
