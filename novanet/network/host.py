"""The networks of this network host: bridges, gateway addresses, rules, dnsmasq.

:class:`NetworkHost` converges the host to the networks it serves (every
network, unless ``network modify --host`` gave it to another host) and keeps
it there with the periodic tasks; :class:`~novanet.network.manager.NetworkManager`
adds the instance lifecycle on top. The pure decisions (which networks,
grouped how, what changed) are in :mod:`novanet.network.served`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from oslo_config import cfg

from novanet.db import services
from novanet.db.api import Database
from novanet.dhcp.models import DhcpHost, DhcpNetwork
from novanet.ipam import networks as nets
from novanet.ipam import pool, queries
from novanet.ipam.networks import NetworkRow
from novanet.linux.ebtables import Ebtables, dhcp_isolation_rules
from novanet.network import rules as controller_rules
from novanet.network import served

LOG = logging.getLogger(__name__)

BINARY = "novanet-network"
TOPIC = "network"
CONTROLLER_TABLES = ("filter", "nat", "mangle")


class Bridges(Protocol):
    def setup_controller(
        self, bridge: str, interface: str | None, gateway: str, broadcast: str | None = None
    ) -> list[Any]: ...

    def ensure_address(
        self, bridge: str, address: str, broadcast: str | None = None
    ) -> list[Any]: ...


class Dhcp(Protocol):
    def enable(self, network: DhcpNetwork) -> None: ...

    def disable(self, network: DhcpNetwork) -> None: ...

    def reload_allocations(self, network: DhcpNetwork) -> None: ...

    def release(self, network: DhcpNetwork, address: str, mac: str) -> None: ...

    def check_alive(self) -> list[int]: ...


class NetworkHost:
    """Bridges, rules and dnsmasq of the served networks (state: ``_networks``)."""

    conf: cfg.ConfigOpts
    db: Database
    bridges: Bridges
    iptables: Any
    dhcp: Dhcp
    ebtables: Ebtables
    host: str
    _networks: dict[int, NetworkRow]
    _lock: threading.RLock

    # -- the host ------------------------------------------------------------------

    def init_host(self) -> None:
        """Converge this host from any state: bridges, gateway, rules, dnsmasq."""
        with self._lock:
            current = self._served()
            groups = served.by_bridge(current)
            for group in groups.values():
                self._setup_bridge(group)
            self._declare_rules(current)
            LOG.info("iptables: %s", "; ".join(self.iptables.full_sync()) or "already in place")
            # before dnsmasq starts: hosts() reads which networks share a bridge
            self._networks = {net.id: net for net in current}
            for dhcp in served.dhcp_networks(current).values():
                self.dhcp.enable(dhcp)
            LOG.info("serving %d network(s): %s", len(current), ", ".join(n.cidr for n in current))

    def _served(self) -> list[NetworkRow]:
        return served.served(nets.list_networks(self.db), self.host)

    def _setup_bridge(self, group: list[NetworkRow]) -> None:
        """The bridge of these networks: the first one's DHCP server address first."""
        first = group[0]
        interface = first.bridge_interface or self.conf.flat_interface
        steps = self.bridges.setup_controller(
            first.bridge, interface, _with_prefix(first.dhcp_server, first), first.broadcast
        )
        for net in group[1:]:
            steps += self.bridges.ensure_address(
                net.bridge, _with_prefix(net.dhcp_server, net), net.broadcast
            )
        for step in steps:
            LOG.info("%s: %s", first.bridge, step)
        if self.conf.share_dhcp_address and interface:
            # nova's isolate_dhcp_address: every host holds the same DHCP address
            for net in group:
                self.ebtables.ensure(dhcp_isolation_rules(interface, net.dhcp_server))

    def _declare_rules(self, current: list[NetworkRow]) -> None:
        wanted = controller_rules.controller_rules(
            current,
            metadata_host=self.conf.metadata_host,
            metadata_port=self.conf.metadata_port,
            routing_source_ip=self.conf.routing_source_ip,
            dmz_cidrs=self.conf.dmz_cidr,
            forward_interfaces=self.conf.forward_bridge_interface,
            drop_action=self.conf.iptables_drop_action,
        )
        controller_rules.declare(self.iptables.ipv4, wanted)

    def refresh_networks(self) -> list[str]:
        """Pick up networks created, modified, deleted or moved to another host."""
        with self._lock:
            current = {net.id: net for net in self._served()}
            if current == self._networks:
                return []
            plan = served.plan_refresh(self._networks, current)
            for dhcp in plan.disable:
                self.dhcp.disable(dhcp)
            for group in plan.setup:
                self._setup_bridge(group)
            with self.iptables.defer_apply():
                self._declare_rules(list(current.values()))
            self._networks = current  # before dnsmasq (re)starts: see init_host
            for dhcp in plan.enable:
                self.dhcp.enable(dhcp)
            LOG.info("networks changed: %s", "; ".join(plan.changes))
            return plan.changes

    def hosts(self, network_id: int) -> list[DhcpHost]:
        """dnsmasq's hosts for a bridge's dnsmasq (the driver's hosts provider).

        ``network_id`` names the bridge's dnsmasq; the hosts of every network
        on the bridge are its hosts.
        """
        with self._lock:
            dhcp = served.dhcp_network_of(self._networks.values(), network_id)
        ids = [sub.id for sub in dhcp.subnets] if dhcp is not None else [network_id]
        return [
            DhcpHost(h.mac, h.hostname, h.address)
            for net_id in ids
            for h in queries.hosts_for_network(self.db, net_id)
        ]

    def _dhcp_of(self, network_id: int) -> DhcpNetwork:
        """What the dnsmasq serving network ``network_id`` serves."""
        with self._lock:
            dhcp = served.dhcp_network_of(self._networks.values(), network_id)
        if dhcp is not None:
            return dhcp
        # not (or no longer) served here: its own row, e.g. for a release
        return served.dhcp_network(nets.get_network(self.db, network_id))

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


def _with_prefix(address: str, net: NetworkRow) -> str:
    return f"{address}/{net.cidr.split('/')[1]}"
