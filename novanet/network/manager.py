"""The controller's FlatDHCP manager: networks on this host, and the instance lifecycle.

It owns the database. For every network it keeps the bridge with its gateway
address, a dnsmasq, and the NAT/filter rules of the seed (host.py); for every
instance it allocates the address, updates dnsmasq and asks the compute host
to plug and filter it, undoing everything when any step fails.

Collaborators are injected (bridges, iptables, dhcp, compute RPC), so the
logic is tested with fakes; the daemon (service.py) wires the real ones.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from oslo_config import cfg

from novanet.db import instances, secgroup_view, services
from novanet.db.api import Database
from novanet.exception import Conflict, NotFound, ServiceUnavailable
from novanet.ipam import networks as nets
from novanet.ipam import pool
from novanet.ipam.networks import NetworkRow
from novanet.linux.ebtables import Ebtables
from novanet.network.floating import FloatingIps, FloatingKernel
from novanet.network.host import BINARY, CONTROLLER_TABLES, TOPIC, Bridges, Dhcp, NetworkHost
from novanet.network.lifecycle import InstanceLifecycle
from novanet.network.secgroups import SecurityGroups
from novanet.rpc.objects import InstanceNetwork

LOG = logging.getLogger(__name__)

# re-exported: the daemon and the tests take them from here
__all__ = ["BINARY", "CONTROLLER_TABLES", "TOPIC", "Bridges", "Dhcp", "NetworkManager"]


class Compute(Protocol):
    def setup_instance(
        self,
        instance: InstanceNetwork,
        timeout: float | None = None,
        members: Mapping[int, Iterable[str]] | None = None,
    ) -> dict[str, Any]: ...

    def teardown_instance(
        self, instance: InstanceNetwork, timeout: float | None = None
    ) -> None: ...


class NetworkManager(NetworkHost, SecurityGroups, FloatingIps, InstanceLifecycle):
    """The instance lifecycle (:class:`InstanceLifecycle`) on the host's networks."""

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        db: Database,
        *,
        bridges: Bridges,
        iptables: Any,
        dhcp: Dhcp,
        compute: Compute | None,
        ebtables: Ebtables | None = None,
        floating_kernel: FloatingKernel | None = None,
    ) -> None:
        self.conf = conf
        self.db = db
        self.bridges = bridges
        self.iptables = iptables
        self.dhcp = dhcp
        self.compute = compute
        self.ebtables = ebtables or Ebtables()
        self.host = conf.host
        self._networks: dict[int, NetworkRow] = {}
        self._lock = threading.RLock()
        self.floating_kernel = floating_kernel or FloatingKernel.real()
        self._floating = {}
        self._init_lifecycle()

    # -- instances ------------------------------------------------------------------

    def _allocate(self, instance_uuid: str, mac: str | None) -> tuple[pool.Allocation, NetworkRow]:
        with self._lock:
            known = list(self._networks.values())
        return nets.allocate_in_order(
            self.db,
            known or self._served(),
            instance_uuid=instance_uuid,
            mac=mac,
            mac_attempts=self.conf.create_unique_mac_address_attempts,
        )

    def describe(
        self,
        inst: instances.InstanceRow,
        port: instances.Port | None = None,
        rules: tuple[str, ...] | None = None,
    ) -> InstanceNetwork:
        if rules is None:  # its security-group rules (compute API 1.1)
            rules = secgroup_view.rules_for(self.db, [inst.uuid])[inst.uuid]
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
            rules=rules,
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

    def allocate_for_instance(self, instance_uuid: str, mac: str | None = None) -> InstanceNetwork:
        inst = instances.get_by_uuid(self.db, instance_uuid)
        alloc, net = self._allocate(inst.uuid, mac)
        self.dhcp.reload_allocations(self._dhcp_of(net.id))
        return self.describe(inst, instances.Port(alloc.address, alloc.mac, net.id))

    def deallocate_for_instance(self, instance_uuid: str) -> None:
        instances.get_by_uuid(self.db, instance_uuid)
        self._release(instance_uuid)

    def get_instance_nw_info(self, instance_uuid: str) -> InstanceNetwork:
        return self.describe(instances.get_by_uuid(self.db, instance_uuid))

    def get_host_instances(self, host: str) -> list[InstanceNetwork]:
        """What must run on a compute host: its instances that hold an address."""
        result = []
        rules = secgroup_view.rules_on_host(self.db, host)  # one query for all of them
        for inst in instances.list_instances(self.db, host=host):
            if inst.state not in ("building", "active"):
                continue
            try:
                result.append(self.describe(inst, rules=rules.get(inst.uuid, ())))
            except NotFound:
                continue
        return result

    def lease_fixed_ip(self, address: str, mac: str) -> bool:
        return pool.lease_fixed_ip(self.db, address, mac)

    def release_fixed_ip(self, address: str, mac: str) -> bool:
        return pool.release_fixed_ip(self.db, address, mac)

    def report_state(self, host: str, binary: str, topic: str) -> None:
        services.heartbeat(self.db, host, binary, topic)
