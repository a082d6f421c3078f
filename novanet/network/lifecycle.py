"""The instance lifecycle of novanet-network: create, delete, and repair after a crash.

A create writes the instance's row (``building``), gives it a unique
hostname, allocates its address, reloads dnsmasq and has the compute host
plug and filter it, then marks it ``active``; any failure undoes every step.
A delete marks it ``deleting``, unplugs it, releases its address and
removes the row. Each holds the instance's lock from before its row exists
until it is done, so that :meth:`reconcile_instances` (see
:mod:`novanet.network.reconcile`) can tell a request in progress from one a
crash interrupted, and roll back or finish only the latter.

A mixin of :class:`novanet.network.manager.NetworkManager`: it works on the
manager's collaborators (database, dnsmasq driver, compute RPC), which the
daemon sets after construction.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid as uuidlib
from typing import TYPE_CHECKING, Any

from oslo_config import cfg

from novanet.db import instances, secgroups
from novanet.db.api import Database
from novanet.db.models import utcnow
from novanet.dhcp.labels import dns_label, first_free, hostname_candidates
from novanet.exception import Conflict, NotFound, ServiceUnavailable
from novanet.ipam import pool
from novanet.network import reconcile
from novanet.rpc.errors import first_line
from novanet.rpc.objects import InstanceNetwork

if TYPE_CHECKING:
    from novanet.dhcp.models import DhcpNetwork
    from novanet.ipam.networks import NetworkRow
    from novanet.network.manager import Compute, Dhcp

LOG = logging.getLogger(__name__)

# How long the compute host gets to unplug an instance being rolled back.
UNDO_TIMEOUT = 5
# Beyond the compute host's timeout, how long a create or delete of this
# daemon may still be running (dnsmasq reload, the undo's own teardown).
RECONCILE_MARGIN = 60


class InstanceLifecycle:
    conf: cfg.ConfigOpts
    db: Database
    dhcp: Dhcp
    compute: Compute | None
    _lock: threading.RLock
    _networks: dict[int, NetworkRow]

    def _init_lifecycle(self) -> None:
        # One lifecycle operation per instance at a time.
        self._instance_locks: dict[str, threading.Lock] = {}
        # Rows last written before this moment belong to no request of ours.
        self._started_at = utcnow()

    # provided by the manager (and novanet.network.host.NetworkHost, first in its bases)
    def check_host_up(self, host: str) -> None:
        raise NotImplementedError

    def _allocate(self, instance_uuid: str, mac: str | None) -> tuple[pool.Allocation, NetworkRow]:
        raise NotImplementedError

    def _dhcp_of(self, network_id: int) -> DhcpNetwork:
        raise NotImplementedError

    def describe(
        self, inst: instances.InstanceRow, port: instances.Port | None = None
    ) -> InstanceNetwork:
        raise NotImplementedError

    # provided by novanet.network.secgroups.SecurityGroups
    def security_group_ids(self, names: list[str]) -> list[int]:
        raise NotImplementedError

    def members_for(self, rules: tuple[str, ...]) -> dict[int, list[str]]:
        raise NotImplementedError

    def secgroups_created(self, uuid: str, group_ids: list[int], sent: tuple[str, ...]) -> None:
        raise NotImplementedError

    def secgroups_deleted(self, group_ids: set[int]) -> None:
        raise NotImplementedError

    # provided by novanet.network.floating.FloatingIps
    def disassociate_instance(self, instance_uuid: str) -> list[str]:
        raise NotImplementedError

    def floating_on_create(self, instance_uuid: str, requested: str | None) -> str | None:
        raise NotImplementedError

    def check_floating_request(self, requested: str | None) -> None:
        raise NotImplementedError

    def _instance_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._instance_locks.setdefault(key, threading.Lock())

    def _forget_lock(self, key: str) -> None:
        with self._lock:
            self._instance_locks.pop(key, None)

    def _compute(self) -> Compute:
        if self.compute is None:
            raise ServiceUnavailable("no RPC transport to reach compute hosts")
        return self.compute

    # -- create ----------------------------------------------------------------------

    def create_instance(
        self,
        *,
        display_name: str,
        host: str,
        vif_type: str,
        mac: str | None = None,
        user_data: bytes | None = None,
        public_key: str | None = None,
        security_groups: list[str] | None = None,
        floating_ip: str | None = None,
    ) -> InstanceNetwork:
        """Allocate, update dnsmasq, have the compute host plug and filter; undo on failure.

        ``floating_ip``: an address of a pool to associate once it is active,
        "" for any free one of default_floating_pool (None: only with
        auto_assign_floating_ip).
        """
        self.check_host_up(host)
        self.check_floating_request(floating_ip)  # refused before anything is written
        # security groups: unknown names are refused before anything is written
        group_ids = self.security_group_ids(security_groups or ["default"])
        uuid = str(uuidlib.uuid4())
        # Locked before the row exists: a reconcile never sees it unlocked.
        with self._instance_lock(uuid):
            inst = instances.create_instance(
                self.db,
                uuid=uuid,
                display_name=display_name,
                hostname="-",  # set below, once the id (the fallback name) is known
                host=host,
                vif_type=vif_type,
                user_data=user_data,
                public_key=public_key,
            )
            try:
                secgroups.join_groups(self.db, uuid, group_ids)
                self._set_hostname(inst.id, display_name)
                alloc, net = self._allocate(inst.uuid, mac)
            except Exception:
                instances.delete_instance_row(self.db, inst.id)
                self._forget_lock(uuid)
                raise
            try:
                self.dhcp.reload_allocations(self._dhcp_of(net.id))
                described = self.describe(
                    instances.get_instance(self.db, inst.id),
                    instances.Port(alloc.address, alloc.mac, net.id),
                )
            except Exception:  # nothing reached the compute host yet
                self._release(uuid)
                instances.delete_instance_row(self.db, inst.id)
                self._forget_lock(uuid)
                raise
            try:
                # members of its rules' source groups; none: the 1.0 call
                extra = {"members": self.members_for(described.rules)} if described.rules else {}
                reply = self._compute().setup_instance(
                    described, timeout=self.conf.instance_create_timeout, **extra
                )
            except Exception as exc:
                self._remove(described, UNDO_TIMEOUT)
                self._forget_lock(uuid)
                raise ServiceUnavailable(
                    f"compute host {host} did not plug the instance: {_one_line(exc)}; "
                    "the address went back to the pool"
                ) from None
            devname = reply.get("devname") if isinstance(reply, dict) else None
            instances.update_instance(self.db, inst.id, state="active", vif_devname=devname)
            self.secgroups_created(uuid, group_ids, described.rules)
            try:
                self.floating_on_create(uuid, floating_ip)
            except Exception:  # an explicit request that cannot be had: no instance either
                self._remove(dataclasses.replace(described, devname=devname), UNDO_TIMEOUT)
                self.secgroups_deleted(set(group_ids))
                self._forget_lock(uuid)
                raise
        LOG.info(
            "instance %s (%s) on %s: %s %s %s",
            described.name,
            display_name,
            host,
            alloc.address,
            alloc.mac,
            devname,
        )
        return dataclasses.replace(described, devname=devname)

    def _set_hostname(self, instance_id: int, display_name: str) -> str:
        """The display name as a DNS label, unless another instance has it (labels.py)."""
        name = self.conf.instance_name_template % instance_id
        candidates = hostname_candidates(dns_label(display_name, name), name)
        with self._lock:  # creates choose one at a time: no two pick the same
            taken = instances.hostnames_taken(self.db, candidates, except_id=instance_id)
            hostname = first_free(candidates, taken)
            if hostname is None:
                raise Conflict(f"no free hostname for {display_name!r} among {candidates}")
            instances.update_instance(self.db, instance_id, hostname=hostname)
        return hostname

    # -- delete ----------------------------------------------------------------------

    def delete_instance(self, instance_uuid: str) -> dict[str, Any]:
        """Unplug on the compute host, release the address, forget the instance."""
        try:
            with self._instance_lock(instance_uuid):
                # Read under the lock: a delete that waited for another one sees it gone.
                inst = instances.get_by_uuid(self.db, instance_uuid)
                instances.update_instance(self.db, inst.id, state="deleting")
                group_ids = secgroups.group_ids_of(self.db, [instance_uuid])
                notes = self._delete(inst, self.conf.instance_create_timeout)
                self.secgroups_deleted(group_ids)
        finally:
            # Only once the row is gone (or never was): a live instance keeps its lock.
            if not instances.exists(self.db, instance_uuid):
                self._forget_lock(instance_uuid)
        LOG.info("deleted instance %s (%s)", inst.uuid, inst.display_name)
        return {"uuid": inst.uuid, "notes": notes}

    def _delete(self, inst: instances.InstanceRow, timeout: float) -> list[str]:
        try:
            described = self.describe(inst)
        except NotFound:  # it never got an address
            instances.delete_instance_row(self.db, inst.id)
            return []
        return self._remove(described, timeout)

    def _remove(self, described: InstanceNetwork, timeout: float) -> list[str]:
        """Unplug (the agent resyncs if it does not answer), release, delete the row."""
        # floating IPs first: their rules name the fixed address about to be freed
        notes = self.disassociate_instance(described.uuid)
        try:
            # The agent may still be plugging it (a create that timed out):
            # the teardown queued behind it removes whatever it made.
            self._compute().teardown_instance(described, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - carry on, the agent resyncs
            notes.append(
                f"compute host {described.host} did not answer ({_one_line(exc)}): "
                "its device and chain go when its agent resyncs"
            )
            LOG.warning("could not tear down %s: %s", described.name, notes[-1])
        self._release(described.uuid)
        instances.delete_instance_row(self.db, described.id)
        return notes

    def _release(self, instance_uuid: str) -> None:
        """Deallocate; addresses no guest ever leased are free again at once.

        nova freed an address right after the release: with
        force_dhcp_release dnsmasq was just told to drop any lease for it
        (even one whose ``add`` has not reached us yet), so nothing can
        hold it. A leased address waits for dnsmasq's ``del`` (or
        fixed_ip_disassociate_timeout), and a late ``add``/``del`` of the old
        MAC is ignored once the address is free or someone else's (pool's
        MAC guard).
        """
        released = True
        for address, mac, network_id in pool.deallocate_for_instance(self.db, instance_uuid):
            net = self._dhcp_of(network_id)
            if not self.conf.force_dhcp_release:
                self.dhcp.reload_allocations(net)
                released = False
                continue
            try:
                # Hostsfile rewritten and dnsmasq reloaded BEFORE the release,
                # so the guest cannot renew in between (the driver does both).
                self.dhcp.release(net, address, mac)
            except Exception as exc:  # noqa: BLE001 - the lease expires; timeout frees it
                released = False
                LOG.warning("dhcp_release of %s (%s) failed: %s", address, mac, _one_line(exc))
        if released:
            freed = pool.free_unleased(self.db, instance_uuid)
            if freed:
                LOG.info("never leased, free again at once: %s", ", ".join(freed))

    # -- repair after a crash ----------------------------------------------------------

    def reconcile_instances(self) -> list[str]:
        """Roll back creates and finish deletes that a dead daemon left (reconcile.py)."""
        repairs = reconcile.plan(
            instances.unfinished(self.db),
            now=utcnow(),
            started_at=self._started_at,
            stale_after=self.conf.instance_create_timeout + RECONCILE_MARGIN,
        )
        done = []
        for repair in repairs:
            lock = self._instance_lock(repair.instance.uuid)
            if not lock.acquire(blocking=False):
                continue  # a request of ours is working on it
            try:
                current = instances.get_by_uuid(self.db, repair.instance.uuid)
                if current.updated_at != repair.instance.updated_at:
                    continue  # changed since it was read: the next pass decides
                notes = self._delete(current, UNDO_TIMEOUT)
            except NotFound:  # deleted meanwhile
                self._forget_lock(repair.instance.uuid)
                continue
            finally:
                lock.release()
            self._forget_lock(repair.instance.uuid)
            LOG.warning("reconciled: %s%s", repair, "".join(f"; {n}" for n in notes))
            done.append(str(repair))
        return done


def _one_line(exc: BaseException) -> str:
    return first_line(str(exc)) or type(exc).__name__
