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
from collections.abc import Callable
from typing import Any, Protocol

from oslo_config import cfg

from novanet.db import services
from novanet.db.api import Database
from novanet.dhcp.labels import first_free, hostname_candidates
from novanet.dhcp.models import DhcpHost, DhcpNetwork
from novanet.ipam import networks as nets
from novanet.ipam import pool, queries
from novanet.ipam.networks import NetworkRow
from novanet.linux.ebtables import Ebtables, dhcp_isolation_rules
from novanet.linux.iptables.declare import declare
from novanet.linux.iptables.manager import drift_item
from novanet.network import rules as controller_rules
from novanet.network import served
from novanet.network.bridges import Bridges, BridgeSetup, repair_bridges, setup_bridge
from novanet.network.floating_rules import floating_rules, with_floating

LOG = logging.getLogger(__name__)

BINARY = "novanet-network"
TOPIC = "network"
CONTROLLER_TABLES = ("filter", "nat", "mangle")


class Dhcp(Protocol):
    def enable(self, network: DhcpNetwork) -> None: ...

    def disable(self, network: DhcpNetwork) -> None: ...

    def reload_allocations(self, network: DhcpNetwork) -> None: ...

    def release(self, network: DhcpNetwork, address: str, mac: str) -> None: ...

    def check_alive(self) -> list[int]: ...

    def restart(self, network: DhcpNetwork) -> None: ...


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
            readdressed = {
                bridge: self._setup_bridge(group).gateway_added for bridge, group in groups.items()
            }
            self.adopt_floating()  # floating IPs: addresses now, rules with the others
            self._declare_rules(current)
            # The iptables manager logs each change it makes: only say when there was none.
            if not self.iptables.full_sync():
                LOG.info("iptables: already in place")
            # before dnsmasq starts: hosts() reads which networks share a bridge
            self._networks = {net.id: net for net in current}
            for bridge, dhcp in served.dhcp_networks(current).items():
                # A dnsmasq that outlived its address (bridge deleted while we
                # were down) serves nothing: restarted, not adopted.
                (self.dhcp.restart if readdressed[bridge] else self.dhcp.enable)(dhcp)
            LOG.info("serving %d network(s): %s", len(current), ", ".join(n.cidr for n in current))

    # provided by novanet.network.floating.FloatingIps (after this class in the
    # manager's bases: annotations only, so that its methods are found)
    adopt_floating: Callable[[], None]
    floating_mappings: Callable[[], list[Any]]
    floating_drift: Callable[[], list[str]]

    def _served(self) -> list[NetworkRow]:
        return served.served(nets.list_networks(self.db), self.host)

    def _setup_bridge(self, group: list[NetworkRow]) -> BridgeSetup:
        """The bridge of these networks: the first one's DHCP server address first."""
        # The bridge manager logs every step it applies (naming the bridge).
        done = setup_bridge(self.bridges, group, self.conf.flat_interface)
        interface = group[0].bridge_interface or self.conf.flat_interface
        if self.conf.share_dhcp_address and interface:
            # nova's isolate_dhcp_address: every host holds the same DHCP address
            for net in group:
                self.ebtables.ensure(dhcp_isolation_rules(interface, net.dhcp_server))
        return done

    def _declare_rules(self, current: list[NetworkRow]) -> None:
        wanted = controller_rules.controller_rules(
            current,
            metadata_host=self.conf.metadata_host,
            metadata_port=self.conf.metadata_port,
            routing_source_ip=self.conf.routing_source_ip,
            dmz_cidrs=self.conf.dmz_cidr,
            forward_interfaces=self.conf.forward_bridge_interface,
            drop_action=self.conf.iptables_drop_action,
            force_snat_range=self.conf.force_snat_range or (),
        )
        # floating IPs: nova's nat rules of each association, after the seed's
        wanted = with_floating(wanted, floating_rules(self.floating_mappings()))
        declare(self.iptables.ipv4, wanted)

    def _declare_current(self) -> None:
        """Rules for the networks served now and the floating IPs, applied before returning."""
        with self._lock:
            self._declare_rules(list(self._networks.values()))
            self.iptables.apply()

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

    def serving(self) -> list[NetworkRow]:
        """The networks this host serves now (what init_host/refresh_networks set up)."""
        with self._lock:
            return sorted(self._networks.values(), key=lambda n: n.id)

    def hosts(self, network_id: int) -> list[DhcpHost]:
        """dnsmasq's hosts for a bridge's dnsmasq (the driver's hosts provider).

        ``network_id`` names the bridge's dnsmasq; the hosts of every network
        on the bridge are its hosts. Hostnames are unique (creates choose them
        so); rows from before that rule may share one, and the later instance
        is then served under its instance name, so that a name resolves to
        one guest.
        """
        with self._lock:
            dhcp = served.dhcp_network_of(self._networks.values(), network_id)
        ids = [sub.id for sub in dhcp.subnets] if dhcp is not None else [network_id]
        return dhcp_hosts(self.db, self.conf.instance_name_template, ids)

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

    def check_dnsmasq(self) -> list[int]:
        """Restart dead dnsmasqs (the driver logs each); the ids of their networks."""
        return self.dhcp.check_alive()

    def check_iptables(self) -> list[str]:
        """Repair our chains if someone changed them (the iptables manager logs each repair)."""
        return list(self.iptables.check_and_repair())

    def drift(self, *more_iptables: Any) -> list[dict[str, Any]]:
        """What the periodic checks would repair now, without repairing (diagnose's dry run).

        Our iptables rules (and those of ``more_iptables``, the daemon's other
        managers) and the floating addresses; ``repair_within`` is the
        check's interval in seconds.
        """
        within = int(self.conf.iptables_check_interval)
        found: list[dict[str, Any]] = []
        for manager in (self.iptables, *more_iptables):
            for line in manager.drift():
                obj, problem = drift_item(line)
                found.append({"object": obj, "problem": problem, "repair_within": within})
        for line in self.floating_drift():
            address, _, rest = line.partition(" ")
            interface = rest.split()[2] if rest.startswith("missing") else rest.split()[1]
            found.append(
                {
                    "object": f"{interface} {address}",
                    "problem": f"floating address {line}",
                    "repair_within": within,
                }
            )
        return found

    def check_bridges(self) -> list[str]:
        """Repair bridges, ports and gateways changed by hand; restart dnsmasq where needed."""
        with self._lock:
            current = list(self._networks.values())
            dhcp = served.dhcp_networks(current)
            groups = [(group, dhcp[bridge]) for bridge, group in served.by_bridge(current).items()]
            return repair_bridges(self.bridges, self.dhcp, groups, self.conf.flat_interface)


def dhcp_hosts(db: Database, name_template: str, network_ids: list[int]) -> list[DhcpHost]:
    """The hosts of these networks (one bridge's dnsmasq), unique hostnames (see hosts())."""
    hosts = []
    seen: set[str] = set()
    for net_id in network_ids:
        for h in queries.hosts_for_network(db, net_id):
            hostname = h.hostname
            if hostname in seen and h.instance_id is not None:
                name = name_template % h.instance_id
                hostname = first_free(hostname_candidates(name, name), seen) or hostname
            seen.add(hostname)
            hosts.append(DhcpHost(h.mac, hostname, h.address))
    return hosts
