"""Which networks this controller serves, and how they map onto bridges and dnsmasq.

Pure functions of the network rows. A network is served here unless
``network modify --host`` gave it to another network host (nova's
networks.host). Networks on one bridge (``network create --num_networks
N``, as nova made them) share that bridge and one dnsmasq: the bridge's
networks become one :class:`DhcpNetwork` named after the first of them, the
others in its ``more``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from novanet.dhcp.models import DhcpNetwork
from novanet.ipam.networks import NetworkRow


def served(nets: Iterable[NetworkRow], host: str) -> list[NetworkRow]:
    """The networks of this network host: no host set, or ``host``."""
    return [net for net in nets if net.host in (None, host)]


def dhcp_network(net: NetworkRow, more: Sequence[NetworkRow] = ()) -> DhcpNetwork:
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
        more=tuple(dhcp_network(other) for other in more),
    )


def by_bridge(nets: Iterable[NetworkRow]) -> dict[str, list[NetworkRow]]:
    """bridge -> its networks, by id (the first one names the bridge's dnsmasq)."""
    groups: dict[str, list[NetworkRow]] = {}
    for net in sorted(nets, key=lambda n: n.id):
        groups.setdefault(net.bridge, []).append(net)
    return groups


def dhcp_networks(nets: Iterable[NetworkRow]) -> dict[str, DhcpNetwork]:
    """bridge -> what its dnsmasq serves."""
    return {bridge: dhcp_network(group[0], group[1:]) for bridge, group in by_bridge(nets).items()}


def dhcp_network_of(nets: Iterable[NetworkRow], network_id: int) -> DhcpNetwork | None:
    """The DhcpNetwork of the bridge holding network ``network_id``, if served."""
    for dhcp in dhcp_networks(nets).values():
        if any(sub.id == network_id for sub in dhcp.subnets):
            return dhcp
    return None


@dataclasses.dataclass
class Refresh:
    """What a change of the served networks asks of the bridges and dnsmasq."""

    disable: list[DhcpNetwork] = dataclasses.field(default_factory=list)
    setup: list[list[NetworkRow]] = dataclasses.field(default_factory=list)
    enable: list[DhcpNetwork] = dataclasses.field(default_factory=list)
    changes: list[str] = dataclasses.field(default_factory=list)


def plan_refresh(old: Mapping[int, NetworkRow], new: Mapping[int, NetworkRow]) -> Refresh:
    """From the networks served before to those served now (id -> row).

    A bridge's dnsmasq is named after its first network: when that one goes,
    the dnsmasq is stopped and the next network's started in its place.
    """
    plan = Refresh()
    plan.changes += [f"network {net.cidr} removed" for key, net in old.items() if key not in new]
    before, after = dhcp_networks(old.values()), dhcp_networks(new.values())
    for bridge, dhcp in before.items():
        if bridge not in after or after[bridge].id != dhcp.id:
            plan.disable.append(dhcp)
    for group in by_bridge(new.values()).values():
        if any(old.get(net.id) != net for net in group):
            plan.setup.append(group)
            plan.changes += [f"network {net.cidr} set up" for net in group if net.id not in old]
    plan.enable += [dhcp for bridge, dhcp in after.items() if before.get(bridge) != dhcp]
    if not plan.changes and old != new:
        plan.changes.append("network settings changed")
    return plan
