"""QEMU guests in a lab's compute nodes, on the taps novanet-compute made.

The VM is started by the lab's launcher inside the compute node (its
network namespace and mount view), so QEMU opens the node's own tap:
``-netdev tap,ifname=vnetN,script=no,downscript=no`` attaches to the
persistent tap the agent created (``vif_type tap``) and leaves creating,
bridging and removing it to the agent. TCG only: this machine's /dev/kvm
cannot boot a stock kernel (PLATFORM.md).

Files of a VM: the launcher's ``<node>/logs/qemu-<instance>.log`` (QEMU's
own messages), ``<node>/logs/<instance>.console.log`` (the serial console:
kernel, udhcpc, the ``novanet-guest:`` lines) and the command channel's
socket ``<node>/guests/<instance>/channel.sock``. The process is named
``qemu-<instance>`` in the node: ``down`` and ``delete`` stop it by its pid.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import time
from collections.abc import Sequence

from novanet import exception
from novanet.lab import guest as netns_guest
from novanet.lab.lab import Lab
from novanet.lab.state import write_text
from novanet.lab.vm import initramfs
from novanet.lab.vm.channel import DEFAULT_TIMEOUT, Channel, ChannelError, CommandResult
from novanet.lab.vm.image import GuestImage

QEMU = "qemu-system-x86_64"
MEMORY_MB = 128  # 64 MB does not boot Debian's kernel (PLATFORM.md)
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the NUL


@dataclasses.dataclass(frozen=True)
class VmSpec:
    """Everything the QEMU command line needs."""

    name: str  # instance-00000001
    hostname: str
    mac: str
    tap: str
    vmlinux: str
    initrd: str
    console_log: str
    channel_socket: str
    memory_mb: int = MEMORY_MB


def _opt(value: str) -> str:
    """A value inside a QEMU ``-opt key=value,...`` list: commas are doubled."""
    return value.replace(",", ",,")


def qemu_argv(spec: VmSpec) -> list[str]:
    """QEMU's command line for a lab guest (run inside the compute node).

    ``-nodefaults`` leaves out QEMU's default NIC, VGA and monitor;
    ``-no-reboot`` with ``panic=-1`` makes a guest whose init died exit
    instead of rebooting; ``romfile=`` skips the PXE option ROM (the kernel
    is given directly, and the ROM is in a package we do not install).
    """
    if len(spec.channel_socket) > MAX_SOCKET_PATH:
        raise exception.UsageError(f"socket path too long for QEMU: {spec.channel_socket}")
    cmdline = f"console=ttyS0 loglevel=0 panic=-1 novanet.hostname={spec.hostname}"
    return [
        QEMU,
        "-name", f"guest={_opt(spec.name)}",
        "-machine", "pc,accel=tcg",
        "-m", str(spec.memory_mb),
        "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", spec.vmlinux,
        "-initrd", spec.initrd,
        "-append", cmdline,
        "-chardev", f"file,id=console,path={_opt(spec.console_log)},append=on",
        "-serial", "chardev:console",
        "-chardev", f"socket,id=channel,path={_opt(spec.channel_socket)},server=on,wait=off",
        "-serial", "chardev:channel",
        "-netdev", f"tap,id=net0,ifname={_opt(spec.tap)},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=net0,mac={spec.mac},romfile=",
    ]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ConsoleReport:
    """What the guest said on its console (the last of each kind)."""

    lease: netns_guest.GuestLease | None = None
    dhcp_server: str | None = None
    lease_uptime: float | None = None  # guest seconds since its kernel started
    instance_id: str | None = None
    metadata_error: str | None = None
    metadata_uptime: float | None = None
    errors: tuple[str, ...] = ()


def _fields(text: str) -> dict[str, str]:
    return dict(word.partition("=")[::2] for word in text.split() if "=" in word)


def parse_console(text: str) -> ConsoleReport:
    """The ``novanet-guest:`` lines of a console log (see :mod:`.initramfs`)."""
    report = ConsoleReport()
    errors: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(initramfs.PREFIX):
            continue
        words = line[len(initramfs.PREFIX) :].split()
        event = words[0] if words and "=" not in words[0] else ""
        fields = _fields(" ".join(words))
        if "error" in fields and event != "metadata":
            errors.append(fields["error"])
        if event == "lease" and fields.get("address"):
            dns = tuple(d for d in fields.get("dns", "").split(",") if d)
            report = dataclasses.replace(
                report,
                lease=netns_guest.GuestLease(fields["address"], fields.get("router") or None, dns),
                dhcp_server=fields.get("server") or None,
                lease_uptime=_float(fields.get("uptime")),
            )
        elif event == "metadata":
            report = dataclasses.replace(
                report,
                instance_id=fields.get("instance-id"),
                metadata_error=fields.get("error"),
                metadata_uptime=_float(fields.get("uptime")),
            )
    return dataclasses.replace(report, errors=tuple(errors))


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


class VmGone(exception.NovanetError):
    """The VM's QEMU is not running (it failed to start, or exited)."""


@dataclasses.dataclass(frozen=True)
class Vm:
    """A QEMU guest of the lab; its state is in the lab's files and QEMU's pid."""

    lab: Lab
    node: str
    name: str

    @property
    def process_name(self) -> str:
        return process_name(self.name)

    @property
    def directory(self) -> str:
        return netns_guest.guest_dir(self.lab.paths, self.node, self.name)

    @property
    def console_log(self) -> str:
        return os.path.join(self.lab.paths.logs_dir(self.node), f"{self.name}.console.log")

    @property
    def channel(self) -> Channel:
        return Channel(os.path.join(self.directory, "channel.sock"))

    def running(self) -> bool:
        return self.lab.process_running(self.node, self.process_name)

    def pid(self) -> int | None:
        record = self.lab.process(self.node, self.process_name)
        return record.pid if record else None

    def names(self) -> list[str]:
        """The instance's name and the aliases it was started with (display name, uuid)."""
        try:
            with open(os.path.join(self.directory, "names"), encoding="utf-8") as handle:
                return [self.name, *handle.read().splitlines()]
        except FileNotFoundError:
            return [self.name]

    def console(self) -> str:
        try:
            with open(self.console_log, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def report(self) -> ConsoleReport:
        return parse_console(self.console())

    def _gone(self, waiting_for: str) -> VmGone:
        record = self.lab.process(self.node, self.process_name)
        log = record.log if record else "(no log)"
        tail = "".join(_tail(log, 5)) + "".join(_tail(self.console_log, 10))
        return VmGone(f"QEMU of {self.name} exited while waiting for {waiting_for}:\n{tail}")

    def wait(self, what: str, timeout: float = 180.0) -> ConsoleReport:
        """Poll the console until ``what`` (``lease`` or ``metadata``) is reported."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.report()
            if (what == "lease" and report.lease) or (
                what == "metadata" and (report.instance_id or report.metadata_error)
            ):
                return report
            if not self.running():
                raise self._gone(what)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name}: no {what} on its console after {timeout:.0f} s "
                    f"(see {self.console_log})"
                )
            time.sleep(0.1)

    def wait_lease(self, timeout: float = 180.0) -> netns_guest.GuestLease:
        """The first lease the guest reported (it waits for it, see :meth:`wait`)."""
        lease = self.wait("lease", timeout).lease
        if lease is None:  # not reached: wait() returns once there is one
            raise exception.NovanetError(f"{self.name}: no lease")
        return lease

    def run(self, script: str, timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        """Run shell text in the guest through its command channel."""
        if not self.running():
            raise self._gone("a command")
        try:
            return self.channel.run(script, timeout=timeout)
        except ChannelError as exc:
            if not self.running():
                raise self._gone("a command") from None
            raise exception.NovanetError(f"{self.name}: {exc}") from None


def _tail(path: str, lines: int) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.readlines()[-lines:]
    except FileNotFoundError:
        return []


def process_name(instance: str) -> str:
    return f"qemu-{instance}"


def start(
    lab: Lab,
    node: str,
    instance: str,
    *,
    hostname: str,
    mac: str,
    tap: str,
    image: GuestImage,
    aliases: Sequence[str] = (),
) -> Vm:
    """Start QEMU in ``node`` on its tap ``tap``; returns at once (see :meth:`Vm.wait`).

    :param aliases: other names of the instance (display name, uuid), kept
        so that the VM is found after its instance was deleted
    """
    vm = Vm(lab, node, instance)
    write_text(os.path.join(vm.directory, "names"), "".join(f"{a}\n" for a in aliases if a))
    spec = VmSpec(
        name=instance,
        hostname=hostname,
        mac=mac,
        tap=tap,
        vmlinux=image.vmlinux,
        initrd=image.initrd,
        console_log=vm.console_log,
        channel_socket=vm.channel.path,
    )
    argv = qemu_argv(spec)
    for stale in (spec.channel_socket, spec.console_log):
        # A previous VM of this instance name (the lab was not down in between).
        if os.path.exists(stale) and not vm.running():
            os.unlink(stale)
    lab.start_process(node, vm.process_name, argv)
    return vm


def all_vms(lab: Lab) -> list[Vm]:
    """Every VM the lab started (running or not)."""
    prefix = process_name("")
    nodes = [n.name for n in lab.topology.nodes]
    return [
        Vm(lab, r.node, r.name[len(prefix) :])
        for r in lab.launcher.records(nodes)
        if r.node and r.name.startswith(prefix)
    ]


def find(lab: Lab, node: str, instance: str) -> Vm | None:
    """The VM of an instance if the lab ever started one (running or not)."""
    if lab.process(node, process_name(instance)) is None:
        return None
    return Vm(lab, node, instance)


def stop(lab: Lab, node: str, instance: str, timeout: float = 5.0) -> bool:
    """SIGTERM QEMU (it exits at once), SIGKILL after ``timeout``; True if it ran."""
    return lab.stop_process(node, process_name(instance), timeout=timeout)


def shell_join(argv: Sequence[str]) -> str:
    """argv as one line of the guest's sh."""
    return shlex.join(argv)
