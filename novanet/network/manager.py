"""The controller's FlatDHCP manager: networks on this host, and the instance lifecycle.

It owns the database. For every network it keeps the bridge with its gateway
address, a dnsmasq, and the NAT/filter rules of the seed; for every instance
it allocates the address, updates dnsmasq and asks the compute host to plug
and filter it, undoing everything when any step fails.

Collaborators are injected (bridges, iptables, dhcp, compute RPC), so the
logic is tested with fakes; the daemon (service.py) wires the real ones.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Protocol

from oslo_config import cfg

from novanet.db import instances, services
from novanet.db.api import Database
from novanet.dhcp.labels import dns_label
from novanet.dhcp.models import DhcpHost, DhcpNetwork
from novanet.exception import Conflict, NotFound, NovanetError, ServiceUnavailable
from novanet.ipam import networks as nets
from novanet.ipam import pool, queries
from novanet.ipam.networks import NetworkRow
from novanet.linux.iptables.declare import declare
from novanet.network import rules as controller_rules
from novanet.network.bridges import Bridges, BridgeSetup, repair_bridges, setup_bridge
from novanet.rpc.objects import InstanceNetwork

LOG = logging.getLogger(__name__)

BINARY = "novanet-network"
TOPIC = "network"


class Dhcp(Protocol):
    def enable(self, network: DhcpNetwork) -> None: ...

    def disable(self, network: DhcpNetwork) -> None: ...

    def reload_allocations(self, network: DhcpNetwork) -> None: ...

    def release(self, network: DhcpNetwork, address: str, mac: str) -> None: ...

    def check_alive(self) -> list[int]: ...

    def restart(self, network: DhcpNetwork) -> None: ...


class Compute(Protocol):
    def setup_instance(
        self, instance: InstanceNetwork, timeout: float | None = None
    ) -> dict[str, Any]: ...

    def teardown_instance(
        self, instance: InstanceNetwork, timeout: float | None = None
    ) -> None: ...


def dhcp_network(net: NetworkRow) -> DhcpNetwork:
    return DhcpNetwork(
        id=net.id,
        bridge=net.bridge,
        cidr=net.cidr,
        gateway=net.gateway,
        dhcp_server=net.dhcp_server,
        dhcp_start=net.dhcp_start,
        broadcast=net.broadcast,
        netmask=net.netmask,
        dns1=net.dns1,
        dns2=net.dns2,
    )


class NetworkManager:
    def __init__(
        self,
        conf: cfg.ConfigOpts,
        db: Database,
        *,
        bridges: Bridges,
        iptables: Any,
        dhcp: Dhcp,
        compute: Compute | None,
    ) -> None:
        self.conf = conf
        self.db = db
        self.bridges = bridges
        self.iptables = iptables
        self.dhcp = dhcp
        self.compute = compute
        self.host = conf.host
        self._networks: dict[int, NetworkRow] = {}
        self._lock = threading.RLock()
        # One lifecycle operation per instance at a time.
        self._instance_locks: dict[str, threading.Lock] = {}

    # -- the host ------------------------------------------------------------------

    def init_host(self) -> None:
        """Converge this host from any state: bridges, gateway, rules, dnsmasq."""
        with self._lock:
            current = nets.list_networks(self.db)
            readdressed = [self._setup_bridge(net).gateway_added for net in current]
            self._declare_rules(current)
            # The iptables manager logs each change it makes: only say when there was none.
            if not self.iptables.full_sync():
                LOG.info("iptables: already in place")
            for net, gateway_added in zip(current, readdressed, strict=True):
                # A dnsmasq that outlived its address (bridge deleted while we
                # were down) serves nothing: restarted, not adopted.
                (self.dhcp.restart if gateway_added else self.dhcp.enable)(dhcp_network(net))
            self._networks = {net.id: net for net in current}
            LOG.info("serving %d network(s): %s", len(current), ", ".join(n.cidr for n in current))

    def _setup_bridge(self, net: NetworkRow) -> BridgeSetup:
        # The bridge manager logs every step it applies (naming the bridge).
        return setup_bridge(self.bridges, net, self.conf.flat_interface)

    def _declare_rules(self, current: list[NetworkRow]) -> None:
        wanted = controller_rules.controller_rules(
            current,
            metadata_host=self.conf.metadata_host,
            metadata_port=self.conf.metadata_port,
            routing_source_ip=self.conf.routing_source_ip,
            dmz_cidrs=self.conf.dmz_cidr,
        )
        declare(self.iptables.ipv4, wanted)

    def refresh_networks(self) -> list[str]:
        """Pick up networks created, modified or deleted with novanet-manage."""
        with self._lock:
            current = {net.id: net for net in nets.list_networks(self.db)}
            if current == self._networks:
                return []
            changes = []
            for net_id, old in self._networks.items():
                if net_id not in current:
                    self.dhcp.disable(dhcp_network(old))
                    changes.append(f"network {old.cidr} removed")
            for net in current.values():
                if self._networks.get(net.id) != net:
                    self._setup_bridge(net)
                    changes.append(f"network {net.cidr} set up")
            with self.iptables.defer_apply():
                self._declare_rules(list(current.values()))
            for net in current.values():
                if self._networks.get(net.id) != net:
                    self.dhcp.enable(dhcp_network(net))
            self._networks = current
            LOG.info("networks changed: %s", "; ".join(changes))
            return changes

    def serving(self) -> list[NetworkRow]:
        """The networks this host serves now (what init_host/refresh_networks set up)."""
        with self._lock:
            return sorted(self._networks.values(), key=lambda n: n.id)

    def hosts(self, network_id: int) -> list[DhcpHost]:
        """dnsmasq's hosts for a network (the driver's hosts provider)."""
        return [
            DhcpHost(h.mac, h.hostname, h.address)
            for h in queries.hosts_for_network(self.db, network_id)
        ]

    # -- periodic tasks -------------------------------------------------------------

    def heartbeat(self) -> None:
        services.heartbeat(self.db, self.host, BINARY, TOPIC)

    def disassociate_stale(self) -> None:
        freed = pool.disassociate_stale(self.db, self.conf.fixed_ip_disassociate_timeout)
        if freed:
            LOG.info(
                "returned to the pool after %d s without a lease: %s",
                self.conf.fixed_ip_disassociate_timeout,
                ", ".join(freed),
            )

    def check_dnsmasq(self) -> list[int]:
        """Restart dead dnsmasqs (the driver logs each); the ids of their networks."""
        return self.dhcp.check_alive()

    def check_iptables(self) -> list[str]:
        """Repair our chains if someone changed them (the iptables manager logs each repair)."""
        return list(self.iptables.check_and_repair())

    def check_bridges(self) -> list[str]:
        """Repair bridges, ports and gateways changed by hand; restart dnsmasq where needed."""
        with self._lock:
            current = [(net, dhcp_network(net)) for net in self._networks.values()]
            return repair_bridges(self.bridges, self.dhcp, current, self.conf.flat_interface)

    # -- instances ------------------------------------------------------------------

    def _instance_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._instance_locks.setdefault(key, threading.Lock())

    def _network_for_allocation(self) -> NetworkRow:
        with self._lock:
            known = sorted(self._networks.values(), key=lambda n: n.id)
        if not known:
            known = nets.list_networks(self.db)
        if not known:
            raise NotFound("there is no network: create one with 'novanet-manage network create'")
        return known[0]

    def describe(
        self, inst: instances.InstanceRow, port: instances.Port | None = None
    ) -> InstanceNetwork:
        if port is None:
            ports = instances.ports_of(self.db, inst.uuid)
            if not ports:
                raise NotFound(f"instance {inst.uuid} has no fixed IP")
            port = ports[0]
        net = self._networks.get(port.network_id) or nets.get_network(self.db, port.network_id)
        return InstanceNetwork(
            id=inst.id,
            uuid=inst.uuid,
            name=self.conf.instance_name_template % inst.id,
            display_name=inst.display_name,
            host=inst.host,
            vif_type=inst.vif_type,
            mac=port.mac,
            address=port.address,
            cidr=net.cidr,
            dhcp_server=net.dhcp_server,
            bridge=net.bridge,
            devname=inst.vif_devname,
        )

    def check_host_up(self, host: str) -> None:
        for svc in services.list_services(self.db):
            if svc.host == host and svc.binary == "novanet-compute":
                if svc.disabled:
                    # nova-manage's semantics: running instances stay, new ones go elsewhere.
                    raise Conflict(
                        f"compute host {host} is disabled: it takes no new instances "
                        f"('novanet-manage service enable {host} novanet-compute' to undo)"
                    )
                if svc.is_up(self.conf.service_down_time):
                    return
                since = f"{svc.updated_at:%Y-%m-%d %H:%M:%S}"
                raise ServiceUnavailable(
                    f"compute host {host} is down (no heartbeat since {since} UTC)"
                )
        raise NotFound(
            f"no compute host {host!r} has reported in (is novanet-compute running there?)"
        )

    def create_instance(
        self,
        *,
        display_name: str,
        host: str,
        vif_type: str,
        mac: str | None = None,
        user_data: str | None = None,
        public_key: str | None = None,
    ) -> InstanceNetwork:
        """Allocate, update dnsmasq, have the compute host plug and filter; undo on failure."""
        self.check_host_up(host)
        net = self._network_for_allocation()
        inst = instances.create_instance(
            self.db,
            display_name=display_name,
            hostname="-",  # set below, once the id (the fallback name) is known
            host=host,
            vif_type=vif_type,
            user_data=user_data,
            public_key=public_key,
        )
        name = self.conf.instance_name_template % inst.id
        instances.update_instance(self.db, inst.id, hostname=dns_label(display_name, name))
        with self._instance_lock(inst.uuid):
            try:
                alloc = pool.allocate_for_instance(
                    self.db, network_id=net.id, instance_uuid=inst.uuid, mac=mac
                )
            except NovanetError:
                instances.delete_instance_row(self.db, inst.id)
                raise
            self.dhcp.reload_allocations(dhcp_network(net))
            described = self.describe(
                instances.get_instance(self.db, inst.id),
                instances.Port(alloc.address, alloc.mac, net.id),
            )
            try:
                reply = self._compute().setup_instance(
                    described, timeout=self.conf.instance_create_timeout
                )
            except Exception as exc:
                self._undo_create(described, net)
                raise ServiceUnavailable(
                    f"compute host {host} did not plug the instance: {_one_line(exc)}; "
                    "the address went back to the pool"
                ) from None
            devname = reply.get("devname") if isinstance(reply, dict) else None
            instances.update_instance(self.db, inst.id, state="active", vif_devname=devname)
            LOG.info(
                "instance %s (%s) on %s: %s %s %s",
                name,
                display_name,
                host,
                alloc.address,
                alloc.mac,
                devname,
            )
            return dataclasses.replace(described, devname=devname)

    def _compute(self) -> Compute:
        if self.compute is None:
            raise ServiceUnavailable("no RPC transport to reach compute hosts")
        return self.compute

    def _undo_create(self, described: InstanceNetwork, net: NetworkRow) -> None:
        try:
            # The agent may still finish the plug after our timeout: a teardown
            # queued behind it removes whatever it made (it is idempotent).
            self._compute().teardown_instance(described, timeout=5)
        except Exception as exc:  # noqa: BLE001 - the agent's resync cleans up
            LOG.warning(
                "could not tear down %s on %s (%s); its agent removes it when it resyncs",
                described.name,
                described.host,
                _one_line(exc),
            )
        pool.deallocate_for_instance(self.db, described.uuid)
        pool.free_unleased(self.db, described.uuid)
        instances.delete_instance_row(self.db, described.id)
        self.dhcp.reload_allocations(dhcp_network(net))

    def delete_instance(self, instance_uuid: str) -> dict[str, Any]:
        """Unplug on the compute host, release the address, forget the instance."""
        inst = instances.get_by_uuid(self.db, instance_uuid)
        with self._instance_lock(inst.uuid):
            instances.update_instance(self.db, inst.id, state="deleting")
            notes = []
            try:
                described: InstanceNetwork | None = self.describe(inst)
            except NotFound:
                described = None
            if described is not None:
                try:
                    self._compute().teardown_instance(
                        described, timeout=self.conf.instance_create_timeout
                    )
                except Exception as exc:  # noqa: BLE001 - carry on, the agent resyncs
                    notes.append(
                        f"compute host {inst.host} did not answer ({_one_line(exc)}): "
                        "its device and chain go when its agent resyncs"
                    )
            self._release(inst.uuid)
            instances.delete_instance_row(self.db, inst.id)
        with self._lock:
            self._instance_locks.pop(inst.uuid, None)
        LOG.info("deleted instance %s (%s)", inst.uuid, inst.display_name)
        return {"uuid": inst.uuid, "notes": notes}

    def _release(self, instance_uuid: str) -> None:
        for address, mac, network_id in pool.deallocate_for_instance(self.db, instance_uuid):
            net = dhcp_network(
                self._networks.get(network_id) or nets.get_network(self.db, network_id)
            )
            if self.conf.force_dhcp_release:
                # Hostsfile rewritten and dnsmasq reloaded BEFORE the release,
                # so the guest cannot renew in between (the driver does both).
                self.dhcp.release(net, address, mac)
            else:
                self.dhcp.reload_allocations(net)

    def allocate_for_instance(self, instance_uuid: str, mac: str | None = None) -> InstanceNetwork:
        inst = instances.get_by_uuid(self.db, instance_uuid)
        net = self._network_for_allocation()
        alloc = pool.allocate_for_instance(
            self.db, network_id=net.id, instance_uuid=inst.uuid, mac=mac
        )
        self.dhcp.reload_allocations(dhcp_network(net))
        return self.describe(inst, instances.Port(alloc.address, alloc.mac, net.id))

    def deallocate_for_instance(self, instance_uuid: str) -> None:
        instances.get_by_uuid(self.db, instance_uuid)
        self._release(instance_uuid)

    def get_instance_nw_info(self, instance_uuid: str) -> InstanceNetwork:
        return self.describe(instances.get_by_uuid(self.db, instance_uuid))

    def get_host_instances(self, host: str) -> list[InstanceNetwork]:
        """What must run on a compute host: its instances that hold an address."""
        result = []
        for inst in instances.list_instances(self.db, host=host):
            if inst.state not in ("building", "active"):
                continue
            try:
                result.append(self.describe(inst))
            except NotFound:
                continue
        return result

    def lease_fixed_ip(self, address: str, mac: str) -> bool:
        return pool.lease_fixed_ip(self.db, address, mac)

    def release_fixed_ip(self, address: str, mac: str) -> bool:
        return pool.release_fixed_ip(self.db, address, mac)

    def report_state(self, host: str, binary: str, topic: str) -> None:
        services.heartbeat(self.db, host, binary, topic)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
