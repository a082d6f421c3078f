"""The controller's bridges: one per network, its port, the gateway address first.

Set up at start and when networks change, and checked every
``bridge_check_interval`` seconds: the same idempotent plan
(:mod:`novanet.linux.bridge_plan`) makes a deleted bridge again, enslaves
the flat interface again and puts the gateway address back first. When the
gateway address had to be added, the network's dnsmasq must be restarted:
it runs with --bind-interfaces and binds its sockets once at start, so
after the address vanished it keeps running and answers nothing (no DHCP,
and guests lose their gateway and metadata too).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from novanet.dhcp.models import DhcpNetwork
from novanet.exception import NovanetError
from novanet.ipam.networks import NetworkRow
from novanet.linux.bridge_plan import AddAddress

LOG = logging.getLogger(__name__)


class Bridges(Protocol):
    def setup_controller(
        self, bridge: str, interface: str | None, gateway: str, broadcast: str | None = None
    ) -> list[Any]: ...


@dataclass(frozen=True)
class BridgeSetup:
    """What setting up one network's bridge did."""

    network: NetworkRow
    steps: Sequence[Any]

    @property
    def gateway_added(self) -> bool:
        """True if the gateway address was (re)added: dnsmasq cannot be serving."""
        gateway = ipaddress.ip_address(self.network.dhcp_server)
        return any(
            isinstance(step, AddAddress)
            and step.device == self.network.bridge
            and step.address.ip == gateway
            for step in self.steps
        )

    def lines(self) -> list[str]:
        return [f"{self.network.bridge}: {step}" for step in self.steps]


def setup_bridge(bridges: Bridges, net: NetworkRow, flat_interface: str | None) -> BridgeSetup:
    """The network's bridge with its port (the network's bridge_interface or flat_interface)."""
    prefix = net.cidr.split("/")[1]
    interface = net.bridge_interface or flat_interface
    steps = bridges.setup_controller(
        net.bridge, interface, f"{net.dhcp_server}/{prefix}", net.broadcast
    )
    return BridgeSetup(net, list(steps))


class Dnsmasq(Protocol):
    def restart(self, network: DhcpNetwork) -> None: ...


def repair_bridges(
    bridges: Bridges,
    dhcp: Dnsmasq,
    networks: Sequence[tuple[NetworkRow, DhcpNetwork]],
    flat_interface: str | None,
) -> list[str]:
    """Set each network's bridge up again where it changed; returns what was repaired.

    A network whose bridge cannot be repaired (its flat interface made a
    port of another bridge by hand, say) is logged and left; the others are
    still repaired.
    """
    repaired = []
    for net, dhcp_net in networks:
        try:
            done = setup_bridge(bridges, net, flat_interface)
            repaired += done.lines()
            if done.gateway_added:
                dhcp.restart(dhcp_net)
                repaired.append(f"{net.bridge}: dnsmasq restarted (its address had gone)")
        except NovanetError as exc:
            LOG.error("cannot repair bridge %s: %s", net.bridge, exc)
    if repaired:
        LOG.warning("bridges were changed by someone else; repaired: %s", "; ".join(repaired))
    return repaired
