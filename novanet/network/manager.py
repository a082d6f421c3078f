"""The controller's FlatDHCP manager: networks on this host, and the instance lifecycle.

It owns the database. For every network it keeps the bridge with its gateway
address, a dnsmasq, and the NAT/filter rules of the seed; for every instance
it allocates the address, updates dnsmasq and asks the compute host to plug
and filter it, undoing everything when any step fails.

Collaborators are injected (bridges, iptables, dhcp, compute RPC), so the
logic is tested with fakes; the daemon (service.py) wires the real ones.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from oslo_config import cfg

from novanet.db import instances, services
from novanet.db.api import Database
from novanet.dhcp.labels import first_free, hostname_candidates
from novanet.dhcp.models import DhcpHost, DhcpNetwork
from novanet.exception import NotFound, ServiceUnavailable
from novanet.ipam import networks as nets
from novanet.ipam import pool, queries
from novanet.ipam.networks import NetworkRow
from novanet.network import rules as controller_rules
from novanet.network.lifecycle import InstanceLifecycle
from novanet.rpc.objects import InstanceNetwork

LOG = logging.getLogger(__name__)

BINARY = "novanet-network"
TOPIC = "network"


class Bridges(Protocol):
    def setup_controller(
        self, bridge: str, interface: str | None, gateway: str, broadcast: str | None = None
    ) -> list[Any]: ...


class Dhcp(Protocol):
    def enable(self, network: DhcpNetwork) -> None: ...

    def disable(self, network: DhcpNetwork) -> None: ...

    def reload_allocations(self, network: DhcpNetwork) -> None: ...

    def release(self, network: DhcpNetwork, address: str, mac: str) -> None: ...

    def check_alive(self) -> list[int]: ...


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


class NetworkManager(InstanceLifecycle):
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
        self._init_lifecycle()

    # -- the host ------------------------------------------------------------------

    def init_host(self) -> None:
        """Converge this host from any state: bridges, gateway, rules, dnsmasq."""
        with self._lock:
            current = nets.list_networks(self.db)
            for net in current:
                self._setup_bridge(net)
            self._declare_rules(current)
            LOG.info("iptables: %s", "; ".join(self.iptables.full_sync()) or "already in place")
            for net in current:
                self.dhcp.enable(dhcp_network(net))
            self._networks = {net.id: net for net in current}
            LOG.info("serving %d network(s): %s", len(current), ", ".join(n.cidr for n in current))

    def _setup_bridge(self, net: NetworkRow) -> None:
        prefix = net.cidr.split("/")[1]
        interface = net.bridge_interface or self.conf.flat_interface
        steps = self.bridges.setup_controller(
            net.bridge, interface, f"{net.dhcp_server}/{prefix}", net.broadcast
        )
        for step in steps:
            LOG.info("%s: %s", net.bridge, step)

    def _declare_rules(self, current: list[NetworkRow]) -> None:
        wanted = controller_rules.controller_rules(
            current,
            metadata_host=self.conf.metadata_host,
            metadata_port=self.conf.metadata_port,
            routing_source_ip=self.conf.routing_source_ip,
            dmz_cidrs=self.conf.dmz_cidr,
        )
        controller_rules.declare(self.iptables.ipv4, wanted)

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

    def hosts(self, network_id: int) -> list[DhcpHost]:
        """dnsmasq's hosts for a network (the driver's hosts provider).

        Hostnames are unique per network (creates choose them so); rows
        from before that rule may share one, and the later instance is then
        served under its instance name, so that a name resolves to one guest.
        """
        hosts = []
        seen: set[str] = set()
        for h in queries.hosts_for_network(self.db, network_id):
            hostname = h.hostname
            if hostname in seen and h.instance_id is not None:
                name = self.conf.instance_name_template % h.instance_id
                hostname = first_free(hostname_candidates(name, name), seen) or hostname
            seen.add(hostname)
            hosts.append(DhcpHost(h.mac, hostname, h.address))
        return hosts

    def _dhcp_network(self, network_id: int) -> DhcpNetwork:
        return dhcp_network(self._networks.get(network_id) or nets.get_network(self.db, network_id))

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

    def check_dnsmasq(self) -> None:
        for network_id in self.dhcp.check_alive():
            LOG.warning("dnsmasq of network %d was not running: started it again", network_id)

    def check_iptables(self) -> None:
        repaired = self.iptables.check_and_repair()
        if repaired:
            LOG.warning(
                "iptables rules were changed by someone else; repaired: %s", "; ".join(repaired)
            )

    # -- instances ------------------------------------------------------------------

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
                if svc.is_up(self.conf.service_down_time):
                    return
                since = f"{svc.updated_at:%Y-%m-%d %H:%M:%S}"
                raise ServiceUnavailable(
                    f"compute host {host} is down (no heartbeat since {since} UTC)"
                )
        raise NotFound(
            f"no compute host {host!r} has reported in (is novanet-compute running there?)"
        )

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
