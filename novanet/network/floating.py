"""Floating IPs on the controller: associate, disassociate, adopt at start, repair.

A mixin of :class:`novanet.network.manager.NetworkManager`. The state is the
database (:mod:`novanet.db.floating`: which address maps onto which fixed
IP, on which host) and a copy of this host's mappings in association order
(``_floating``, under the manager's lock), from which everything in the
kernel follows:

- ``ADDRESS/32`` on the pool's interface (nova's bind_floating_ip), checked
  every ``iptables_check_interval`` like the bridges are (:meth:`check_floating`);
- nova's nat rules (:mod:`novanet.network.floating_rules`), declared with
  the controller's other rules, so the iptables manager's drift repair
  covers them;
- on association, gratuitous ARP (send_arp_for_ha); on disassociation, the
  conntrack entries NATed by the mapping are deleted (novanet.linux.conntrack).

An association writes the database first (a compare-and-swap: two callers
cannot both take an address), then the kernel; if the kernel refuses, the
row is put back and the rules re-declared, so a failed call leaves nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

from oslo_config import cfg

from novanet.db import floating as floating_db
from novanet.db.api import Database
from novanet.db.floating import Mapping
from novanet.exception import Conflict, NotFound, NovanetError
from novanet.linux.arp import ArpApi, GratuitousArp
from novanet.linux.conntrack import Conntrack, ConntrackApi
from novanet.linux.ip_lib import IpLib
from novanet.linux.netlink import AddressInfo, AlreadyExists, IpLibApi
from novanet.network.floating_rules import mapping_rules

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class FloatingKernel:
    """The kernel objects floating IPs need (fakes in unit tests)."""

    ip: IpLibApi
    conntrack: ConntrackApi
    arp: ArpApi

    @classmethod
    def real(cls) -> FloatingKernel:
        return cls(IpLib(), Conntrack(), GratuitousArp())


def host_address(address: str) -> AddressInfo:
    return AddressInfo.parse(f"{address}/32")


class FloatingIps:
    conf: cfg.ConfigOpts
    db: Database
    host: str
    iptables: Any
    floating_kernel: FloatingKernel
    _lock: threading.RLock
    _floating: dict[str, Mapping]

    # provided by novanet.network.host.NetworkHost
    def _declare_current(self) -> None:
        raise NotImplementedError

    def floating_mappings(self) -> list[Mapping]:
        """This host's associations in association order (what the rules list)."""
        with self._lock:
            return list(self._floating.values())

    # -- start and repair --------------------------------------------------------

    def adopt_floating(self) -> None:
        """Load this host's associations; put their addresses in place (init_host).

        The rules follow with the controller's other rules; addresses and rules
        that are already there are kept (no duplicates after a restart).
        """
        with self._lock:
            self._floating = {m.address: m for m in floating_db.mappings(self.db, self.host)}
        done = self.check_floating(log=False)
        if self._floating:
            LOG.info(
                "floating IPs: %d association(s)%s",
                len(self._floating),
                f"; {'; '.join(done)}" if done else ", addresses in place",
            )

    def check_floating(self, log: bool = True) -> list[str]:
        """Add missing floating addresses, remove pool addresses no longer associated here."""
        # Under the lock throughout: an association between reading what is
        # wanted and reading the interface would look like a stale address.
        with self._lock:
            repaired = self._repair_addresses()
        if repaired and log:
            LOG.warning("floating addresses changed by hand; repaired: %s", "; ".join(repaired))
        return repaired

    def _repair_addresses(self, dry_run: bool = False) -> list[str]:
        wanted = {m.address: m.interface for m in self._floating.values()}
        pools = floating_db.pool_addresses(self.db)
        interfaces = set(wanted.values()) | {
            iface for addr, iface in pools.items() if addr not in wanted
        }
        repaired: list[str] = []
        for interface in sorted(interfaces):
            try:
                present = {
                    str(a.ip)
                    for a in self.floating_kernel.ip.addresses(interface)
                    if a.interface.network.prefixlen == 32
                }
            except NovanetError as exc:
                if interface in wanted.values():
                    LOG.error("floating IPs on %s: %s", interface, exc)
                continue  # a pool interface this host does not have: not ours to fix
            for address in sorted(a for a, i in wanted.items() if i == interface):
                if address not in present:
                    if dry_run:
                        repaired.append(f"{address}/32 missing from {interface}")
                        continue
                    self._add_address(interface, address)
                    repaired.append(f"{address}/32 added to {interface}")
            for address in sorted(present - set(wanted)):
                if pools.get(address) == interface:
                    if dry_run:
                        repaired.append(f"{address}/32 on {interface} is not associated")
                        continue
                    self.floating_kernel.ip.delete_address(interface, host_address(address))
                    repaired.append(f"{address}/32 removed from {interface} (not associated)")
        return repaired

    def floating_drift(self) -> list[str]:
        """What check_floating would repair now, without changing anything (diagnose)."""
        with self._lock:
            return self._repair_addresses(dry_run=True)

    def _add_address(self, interface: str, address: str) -> None:
        try:
            self.floating_kernel.ip.add_address(interface, host_address(address))
        except AlreadyExists:
            pass

    # -- associate / disassociate -----------------------------------------------------

    def associate_floating_ip(
        self, address: str, instance_uuid: str, *, force: bool = False, auto_assigned: bool = False
    ) -> dict[str, Any]:
        """Map ``address`` onto the instance; returns once addresses and rules are in place."""
        with self._lock:
            new, previous = floating_db.associate(
                self.db, address, instance_uuid, self.host, force=force, auto_assigned=auto_assigned
            )
            if self._floating.get(address) == new and previous is None:
                return self._described(new, changed=False)
            before = dict(self._floating)
            try:
                if previous is not None:
                    self._floating.pop(address, None)
                    self._apply_rules(previous, add=False)
                    self.floating_kernel.conntrack.delete_mapping(address)
                self._floating[address] = new
                self._add_address(new.interface, address)
                self._apply_rules(new, add=True)
            except Exception:
                self._floating = before
                floating_db.restore(self.db, new, previous, self.host)
                self._declare_current()  # the whole model again: whatever got half-way
                if address not in {m.address for m in before.values()}:
                    self.floating_kernel.ip.delete_address(new.interface, host_address(address))
                raise
        if self.conf.send_arp_for_ha:
            try:
                self.floating_kernel.arp.announce(
                    new.interface, address, self.conf.send_arp_for_ha_count
                )
            except OSError as exc:  # the mapping works; neighbours learn it when they ask
                LOG.warning("gratuitous ARP for %s on %s: %s", address, new.interface, exc)
        LOG.info("floating IP %s -> %s (instance %s)", address, new.fixed_address, instance_uuid)
        return self._described(new, changed=True)

    def disassociate_floating_ip(self, address: str) -> dict[str, Any]:
        """Unmap ``address``: rules, address and its conntrack entries go."""
        with self._lock:
            old = floating_db.disassociate(self.db, address)
            if old is None:
                raise Conflict(f"floating IP {address} is not associated")
            self._unmap(old)
        LOG.info("floating IP %s no longer -> %s", address, old.fixed_address)
        return self._described(old, changed=True)

    def _unmap(self, old: Mapping) -> None:
        """The kernel state of a mapping the database no longer has (under the lock)."""
        self._floating.pop(old.address, None)
        self._apply_rules(old, add=False)
        self.floating_kernel.ip.delete_address(old.interface, host_address(old.address))
        # After the rules: a packet arriving meanwhile cannot make a new entry with the mapping.
        gone = self.floating_kernel.conntrack.delete_mapping(old.address)
        if gone:
            LOG.info("floating IP %s: %d conntrack entr(ies) deleted", old.address, gone)

    def _apply_rules(self, mapping: Mapping, add: bool) -> None:
        """One mapping's rules in or out of the model, applied (under the lock).

        The same rules, in the same order, as :func:`floating_rules` gives the
        full declaration (init_host, refresh_networks): a new mapping's go
        last in their chains, as the newest association. Only the change is
        touched here: redeclaring every rule would cost O(associations) in
        Python per call (1,000 associations: 5,000 rules compared).
        """
        nat = self.iptables.ipv4["nat"]
        for chain, rules in mapping_rules(mapping).items():
            for rule in rules:
                if add:
                    nat.add_rule(chain, rule)
                else:
                    nat.remove_rule(chain, rule)
        self.iptables.apply()

    def disassociate_instance(self, instance_uuid: str) -> list[str]:
        """Unmap every floating IP of an instance going away; returns notes for the caller."""
        addresses = floating_db.of_instances(self.db, [instance_uuid])[instance_uuid]
        notes = []
        for address in addresses:
            try:
                self.disassociate_floating_ip(address)
            except (Conflict, NotFound):
                continue  # disassociated meanwhile
            except Exception as exc:  # noqa: BLE001 - the instance still goes; check repairs
                notes.append(f"floating IP {address}: {exc}")
                LOG.warning("could not disassociate %s: %s", address, exc)
        return notes

    def floating_on_create(self, instance_uuid: str, requested: str | None) -> str | None:
        """The floating IP a new instance gets: ``requested`` ("" = any), or auto-assigned.

        An explicit address that cannot be had raises (the create is undone);
        an automatic one from an exhausted pool is logged, as nova did.
        """
        if requested is None and not self.conf.auto_assign_floating_ip:
            return None
        pool = self.conf.default_floating_pool
        explicit = bool(requested)
        for _ in range(5):  # lost a race for the free address: take the next one
            address = requested or floating_db.free_address(self.db, pool)
            if address is None:
                if requested == "":
                    raise Conflict(f"no free floating IP in pool {pool}")
                LOG.warning("auto_assign_floating_ip: pool %s has no free address", pool)
                return None
            try:
                self.associate_floating_ip(address, instance_uuid, auto_assigned=True)
                return address
            except Conflict:
                if explicit:
                    raise
        raise Conflict(f"could not take a free floating IP of pool {pool}: try again")

    def floating_ips_of(self, instance_uuid: str) -> list[str]:
        return floating_db.of_instances(self.db, [instance_uuid])[instance_uuid]

    def check_floating_request(self, requested: str | None) -> None:
        """Refuse an explicit ``--floating-ip ADDRESS`` before anything is created."""
        if not requested:
            return
        row = floating_db.get_floating(self.db, requested)
        if row.fixed_address is not None:
            raise Conflict(
                f"floating IP {requested} is associated with instance {row.instance_uuid}"
            )

    def _described(self, m: Mapping, changed: bool) -> dict[str, Any]:
        return {
            "address": m.address,
            "fixed_address": m.fixed_address,
            "instance_uuid": m.instance_uuid,
            "interface": m.interface,
            "host": self.host,
            "changed": changed,
        }
