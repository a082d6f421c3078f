"""The compute agent's hands: bridges, VIF devices, namespaces and chains, and the resync applier.

:class:`AgentKernel` does what the agent decided, one kernel object at a
time, and applies resync plans (:mod:`novanet.compute.resync_plan`) step by
step. It keeps no state about instances: that is the agent's
(:class:`novanet.compute.manager.ComputeManager`), which also holds the lock
every method here runs under.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from typing import Any, Protocol

from oslo_config import cfg

from novanet.compute import antispoof, rules
from novanet.compute.dispatch import LocalJumps
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
)
from novanet.exception import NovanetError
from novanet.linux.devices import Prepare, VifDevice, host_mac
from novanet.linux.iptables.declare import declare
from novanet.rpc.objects import InstanceNetwork

LOG = logging.getLogger(__name__)
QUIET = 10  # a batch of more chain steps (an agent's first resync) is logged as one line


class Bridges(Protocol):
    def setup_compute(self, bridge: str, interface: str | None) -> list[Any]: ...


class Vifs(Protocol):
    def plug(
        self,
        vif_type: str,
        instance_mac: str,
        bridge: str,
        netns: str | None = None,
        prepare: Prepare | None = None,
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
    synced: bool = False  # the tables were converged (the first resync's last step)
    # Instances whose stale device could not be removed: they keep their chain.
    kept: dict[str, InstanceNetwork] = dataclasses.field(default_factory=dict)
    failed_removals: int = 0


class AgentKernel:
    """Kernel operations of the compute agent (callers hold the agent's lock)."""

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        *,
        bridges: Bridges,
        iptables: Any,
        vifs: Vifs,
        namespaces: Namespaces,
        netns_pattern: re.Pattern[str],
        ports: antispoof.PortFilter | None = None,
    ) -> None:
        self.conf = conf
        self.bridges = bridges
        self.iptables = iptables
        self.filter = iptables.ipv4["filter"]
        self.vifs = vifs
        self.namespaces = namespaces
        self.netns_pattern = netns_pattern
        self.ready: set[str] = set()  # bridges set up by this process
        self.ports = ports  # anti-spoofing (vif_antispoof); None: off
        # The jumps of nova-compute-local, in bucket chains on big hosts.
        self.jumps = LocalJumps(self.filter, conf.iptables_local_buckets_above)

    # -- one object at a time ------------------------------------------------------

    def ensure_bridge(self, bridge: str) -> None:
        if bridge in self.ready:
            return
        # The bridge manager logs each step it applies.
        self.bridges.setup_compute(bridge, self.conf.flat_interface)
        self.ready.add(bridge)
        self.declare_base()  # its FORWARD accepts: applied with the next change

    def repair_bridges(self) -> list[str]:
        """Set every bridge of ours up again where it changed; returns the steps taken."""
        done: list[str] = []
        for bridge in sorted(self.ready):
            try:
                steps = self.bridges.setup_compute(bridge, self.conf.flat_interface)
            except NovanetError as exc:  # e.g. eth2 made a port of another bridge
                LOG.error("cannot repair bridge %s: %s", bridge, exc)
                continue
            done += [f"{bridge}: {step}" for step in steps]
        return done

    def declare_base(self) -> None:
        declare(
            self.iptables.ipv4,
            rules.base_rules(
                sorted(self.ready),
                self.conf.iptables_drop_action,
                self.conf.forward_bridge_interface,
            ),
        )

    def add_rules(self, inst: InstanceNetwork) -> None:
        """The instance's chain and jump; again for the same instance: its chain rewritten."""
        spec = instance_filter(inst, self.conf.iptables_prefix)
        chain = rules.chain_name(inst.id)
        self.filter.add_chain(chain)
        self.filter.set_rules(chain, rules.instance_chain(spec, self.conf.allow_same_net_traffic))
        self.jumps.set(chain, inst.address)

    def remove_rules(self, inst: InstanceNetwork) -> None:
        chain = rules.chain_name(inst.id)
        self.jumps.remove(chain)
        if self.filter.has_chain(chain):
            self.filter.remove_chain(chain)

    def plug(self, inst: InstanceNetwork) -> str:
        devname = self.vifs.plug(
            inst.vif_type, inst.mac, inst.bridge, instance_netns(inst), self._prepare(inst)
        )
        LOG.info("plugged %s (%s %s) as %s", inst.name, inst.address, inst.mac, devname)
        return devname

    def unplug(self, inst: InstanceNetwork) -> str | None:
        """Delete the instance's device and namespace; returns the device's name, if any."""
        # unplug_mac deletes the namespace too, whether a device was found or
        # not (listing every namespace here would cost O(instances) per delete).
        device = self.vifs.unplug_mac(inst.mac, instance_netns(inst))
        if self.ports is not None:
            self.ports.unfilter(inst.mac)  # after the device: never a port without it
        return device

    # -- anti-spoofing (issue 12): novanet/compute/antispoof.py ----------------------

    def _prepare(self, inst: InstanceNetwork) -> Prepare | None:
        """The port's filter, put in place before the device is attached to the bridge."""
        ports = self.ports
        if ports is None:
            return None
        return lambda device: ports.filter(device, inst)

    def filter_ports(self, plan: ResyncPlan, instances: list[InstanceNetwork]) -> None:
        """Before a resync's steps: the devices it keeps are filtered (nothing removed)."""
        if self.ports is not None:
            self.ports.ensure(antispoof.ports_in_place(plan, instances))

    def converge_ports(self, instances: list[InstanceNetwork]) -> None:
        """After a resync: exactly the instances' devices are filtered."""
        if self.ports is not None:
            self.ports.converge(antispoof.ports_of(instances))

    def observe(self) -> HostView:
        """The VIF devices and instance namespaces: the resync's input (no lock needed)."""
        names = self.namespaces.list_netns()
        return HostView(
            tuple(self.vifs.list()), frozenset(n for n in names if self.netns_pattern.match(n))
        )

    # -- a resync plan -------------------------------------------------------------

    def apply(self, plan: ResyncPlan, known: Mapping[str, InstanceNetwork]) -> Applied:
        """Run the plan's steps; consecutive chain steps are one iptables batch."""
        done = Applied()
        batch: list[Step] = []
        for step in plan.steps:
            if isinstance(step, RULE_STEPS):
                batch.append(step)
                continue
            self._apply_rules(batch, done)
            batch = []
            self._apply_step(step, done, known)
        self._apply_rules(batch, done)
        return done

    def _apply_rules(self, steps: list[Step], done: Applied) -> None:
        if not steps:
            return
        if len(steps) > QUIET:
            LOG.info("resync: %d chain steps, the first: %s", len(steps), steps[0])
        with self.iptables.defer_apply():
            for step in steps:
                if len(steps) <= QUIET:
                    LOG.info("resync: %s", step)
                match step:
                    case AddRules(inst):
                        self.add_rules(inst)
                    case RemoveRules(inst) if inst.uuid in done.kept:
                        LOG.warning("resync: %s keeps its chain: its device remains", inst.name)
                    case RemoveRules(inst):
                        self.remove_rules(inst)
                    case SyncRules() if done.failed_removals:
                        # A stale device that could not be removed keeps its
                        # chain: the tables are converged at the next resync.
                        LOG.warning("resync: tables not converged: a stale device remains")
                    case SyncRules():
                        # Deletes chains of ours the model does not have
                        # (instances deleted while we were away), rewriting
                        # only chains that differ; it ignores the deferral.
                        self.iptables.full_sync()  # logs each change it makes
                        done.synced = True

    def _apply_step(self, step: Step, done: Applied, known: Mapping[str, InstanceNetwork]) -> None:
        LOG.info("resync: %s", step)
        try:
            match step:
                case EnsureBridge(bridge):
                    self.ensure_bridge(bridge)
                case Plug(inst):
                    done.devices[inst.uuid] = self.plug(inst)
                    done.plugged += 1
                case Replace(inst, device, _reason):
                    self.vifs.unplug(device, instance_netns(inst))
                    done.devices[inst.uuid] = self.plug(inst)
                    done.plugged += 1
                case Attach(inst, device) if self.vifs.attach(device, inst.bridge):
                    done.devices[inst.uuid] = device
                    done.attached += 1
                case Attach(inst, device):  # gone since it was listed
                    done.devices[inst.uuid] = self.plug(inst)
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
                done.failed_removals += 1
                done.kept.update(
                    (uuid, inst) for uuid, inst in known.items() if host_mac(inst.mac) == step.mac
                )
