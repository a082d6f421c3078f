"""DhcpNetwork values for tests and benchmarks, planned the way `network create` plans them."""

from __future__ import annotations

from novanet.dhcp.models import DhcpNetwork
from novanet.ipam import plan


def dhcp_network(
    cidr: str = "10.0.0.0/24", *, dns1: str | None = None, dns2: str | None = None
) -> DhcpNetwork:
    """Network 1 on br100: gateway and DHCP server .1, static range from .2 (the seed's shape)."""
    (planned,) = plan.plan_networks(
        label="test", fixed_range_v4=cidr, bridge="br100", dns1=dns1, dns2=dns2
    )
    return DhcpNetwork(
        id=1,
        bridge=planned.bridge,
        cidr=str(planned.cidr),
        gateway=str(planned.gateway),
        dhcp_server=str(planned.dhcp_server),
        dhcp_start=str(planned.dhcp_start),
        broadcast=str(planned.broadcast),
        netmask=planned.netmask,
        dns1=planned.dns1,
        dns2=planned.dns2,
    )
