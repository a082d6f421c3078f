"""Instances in a lab: boot (netns VIF + a DHCP client, like a cirros guest), delete, ping.

An instance is created with ``novanet-manage instance create --vif-type
netns`` on the controller; the compute agent of its host makes the network
namespace ``instance-%08x`` inside that node (the node's own /run/netns, see
:mod:`novanet.lab.mounts`) holding ``eth0`` with the instance's MAC. The lab
then runs busybox udhcpc in it, kept running so the lease renews like a
real guest's. Commands "in the guest" run in the node's view with one more
``nsenter --net=/run/netns/<instance>``.

With ``guest="qemu"`` the instance gets a tap VIF instead and a real VM
(:mod:`novanet.lab.vm`) boots on it; commands in that guest go through the
VM's command channel.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

from novanet import exception
from novanet.dhcp.labels import dns_label
from novanet.lab import guest
from novanet.lab.daemons import ManageError, Novanet
from novanet.lab.lab import FABRIC
from novanet.lab.vm import image, qemu

GUESTS = ("netns", "qemu")
QEMU_BOOT_TIMEOUT = 180.0  # seconds to a lease under TCG on a busy 2-core machine

METADATA_URL = "http://169.254.169.254/2009-04-04/meta-data/instance-id"


@dataclasses.dataclass(frozen=True)
class Instance:
    """An instance as novanet-manage shows it."""

    id: int
    name: str  # instance-00000001: its network namespace on its host
    display_name: str
    uuid: str
    host: str
    address: str | None
    mac: str | None
    device: str | None
    state: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Instance:
        return cls(
            id=int(row["id"]),
            name=str(row["name"]),
            display_name=str(row.get("display_name") or row["name"]),
            uuid=str(row["uuid"]),
            host=str(row["host"]),
            address=row.get("address"),
            mac=row.get("mac"),
            device=row.get("device"),
            state=row.get("state"),
        )


@dataclasses.dataclass(frozen=True)
class Booted:
    instance: Instance
    lease: guest.GuestLease
    seconds: float  # from `instance create` to the guest's first lease
    vm: qemu.Vm | None = None  # a QEMU guest (None: a netns guest)


@dataclasses.dataclass(frozen=True)
class PingResult:
    source: str
    destination: str
    argv: list[str]
    output: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def not_permitted(self) -> bool:
        # iputils says "sendmsg: Operation not permitted", busybox "sendto: ...".
        return "Operation not permitted" in self.output


def guest_prefix(instance: Instance) -> list[str]:
    """argv prefix (inside the host node's view) that enters the instance's namespace."""
    return ["nsenter", f"--net=/run/netns/{instance.name}", "--"]


class Instances:
    """Instances of one lab, through novanet-manage on its controller."""

    def __init__(self, novanet: Novanet) -> None:
        self.novanet = novanet
        self.lab = novanet.lab

    def all(self) -> list[Instance]:
        return [Instance.from_row(r) for r in self.novanet.manage_json("instance", "list")]

    def find(self, ref: str) -> Instance:
        """An instance by id, uuid, name (instance-00000001) or display name."""
        rows = self.novanet.manage_json("instance", "show", ref)
        return Instance.from_row(rows[0])

    def create(
        self, name: str, host: str, mac: str | None = None, vif_type: str = "netns"
    ) -> Instance:
        self._check_host(host)
        args = ["instance", "create", "--name", name, "--host", host, "--vif-type", vif_type]
        if mac:
            args += ["--mac", mac]
        return Instance.from_row(self.novanet.manage_json(*args)[0])

    def _check_host(self, host: str) -> None:
        if host not in self.novanet.computes:
            raise exception.UsageError(
                f"--host {host}: not a compute node of the lab ({', '.join(self.novanet.computes)})"
            )

    def boot(
        self,
        name: str,
        host: str,
        mac: str | None = None,
        dhcp_timeout: float | None = None,
        guest_kind: str = "netns",
        progress: Callable[[str], None] | None = None,
    ) -> Booted:
        """Create the instance, then start its guest and wait until it has a lease.

        :param guest_kind: ``netns`` (udhcpc in the instance's namespace) or
            ``qemu`` (a VM on a tap VIF; the guest image is built first if
            it is not cached, before the instance exists)
        """
        if guest_kind not in GUESTS:
            raise exception.UsageError(f"--guest {guest_kind}: use one of {', '.join(GUESTS)}")
        if guest_kind == "qemu":
            return self._boot_vm(name, host, mac, dhcp_timeout or QEMU_BOOT_TIMEOUT, progress)
        started = time.monotonic()
        instance = self.create(name, host, mac)
        lease = self.start_guest(instance, timeout=dhcp_timeout or 15)
        return Booted(instance, lease, time.monotonic() - started)

    def _boot_vm(
        self,
        name: str,
        host: str,
        mac: str | None,
        timeout: float,
        progress: Callable[[str], None] | None,
    ) -> Booted:
        self._check_host(host)
        if not shutil.which(qemu.QEMU):
            raise exception.NotFound(f"{qemu.QEMU} is not installed (tools/install-packages.sh)")
        built = image.ImageCache(progress=progress).ensure()
        started = time.monotonic()
        instance = self.create(name, host, mac, vif_type="tap")
        if not (instance.mac and instance.device):
            raise exception.NovanetError(f"instance {instance.name} has no MAC or tap device")
        vm = qemu.start(
            self.lab,
            instance.host,
            instance.name,
            hostname=dns_label(instance.display_name, instance.name),
            mac=instance.mac,
            tap=instance.device,
            image=built,
            aliases=(instance.display_name, instance.uuid),
        )
        try:
            lease = dataclasses.replace(vm.wait_lease(timeout), console=vm.console())
        except (TimeoutError, qemu.VmGone) as exc:
            raise exception.NovanetError(
                f"{exc}\n(instance {name} stays to be looked at: novanet-lab delete {name})"
            ) from None
        return Booted(instance, lease, time.monotonic() - started, vm)

    def vm(self, instance: Instance) -> qemu.Vm | None:
        """The instance's QEMU guest, if the lab started one."""
        return qemu.find(self.lab, instance.host, instance.name)

    def start_guest(self, instance: Instance, timeout: float = 15) -> guest.GuestLease:
        """udhcpc in the instance, kept running (renewals); the first lease it applied."""
        return self.lab.start_guest_dhcp(
            instance.host, instance.name, hostname=instance.display_name, timeout=timeout
        )

    def delete(self, ref: str) -> str:
        """Stop the guest (VM or DHCP client), then ``instance delete``; novanet-manage's output.

        A VM whose instance is already gone (deleted with novanet-manage
        alone: the agent removed the tap under the running QEMU) is stopped.
        """
        try:
            instance = self.find(ref)
        except ManageError:
            orphans = [vm for vm in qemu.all_vms(self.lab) if ref in vm.names() and vm.running()]
            if not orphans:
                raise
            for vm in orphans:
                qemu.stop(self.lab, vm.node, vm.name)
            return f"stopped the VM of {ref} on {orphans[0].node} (its instance was deleted)\n"
        # QEMU holds the tap open: stopped first, so that the agent removes an
        # idle device (and a new VM can never attach to a half-deleted one).
        qemu.stop(self.lab, instance.host, instance.name)
        # udhcpc holds the instance's namespace open: stopped first, so that
        # the agent's delete frees the namespace and its veth at once.
        self.lab.stop_process(instance.host, f"udhcpc-{instance.name}")
        return self.novanet.manage("instance", "delete", instance.uuid)

    # -- running things in guests and nodes ------------------------------------------

    def locate(self, ref: str) -> tuple[str, list[str], Instance | None]:
        """(node, argv prefix in that node, instance) for a node or an instance name."""
        if ref == FABRIC or ref in [n.name for n in self.lab.topology.nodes]:
            return ref, [], None
        instance = self.find(ref)
        return instance.host, guest_prefix(instance), instance

    def in_guest(self, instance: Instance, argv: Sequence[str], **kwargs: Any) -> tuple[str, str]:
        """Run a command in an instance (processutils.execute semantics)."""
        return self.lab.execute(instance.host, [*guest_prefix(instance), *argv], **kwargs)

    def run_in(self, ref: str, argv: Sequence[str], timeout: float = 60) -> tuple[str, str, int]:
        """(stdout, stderr, exit code) of a command in a node, netns guest or VM."""
        return self._run(self._target(ref), argv, timeout)

    def _target(self, ref: str) -> tuple[str, list[str], qemu.Vm | None]:
        node, prefix, instance = self.locate(ref)
        return node, prefix, self.vm(instance) if instance else None

    def _run(
        self, target: tuple[str, list[str], qemu.Vm | None], argv: Sequence[str], timeout: float
    ) -> tuple[str, str, int]:
        node, prefix, vm = target
        if vm is not None:
            result = vm.run(qemu.shell_join(argv), timeout=timeout)
            return result.stdout, result.stderr, result.exit_code
        return run_status(self.lab.execute, node, [*prefix, *argv], timeout=timeout)

    def address_of(self, ref: str) -> str:
        """An IPv4 address, a node's management address or an instance's fixed IP."""
        try:
            return str(ipaddress.IPv4Address(ref))
        except ValueError:
            pass
        if ref in [n.name for n in self.lab.topology.nodes]:
            return self.lab.topology.node(ref).management_ip
        instance = self.find(ref)
        if not instance.address:
            raise exception.NotFound(f"instance {ref} has no address")
        return instance.address.split(",")[0].strip()

    def ping(
        self, source: str, destination: str, count: int = 3, wait: int = 2, tool: str = "auto"
    ) -> PingResult:
        """Ping from a node or instance to an address, node or instance.

        :param tool: ``auto`` (iputils ping if installed, else busybox),
            ``iputils`` or ``busybox``
        """
        target = self._target(source)
        if target[2] is not None:
            tool = "busybox"  # all a VM has
        argv = ping_argv(self.address_of(destination), count, wait, tool)
        out, err, code = self._run(target, argv, 60)
        return PingResult(source, destination, argv, out + err, code)

    def cloud_setup(
        self, instance: Instance, tries: int = 30, booted_at: float | None = None
    ) -> tuple[str | None, int, float]:
        """Fetch the instance-id as cirros' cloud-setup does: (iid, tries used, uptime)."""
        started = booted_at if booted_at is not None else time.monotonic()
        for attempt in range(1, tries + 1):
            # `busybox wget -T` crashes (busybox 1.35): bound it with timeout(1).
            out, _ = self.in_guest(
                instance,
                ["timeout", "5", "busybox", "wget", "-qO-", METADATA_URL],
                check=False,
                log_errors=False,
            )
            if out.strip():
                return out.strip(), attempt, time.monotonic() - started
            time.sleep(0.5)
        return None, tries, time.monotonic() - started


def run_status(
    execute: Callable[..., tuple[str, str]], node: str, argv: Sequence[str], timeout: float = 60
) -> tuple[str, str, int]:
    """(stdout, stderr, exit code) of a command in a node, whatever its exit code."""
    try:
        out, err = execute(node, list(argv), log_errors=False, timeout=timeout)
    except exception.ProcessExecutionError as exc:
        code = exc.returncode if exc.returncode is not None else 127
        return exc.stdout, exc.stderr or exc.description, code
    return out, err, 0


def ping_argv(address: str, count: int = 3, wait: int = 2, tool: str = "auto") -> list[str]:
    """iputils ping (``auto``: when installed), else busybox ping.

    iputils 20221126 (Debian 12) counts a packet its sendto() could not send
    (EPERM from an iptables DROP in OUTPUT) as lost without printing why;
    busybox ping prints ``ping: sendto: Operation not permitted`` as the
    seed's ping did (``sendmsg:`` there): use ``busybox`` to see that message.
    """
    if tool == "iputils" or (tool == "auto" and shutil.which("ping")):
        return ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", str(wait), address]
    if tool not in ("auto", "busybox"):
        raise exception.UsageError(f"unknown ping tool {tool!r} (auto, iputils, busybox)")
    return ["busybox", "ping", "-c", str(count), "-W", str(wait), address]
