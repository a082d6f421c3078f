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
import threading
from collections.abc import Iterable
from typing import Any, Protocol

from oslo_config import cfg

from novanet.compute import rules
from novanet.compute.resync_plan import (
    RULE_STEPS,
    AddRules,
    Attach,
    EnsureBridge,
    HostView,
    Plug,
    RemoveDevice,
    RemoveNamespace,
    RemoveRules,
    Replace,
    ResyncPlan,
    Step,
    SyncRules,
    instance_filter,
    instance_netns,
    plan_resync,
    template_pattern,
)
from novanet.exception import NovanetError, UsageError
from novanet.linux.devices import VifDevice, host_mac
from novanet.linux.iptables import drift
from novanet.linux.iptables.declare import declare
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

    def attach(self, device: str, bridge: str) -> bool: ...

    def remove(self, device: str, mac: str | None) -> bool: ...

    def unplug_mac(self, instance_mac: str, netns: str | None = None) -> str | None: ...

    def list(self) -> list[VifDevice]: ...


class Namespaces(Protocol):
    def list_netns(self) -> list[str]: ...

    def delete_netns(self, name: str) -> bool: ...


@dataclasses.dataclass
class Applied:
    """What applying a resync plan did."""

    devices: dict[str, str] = dataclasses.field(default_factory=dict)  # uuid -> vnetN
    plugged: int = 0
    attached: int = 0
    removed: int = 0
    failed: int = 0
    synced: bool = False
    # Stale devices that could not be removed, and the instances they keep.
    failed_removals: set[str | None] = dataclasses.field(default_factory=set)
    kept: dict[str, InstanceNetwork] = dataclasses.field(default_factory=dict)


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
        self._declare_base()  # its FORWARD accepts: applied with the next change

    def _declare_base(self) -> None:
        declare(
            self.iptables.ipv4,
            rules.base_rules(sorted(self._bridges), self.conf.iptables_drop_action),
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

    def resync(self, wanted: Iterable[InstanceNetwork], since: int | None = None) -> dict[str, int]:
        """Converge devices and chains to ``wanted`` (the controller's list for this host).

        ``since``: :attr:`generation` when the list was asked for; instances
        set up or torn down after that are left as they are. The kernel is
        read before the agent's lock is taken (a link dump grows with the
        devices): creates and deletes wait only for the plan and its steps,
        and a resync that finds nothing to do holds the lock for a few
        milliseconds at 5,000 instances.
        """
        wanted = list(wanted)
        view = self._observe()
        with self._lock:
            settled: set[str] = set()
            if since is not None:
                wanted, settled = self._since(wanted, since)
            plan = plan_resync(
                wanted,
                self._instances,
                view,
                bridges_ready=self._bridges,
                first=not self._synced,
                settled=settled,
            )
            done = self._apply(plan)
            known: dict[str, InstanceNetwork] = {}
            for inst in wanted:
                if inst.uuid in settled:
                    known[inst.uuid] = inst  # as setup_instance left it
                    continue
                old = self._instances.get(inst.uuid)
                devname = done.devices.get(inst.uuid) or plan.in_place.get(inst.uuid)
                if devname is None and old is not None:
                    devname = old.devname  # its plug failed: retried next time
                known[inst.uuid] = _with_devname(inst, devname)
            # An instance whose device could not be removed keeps its chain
            # (and its place here) until a later resync removes both.
            known.update(done.kept)
            self._instances = known
            self._synced = self._synced or done.synced
            summary = {"instances": len(wanted), "plugged": done.plugged, "removed": done.removed}
            if done.attached:
                summary["attached"] = done.attached
            if done.failed:
                summary["failed"] = done.failed
            return summary

    def _observe(self) -> HostView:
        """The host's VIF devices and instance namespaces (read without the agent's lock)."""
        names = self.namespaces.list_netns()
        return HostView(
            tuple(self.vifs.list()), frozenset(n for n in names if self._netns_pattern.match(n))
        )

    def _apply(self, plan: ResyncPlan) -> Applied:
        """Run the plan's steps (lock held); consecutive chain steps are one iptables batch."""
        done = Applied()
        batch: list[Step] = []
        for step in plan.steps:
            if isinstance(step, RULE_STEPS):
                batch.append(step)
                continue
            self._apply_rules(batch, done)
            batch = []
            self._apply_step(step, done)
        self._apply_rules(batch, done)
        return done

    def _apply_rules(self, steps: list[Step], done: Applied) -> None:
        if not steps:
            return
        if len(steps) > 10:  # the first resync after a start: every instance
            LOG.info("resync: %d chain changes, e.g. %s", len(steps), steps[0])
        with self.iptables.defer_apply():
            for step in steps:
                if len(steps) <= 10:
                    LOG.info("resync: %s", step)
                match step:
                    case AddRules(inst):
                        self._add_rules(inst)
                    case RemoveRules(inst) if inst.uuid in done.kept:
                        LOG.warning(
                            "resync: kept the chain of %s: its device is still there", inst.name
                        )
                    case RemoveRules(inst):
                        self._remove_rules(inst)
                    case SyncRules() if done.failed_removals:
                        # A device that could not be removed keeps its chain:
                        # the tables are converged at the next resync.
                        LOG.warning("resync: tables not converged: a stale device is still there")
                    case SyncRules():
                        # Deletes chains of ours the model does not have
                        # (instances deleted while we were away), rewriting
                        # only chains that differ; it ignores the deferral.
                        for line in self.iptables.full_sync():
                            LOG.info("iptables: %s", line)
                        done.synced = True

    def _apply_step(self, step: Step, done: Applied) -> None:
        LOG.info("resync: %s", step)
        try:
            match step:
                case EnsureBridge(bridge):
                    self._ensure_bridge(bridge)
                case Plug(inst):
                    done.devices[inst.uuid] = self._plug(inst)
                    done.plugged += 1
                case Replace(inst, device, _reason):
                    self.vifs.unplug(device, instance_netns(inst))
                    done.devices[inst.uuid] = self._plug(inst)
                    done.plugged += 1
                case Attach(inst, device):
                    if self.vifs.attach(device, inst.bridge):
                        done.devices[inst.uuid] = device
                        done.attached += 1
                    else:  # gone since it was listed
                        done.devices[inst.uuid] = self._plug(inst)
                        done.plugged += 1
                case RemoveDevice(device, mac):
                    done.removed += bool(self.vifs.remove(device, mac))
                case RemoveNamespace(name):
                    done.removed += bool(self.namespaces.delete_netns(name))
        except NovanetError as exc:
            # One instance that cannot be plugged (a full bridge, a device in
            # the way) must not keep the others down; its chain is in place
            # and the next resync tries again.
            done.failed += 1
            LOG.error("resync: cannot %s: %s", step, exc)
            if isinstance(step, RemoveDevice):
                done.failed_removals.add(step.mac)
                for inst in self._instances.values():
                    if host_mac(inst.mac) == step.mac:
                        done.kept[inst.uuid] = inst

    # -- instances ------------------------------------------------------------------

    def _add_rules(self, inst: InstanceNetwork) -> None:
        spec = instance_filter(inst)
        chain = rules.chain_name(inst.id)
        self.filter.add_chain(chain)
        self.filter.set_rules(chain, rules.instance_chain(spec, self.conf.allow_same_net_traffic))
        self.filter.add_rule("local", rules.local_jump(spec))

    def _remove_rules(self, inst: InstanceNetwork) -> None:
        self.filter.remove_rule("local", rules.local_jump(instance_filter(inst)))
        self.filter.remove_chain(rules.chain_name(inst.id))

    def _plug(self, inst: InstanceNetwork) -> str:
        devname = self.vifs.plug(inst.vif_type, inst.mac, inst.bridge, instance_netns(inst))
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
        # unplug_mac deletes the namespace too, whether a device was found or
        # not (listing every namespace here would cost O(instances) per delete).
        device = self.vifs.unplug_mac(inst.mac, instance_netns(inst))
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

    # -- periodic checks -----------------------------------------------------------

    def check_iptables(self) -> None:
        if self._synced:
            drift.repair(self.iptables, BINARY)

    def check_bridges(self) -> list[str]:
        """Repair bridges deleted or changed by hand, and put the VIFs back on them.

        A bridge deleted with ``ip link del`` takes its ports off it (the
        devices themselves stay): it is made again with its flat interface
        and every instance's device is attached again, unchanged, so taps
        held open by QEMU and veths with their guest's address keep working.
        Returns what was done.
        """
        with self._lock:
            done: list[str] = []
            for bridge in sorted(self._bridges):
                steps = self.bridges.setup_compute(bridge, self.conf.flat_interface)
                done += [f"{bridge}: {step}" for step in steps]
            if not done:
                return []
            LOG.warning("bridges were changed by someone else; repaired: %s", "; ".join(done))
            known = list(self._instances.values())
            plan = plan_resync(
                known, self._instances, self._observe(), bridges_ready=self._bridges,
                remove_stale=False,
            )  # fmt: skip
            applied = self._apply(plan)
            for uuid, devname in applied.devices.items():
                self._instances[uuid] = _with_devname(self._instances[uuid], devname)
            return done + [str(step) for step in plan.steps]


def _with_devname(inst: InstanceNetwork, devname: str | None) -> InstanceNetwork:
    return dataclasses.replace(inst, devname=devname)
