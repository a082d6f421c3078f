"""The controller's bridges: one per bridge name, its port, the gateway addresses first.

Networks made by ``network create --num_networks N`` share one bridge, as
nova's did: the bridge holds every network's DHCP server address, the first
network's first (dnsmasq answers from the first address). Set up at start
and when networks change, and checked every ``bridge_check_interval``
seconds: the same idempotent plan (:mod:`novanet.linux.bridge_plan`) makes a
deleted bridge again, enslaves the flat interface again and puts the
addresses back. When an address had to be added, the bridge's dnsmasq must
be restarted: it runs with --bind-interfaces and binds its sockets once at
start, so after the address vanished it keeps running and answers nothing
(no DHCP, and guests lose their gateway and metadata too).
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

    def ensure_address(
        self, bridge: str, address: str, broadcast: str | None = None
    ) -> list[Any]: ...


@dataclass(frozen=True)
class BridgeSetup:
    """What setting up one bridge (and the networks on it) did."""

    networks: Sequence[NetworkRow]
    steps: Sequence[Any]

    @property
    def bridge(self) -> str:
        return self.networks[0].bridge

    @property
    def gateway_added(self) -> bool:
        """True if a DHCP server address was (re)added: dnsmasq cannot be serving it."""
        servers = {ipaddress.ip_address(net.dhcp_server) for net in self.networks}
        return any(
            isinstance(step, AddAddress)
            and step.device == self.bridge
            and step.address.ip in servers
            for step in self.steps
        )

    def lines(self) -> list[str]:
        return [f"{self.bridge}: {step}" for step in self.steps]


def setup_bridge(
    bridges: Bridges, group: Sequence[NetworkRow], flat_interface: str | None
) -> BridgeSetup:
    """The bridge of ``group`` (networks sharing it, by id) with its port and addresses.

    The port is the first network's bridge_interface or flat_interface; the
    first network's DHCP server address comes first.
    """
    first = group[0]
    interface = first.bridge_interface or flat_interface
    steps = list(
        bridges.setup_controller(
            first.bridge, interface, _with_prefix(first.dhcp_server, first), first.broadcast
        )
    )
    for net in group[1:]:
        steps += bridges.ensure_address(
            net.bridge, _with_prefix(net.dhcp_server, net), net.broadcast
        )
    return BridgeSetup(tuple(group), steps)


class Dnsmasq(Protocol):
    def restart(self, network: DhcpNetwork) -> None: ...


def repair_bridges(
    bridges: Bridges,
    dhcp: Dnsmasq,
    groups: Sequence[tuple[Sequence[NetworkRow], DhcpNetwork]],
    flat_interface: str | None,
) -> list[str]:
    """Set each bridge up again where it changed; returns what was repaired.

    ``groups``: the networks of each bridge with what its dnsmasq serves. A
    bridge that cannot be repaired (its flat interface made a port of
    another bridge by hand, say) is logged and left; the others are still
    repaired. The bridge manager logs each step it applies.
    """
    repaired = []
    for group, dhcp_net in groups:
        try:
            done = setup_bridge(bridges, group, flat_interface)
            repaired += done.lines()
            if done.gateway_added:
                dhcp.restart(dhcp_net)
                repaired.append(f"{done.bridge}: dnsmasq restarted (its address had gone)")
        except NovanetError as exc:
            LOG.error("cannot repair bridge %s: %s", group[0].bridge, exc)
    if repaired:
        LOG.warning("bridges were changed by someone else; repaired: %s", "; ".join(repaired))
    return repaired


def _with_prefix(address: str, net: NetworkRow) -> str:
    return f"{address}/{net.cidr.split('/')[1]}"
