"""VIF devices of the compute agent: tap or veth-into-a-namespace, on the bridge.

- ``tap``: a persistent tap ``vnetN`` on the bridge, up; QEMU opens it later
  with ``-netdev tap,ifname=vnetN,script=no``.
- ``netns``: a veth pair; the host end ``vnetN`` is on the bridge, the guest
  end is ``eth0`` with the instance MAC inside a network namespace named
  after the instance, with ``lo`` and ``eth0`` up.

The host end's MAC is the instance MAC with its first byte replaced by
``fe`` (as libvirt does): a bridge takes the lowest MAC of its ports as its
own, and fe: sorts above every real NIC, so plugging a VIF never changes the
bridge's MAC (which would break its neighbours' ARP caches).

The device is found again by that MAC, which makes plugging idempotent and
lets the agent resync after a restart without any state file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from novanet.exception import Conflict
from novanet.linux.lock import LockSet
from novanet.linux.netlink import IpLibApi, LinkInfo, check_ifname, check_netns_name, normalize_mac

LOG = logging.getLogger(__name__)

VIF_PREFIX = "vnet"
GUEST_IFNAME = "eth0"
VIF_TYPES = ("tap", "netns")
# Called with the host device's name once it exists and before it is put on
# the bridge and brought up: the anti-spoofing filter goes in there, so the
# port never passes an unfiltered frame (the name is only known here).
Prepare = Callable[[str], None]


def host_mac(instance_mac: str) -> str:
    """fa:16:3e:2c:e8:ec -> fe:16:3e:2c:e8:ec."""
    return "fe" + normalize_mac(instance_mac)[2:]


@dataclass(frozen=True)
class VifDevice:
    """A host-side VIF device found on this host."""

    name: str
    kind: str | None
    mac: str | None
    bridge: str | None
    up: bool

    @property
    def vif_type(self) -> str:
        return "tap" if self.kind == "tap" else "netns" if self.kind == "veth" else "unknown"


class VifDevices:
    """Plug, unplug and list VIF devices.

    :param ip: an IpLib (or the fake)
    :param lock_dir: directory of the lock files; allocating a vnetN name
        and creating it is one critical section across processes
    """

    def __init__(self, ip: IpLibApi, lock_dir: str, *, prefix: str = VIF_PREFIX) -> None:
        self.ip = ip
        self.locks = LockSet(lock_dir)
        self.prefix = prefix
        self._name_re = re.compile(rf"^{re.escape(prefix)}(\d+)$")
        # What we last saw or did, by name. A full link dump costs O(links)
        # (0.1 s at 300 devices, seconds at 5,000), so plugging one device
        # must not dump: it trusts this index, checks the one device it is
        # about to reuse, and re-lists only when the kernel disagrees.
        self._index_by_name: dict[str, VifDevice] | None = None

    def list(self) -> list[VifDevice]:
        """Existing ``vnetN`` devices, by name order, read from the kernel (for resync)."""
        found = [
            self._vif(link)
            for link in self.ip.links(self.prefix)
            if self._index(link.name) is not None
        ]
        self._index_by_name = {vif.name: vif for vif in found}
        return sorted(found, key=lambda vif: self._index(vif.name) or 0)

    def _present(self) -> Sequence[VifDevice]:
        if self._index_by_name is None:
            return self.list()
        return list(self._index_by_name.values())

    def _remember(self, vif: VifDevice) -> None:
        if self._index_by_name is not None:
            self._index_by_name[vif.name] = vif

    def _forget(self, name: str) -> None:
        if self._index_by_name is not None:
            self._index_by_name.pop(name, None)

    def _current(self, vif: VifDevice | None) -> VifDevice | None:
        """``vif`` as the kernel has it now (None if it is gone)."""
        if vif is None:
            return None
        link = self.ip.link(vif.name)
        if link is None or self._vif(link).mac != vif.mac:
            self._forget(vif.name)
            return None
        fresh = self._vif(link)
        self._remember(fresh)
        return fresh

    def find(self, instance_mac: str) -> VifDevice | None:
        """The host device of the instance with this MAC, if plugged."""
        found = self._current(self._find(self._present(), instance_mac))
        if found is None and self._index_by_name is not None:
            found = self._find(self.list(), instance_mac)  # the index may be stale
        return found

    def next_name(self) -> str:
        """The lowest free ``vnetN``."""
        return self._next_name(self.list())

    def plug(
        self,
        vif_type: str,
        instance_mac: str,
        bridge: str,
        netns: str | None = None,
        prepare: Prepare | None = None,
    ) -> str:
        """Plug by type (``tap`` or ``netns``); returns the host device name.

        :param prepare: called with the device name before the device is
            attached and up (also for a device that exists already); if it
            raises, a device made here is deleted again
        """
        if vif_type == "tap":
            return self.plug_tap(instance_mac, bridge, prepare)
        if vif_type == "netns":
            if not netns:
                raise ValueError("a netns VIF needs the namespace name")
            return self.plug_netns(instance_mac, bridge, netns, prepare)
        raise ValueError(f"unknown VIF type {vif_type!r} (expected one of {', '.join(VIF_TYPES)})")

    def plug_tap(self, instance_mac: str, bridge: str, prepare: Prepare | None = None) -> str:
        """A persistent tap vnetN with the host MAC, on ``bridge``, up."""
        mac = host_mac(instance_mac)
        with self.locks.lock("vif"):
            existing = self._current(self._find(self._present(), instance_mac))
            if existing is None:
                name = self._next_name(self._present())
                if self.ip.link(name) is not None:  # made behind our back: re-read
                    name = self._next_name(self.list())
                LOG.info("creating tap %s (%s) on %s", name, mac, bridge)
                if prepare is None:
                    self.ip.create_tap(name, mac=mac, bridge=bridge)
                else:
                    self.ip.create_tap(name, mac=mac)  # off the bridge, down
                    self._prepared(VifDevice(name, "tap", mac, None, False), bridge, prepare)
                self._remember(VifDevice(name, "tap", mac, bridge, True))
                return name
            if existing.kind != "tap":
                raise Conflict(
                    f"MAC {mac} is already used by {existing.name}, a {existing.kind} device"
                )
            if prepare is not None:
                prepare(existing.name)
            self._attach(existing, bridge)
        return existing.name

    def plug_netns(
        self, instance_mac: str, bridge: str, netns: str, prepare: Prepare | None = None
    ) -> str:
        """A veth pair: host vnetN on ``bridge``, guest eth0 in ``netns``."""
        check_netns_name(netns)
        mac = normalize_mac(instance_mac)
        with self.locks.lock("vif"):
            existing = self._current(self._find(self._present(), mac))
            if existing is not None and existing.kind != "veth":
                raise Conflict(
                    f"MAC {host_mac(mac)} is already used by {existing.name}, "
                    f"a {existing.kind} device"
                )
            if existing is not None and self._guest_ok(existing, netns, mac):
                if prepare is not None:
                    prepare(existing.name)
                self._attach(existing, bridge)
                return existing.name
            if existing is not None:
                # A half-made pair (crash between the steps below) or the MAC
                # reused for another namespace: start again from scratch.
                LOG.warning("replacing incomplete VIF %s of %s", existing.name, mac)
                self.ip.delete_link(existing.name)
                self._forget(existing.name)
            name = self._next_name(self._present())
            if self.ip.link(name) is not None:  # made behind our back: re-read
                name = self._next_name(self.list())
            self._create_pair(name, mac, netns)
            self._prepared(VifDevice(name, "veth", host_mac(mac), None, False), bridge, prepare)
            self._remember(VifDevice(name, "veth", host_mac(mac), bridge, True))
        return name

    def unplug(self, device: str | None = None, netns: str | None = None) -> None:
        """Delete the host device and the instance namespace (each if given and present).

        The link goes first: a namespace only disappears when its last user
        does, and until then it would keep the veth pair alive.
        """
        with self.locks.lock("vif"):
            if device:
                self._forget(device)
            if device and self.ip.delete_link(check_ifname(device)):
                LOG.info("deleted %s", device)
            if netns and self.ip.delete_netns(check_netns_name(netns)):
                LOG.info("deleted network namespace %s", netns)

    def attach(self, device: str, bridge: str) -> bool:
        """Put an existing device back on ``bridge`` and up; False if it is gone.

        What repairs a VIF after its bridge was deleted and made again: the
        device stays the same (a tap QEMU holds open keeps working, a veth
        keeps its guest end and the guest's address).
        """
        with self.locks.lock("vif"):
            link = self.ip.link(check_ifname(device))
            if link is None:
                self._forget(device)
                return False
            vif = self._vif(link)
            if vif.bridge != bridge or not vif.up:
                LOG.info("attaching %s (%s) to %s", device, vif.mac, bridge)
            self._attach(vif, bridge)
            self._remember(VifDevice(vif.name, vif.kind, vif.mac, bridge, True))
            return True

    def remove(self, device: str, mac: str | None) -> bool:
        """Delete ``device`` if it still has ``mac`` (not a name reused since); True if deleted.

        For stale devices seen in an earlier listing: the name may belong to
        a device plugged since, which must stay.
        """
        with self.locks.lock("vif"):
            link = self.ip.link(check_ifname(device))
            if link is None or link.mac != mac:
                return False
            self._forget(device)
            return self.ip.delete_link(device)

    def unplug_mac(self, instance_mac: str, netns: str | None = None) -> str | None:
        """Unplug by instance MAC; returns the device deleted, if any."""
        existing = self.find(instance_mac)
        name = existing.name if existing else None
        self.unplug(name, netns)
        return name

    # -- helpers -----------------------------------------------------------------

    def _create_pair(self, name: str, mac: str, netns: str) -> None:
        # The guest end is made under a temporary name in our namespace and
        # renamed inside the target: this host may have an eth0 of its own.
        temp = check_ifname(f"t{name}")
        self.ip.delete_link(temp)  # a leftover of an interrupted plug
        self.ip.ensure_netns(netns)
        stale = self.ip.link(GUEST_IFNAME, netns)
        if stale is not None:
            raise Conflict(f"network namespace {netns} already holds {GUEST_IFNAME} ({stale.mac})")
        LOG.info(
            "creating veth %s (%s) -> %s:%s (%s)", name, host_mac(mac), netns, GUEST_IFNAME, mac
        )
        self.ip.create_veth(name, temp, mac=host_mac(mac), peer_mac=mac)
        try:
            self.ip.move_to_netns(temp, netns)
            self.ip.configure_in_netns(netns, temp, new_name=GUEST_IFNAME, mac=mac)
        except Exception:
            self.ip.delete_link(name)  # takes the peer with it, wherever it is
            raise

    def _prepared(self, vif: VifDevice, bridge: str, prepare: Prepare | None) -> None:
        """``prepare`` then attach a device just made; it is deleted again if either fails."""
        try:
            if prepare is not None:
                prepare(vif.name)
            self._attach(vif, bridge)
        except BaseException:
            self.ip.delete_link(vif.name)  # a veth takes its peer with it
            raise

    def _guest_ok(self, vif: VifDevice, netns: str, mac: str) -> bool:
        if not self.ip.netns_exists(netns):
            return False
        guest = self.ip.link(GUEST_IFNAME, netns)
        return guest is not None and guest.mac == mac and guest.up

    def _attach(self, vif: VifDevice, bridge: str) -> None:
        if vif.bridge != bridge:
            self.ip.set_master(vif.name, bridge)
        if not vif.up:
            self.ip.set_up(vif.name)

    def _find(self, present: Sequence[VifDevice], instance_mac: str) -> VifDevice | None:
        wanted = host_mac(instance_mac)
        return next((vif for vif in present if vif.mac == wanted), None)

    def _next_name(self, present: Sequence[VifDevice]) -> str:
        used = {self._index(vif.name) for vif in present}
        number = 0
        while number in used:
            number += 1
        return check_ifname(f"{self.prefix}{number}")

    def _index(self, name: str) -> int | None:
        match = self._name_re.match(name)
        return int(match.group(1)) if match else None

    @staticmethod
    def _vif(link: LinkInfo) -> VifDevice:
        return VifDevice(link.name, link.kind, link.mac, link.master, link.up)
