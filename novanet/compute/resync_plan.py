"""The compute agent's resync as a plan: pure functions from wanted and present to steps.

Inputs are plain values: the instances the controller lists for this host,
what the agent set up so far (``known``), and what the kernel shows (the
``vnetN`` devices and the instance namespaces, read once, outside the
agent's lock). The output is a list of small steps the agent applies, in
this order, which is what keeps every instance filtered and its guest
connected:

1. bridges not set up yet;
2. chains: added for new instances (for all of them on the first resync
   after a start), replaced for changed ones (one iptables-restore);
3. devices: plugged when missing, re-attached to their bridge (and brought
   up) when they are off it, replaced only when they cannot be the
   instance's (see below);
4. devices and namespaces of no wanted instance are removed;
5. chains of instances gone (and, on the first resync, every chain of ours
   the model does not have) are removed: after their devices, so no device
   is ever on the bridge without its chain.

A device is found by its MAC (the instance MAC with ``fe`` first). Once
found it is never deleted to "fix" it while it can still serve: a device
off its bridge, or on another bridge, or down, is re-attached and brought
up. Deleting would replace a tap that QEMU holds open (the VM loses its
network for good: the kernel detaches the fd, ``EBADFD``) or a veth whose
guest end holds the instance's address. A device is replaced only when it
cannot be the instance's VIF: a tap where the instance has a ``netns`` VIF
or the other way round (the controller's record wins: the VIF type never
changes for a live instance, so such a device was made by something else),
or a veth whose instance namespace is gone (its guest is gone with it).
A device whose MAC is no wanted instance's is another instance's leftover
and removed; that also covers a device whose MAC was changed by hand: the
instance then gets a new device, which is all that can serve it.

Instances set up or torn down while the controller's list was read
(``settled``) get no step: they are left as :meth:`setup_instance` or
:meth:`teardown_instance` made them, but their devices and namespaces count
as wanted.

Everything is linear in the number of instances and devices: one pass with
dicts and sets built once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from novanet.compute import rules, secgroups
from novanet.linux.devices import VifDevice, host_mac
from novanet.rpc.objects import InstanceNetwork


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


def instance_netns(inst: InstanceNetwork) -> str | None:
    """The instance's own network namespace (netns VIFs), named after the instance."""
    return inst.name if inst.vif_type == "netns" else None


def instance_filter(inst: InstanceNetwork, prefix: str = "nova") -> rules.InstanceFilter:
    accepts = tuple(secgroups.render(inst.rules, prefix))
    return rules.InstanceFilter(inst.id, inst.address, inst.cidr, inst.dhcp_server, accepts)


def _who(inst: InstanceNetwork) -> str:
    return f"{inst.name} ({inst.address} {inst.mac})"


@dataclass(frozen=True)
class HostView:
    """What the kernel showed: ``vnetN`` devices (in name order) and instance namespaces."""

    devices: tuple[VifDevice, ...] = ()
    namespaces: frozenset[str] = frozenset()


@dataclass(frozen=True)
class EnsureBridge:
    bridge: str

    def __str__(self) -> str:
        return f"set up bridge {self.bridge}"


@dataclass(frozen=True)
class AddRules:
    instance: InstanceNetwork

    def __str__(self) -> str:
        return f"add chain {rules.chain_name(self.instance.id)} for {_who(self.instance)}"


@dataclass(frozen=True)
class RemoveRules:
    instance: InstanceNetwork

    def __str__(self) -> str:
        return f"remove chain {rules.chain_name(self.instance.id)} of {_who(self.instance)}"


@dataclass(frozen=True)
class SyncRules:
    def __str__(self) -> str:
        return "converge the tables (chains of instances deleted meanwhile go)"


@dataclass(frozen=True)
class Plug:
    instance: InstanceNetwork

    def __str__(self) -> str:
        return f"plug {_who(self.instance)} on {self.instance.bridge}"


@dataclass(frozen=True)
class Attach:
    instance: InstanceNetwork
    device: str

    def __str__(self) -> str:
        return f"attach {self.device} of {self.instance.name} to {self.instance.bridge}, up"


@dataclass(frozen=True)
class Replace:
    instance: InstanceNetwork
    device: str
    reason: str

    def __str__(self) -> str:
        return f"replace {self.device} of {_who(self.instance)}: {self.reason}"


@dataclass(frozen=True)
class RemoveDevice:
    device: str
    mac: str | None
    reason: str = "no instance of this host has its MAC"

    def __str__(self) -> str:
        return f"remove device {self.device} ({self.mac}): {self.reason}"


@dataclass(frozen=True)
class RemoveNamespace:
    name: str

    def __str__(self) -> str:
        return f"remove instance namespace {self.name}: no instance of this host has it"


Step = (
    EnsureBridge
    | AddRules
    | RemoveRules
    | SyncRules
    | Plug
    | Attach
    | Replace
    | RemoveDevice
    | RemoveNamespace
)
RULE_STEPS = (AddRules, RemoveRules, SyncRules)


@dataclass(frozen=True)
class ResyncPlan:
    steps: tuple[Step, ...]
    # uuid -> device already right (no step): recorded as the instance's devname
    in_place: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(str(step) for step in self.steps) or "nothing to do"


def plan_resync(
    wanted: Sequence[InstanceNetwork],
    known: Mapping[str, InstanceNetwork],
    view: HostView,
    *,
    bridges_ready: Iterable[str] = (),
    first: bool = False,
    settled: Iterable[str] = (),
    remove_stale: bool = True,
) -> ResyncPlan:
    """The steps converging this host to ``wanted`` (see the module docstring).

    :param known: uuid -> instance as the agent last set it up
    :param first: the first resync since the agent started: every chain is
        declared and the tables are converged once (stale chains go)
    :param settled: uuids changed while the list was read: no steps for them
    :param remove_stale: False plans only what brings wanted instances back
        (a bridge repair between two resyncs): nothing is removed
    """
    settled = frozenset(settled)
    ready = set(bridges_ready)
    steps: list[Step] = []
    for bridge in dict.fromkeys(inst.bridge for inst in wanted):
        if bridge not in ready:
            steps.append(EnsureBridge(bridge))
    active = [inst for inst in wanted if inst.uuid not in settled]
    steps += _plan_rules(active, known, first)
    macs = {inst.uuid: host_mac(inst.mac) for inst in wanted}  # each normalised once
    device_steps, in_place, duplicates = _plan_devices(active, macs, view)
    steps += device_steps
    if not remove_stale:
        return ResyncPlan(tuple(steps), in_place)
    steps += duplicates
    wanted_macs = set(macs.values())
    steps += [RemoveDevice(vif.name, vif.mac) for vif in view.devices if vif.mac not in wanted_macs]
    wanted_ns = {ns for inst in wanted if (ns := instance_netns(inst)) is not None}
    steps += [RemoveNamespace(name) for name in sorted(view.namespaces - wanted_ns)]
    uuids = {inst.uuid for inst in wanted}
    steps += [
        RemoveRules(old) for uuid, old in known.items() if uuid not in uuids and uuid not in settled
    ]
    if first:
        steps.append(SyncRules())
    return ResyncPlan(tuple(steps), in_place)


def _plan_rules(
    active: Sequence[InstanceNetwork], known: Mapping[str, InstanceNetwork], first: bool
) -> list[Step]:
    steps: list[Step] = []
    for inst in active:
        old = known.get(inst.uuid)
        if old is not None and _filter_key(old) != _filter_key(inst):
            # its address, network or security-group rules changed
            steps += [RemoveRules(old), AddRules(inst)]
        elif first or old is None:
            steps.append(AddRules(inst))
    return steps


def _filter_key(inst: InstanceNetwork) -> tuple[int, str, str, str, tuple[str, ...]]:
    """What the instance's chain is made of (see instance_filter), compared cheaply."""
    return inst.id, inst.address, inst.cidr, inst.dhcp_server, inst.rules


def _plan_devices(
    active: Sequence[InstanceNetwork], macs: Mapping[str, str], view: HostView
) -> tuple[list[Step], dict[str, str], list[Step]]:
    """(device steps of the active instances, devices in place, duplicates to remove).

    ``macs``: uuid -> host MAC of every wanted instance.
    """
    by_mac: dict[str | None, VifDevice] = {}
    duplicates: list[Step] = []
    wanted_macs = set(macs.values())
    for vif in view.devices:
        if vif.mac in by_mac and vif.mac in wanted_macs:
            # Two devices with one instance's MAC: the first (lowest vnetN)
            # is the one plugging finds and uses; the other is a leftover.
            duplicates.append(
                RemoveDevice(vif.name, vif.mac, f"{by_mac[vif.mac].name} has the same MAC")
            )
            continue
        by_mac.setdefault(vif.mac, vif)
    steps: list[Step] = []
    in_place: dict[str, str] = {}
    for inst in active:
        device = by_mac.get(macs[inst.uuid])
        netns = instance_netns(inst)
        if device is None:
            steps.append(Plug(inst))
        elif device.vif_type != inst.vif_type:
            kind = device.kind or "plain"
            reason = f"a {kind} device, the instance has a {inst.vif_type} VIF"
            steps.append(Replace(inst, device.name, reason))
        elif netns is not None and netns not in view.namespaces:
            steps.append(Replace(inst, device.name, f"its namespace {netns} is gone"))
        elif device.bridge != inst.bridge or not device.up:
            steps.append(Attach(inst, device.name))
        else:
            in_place[inst.uuid] = device.name
    return steps, in_place, duplicates
