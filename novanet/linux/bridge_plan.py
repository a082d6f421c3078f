"""The bridge and gateway plan: pure functions from observed state to steps.

Given what the kernel shows (the bridge, the flat interface, their IPv4
addresses in kernel order and their routes), these functions return the
list of steps that brings the host to the state nova-network's
``ensure_bridge`` and ``initialize_gateway_device`` produced:

- the bridge exists (forward delay 0, STP off), is up, the flat interface is
  one of its ports and up;
- IPv4 addresses of the flat interface move to the bridge, in order, and its
  routes (default route included) are re-added through the bridge;
- on the controller the gateway address (``dhcp_server/prefix brd B``) is
  the bridge's FIRST address, because dnsmasq answers DHCP from the first
  address of the interface; other addresses are re-added after it.

An empty plan means nothing to do, which is what makes the apply idempotent.
The steps are plain data; :mod:`novanet.linux.bridge` applies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from novanet.exception import Conflict
from novanet.linux.netlink import (
    PROTO_KERNEL,
    AddressInfo,
    BridgeSettings,
    LinkInfo,
    RouteInfo,
)


@dataclass(frozen=True)
class CreateBridge:
    name: str
    settings: BridgeSettings

    def __str__(self) -> str:
        stp = "on" if self.settings.stp else "off"
        return (
            f"create bridge {self.name} (forward delay {self.settings.forward_delay:g}, stp {stp})"
        )


@dataclass(frozen=True)
class SetBridgeSettings:
    name: str
    settings: BridgeSettings

    def __str__(self) -> str:
        stp = "on" if self.settings.stp else "off"
        return f"set bridge {self.name} forward delay {self.settings.forward_delay:g}, stp {stp}"


@dataclass(frozen=True)
class SetMaster:
    device: str
    master: str

    def __str__(self) -> str:
        return f"attach {self.device} to {self.master}"


@dataclass(frozen=True)
class SetUp:
    device: str

    def __str__(self) -> str:
        return f"bring {self.device} up"


@dataclass(frozen=True)
class DeleteRoute:
    route: RouteInfo

    def __str__(self) -> str:
        return f"delete route {self.route}"


@dataclass(frozen=True)
class DeleteAddress:
    device: str
    address: AddressInfo

    def __str__(self) -> str:
        return f"delete address {self.address} from {self.device}"


@dataclass(frozen=True)
class AddAddress:
    device: str
    address: AddressInfo

    def __str__(self) -> str:
        return f"add address {self.address} to {self.device}"


@dataclass(frozen=True)
class AddRoute:
    route: RouteInfo

    def __str__(self) -> str:
        return f"add route {self.route}"


Step = (
    CreateBridge
    | SetBridgeSettings
    | SetMaster
    | SetUp
    | DeleteRoute
    | DeleteAddress
    | AddAddress
    | AddRoute
)

DEFAULT_SETTINGS = BridgeSettings(stp=False, forward_delay=0.0)


@dataclass(frozen=True)
class BridgeState:
    """What the kernel shows for a bridge and (optionally) its flat interface."""

    bridge: LinkInfo | None
    settings: BridgeSettings | None = None
    addresses: tuple[AddressInfo, ...] = ()
    routes: tuple[RouteInfo, ...] = ()
    interface: LinkInfo | None = None
    interface_addresses: tuple[AddressInfo, ...] = ()
    interface_routes: tuple[RouteInfo, ...] = ()


def plan_bridge(
    state: BridgeState,
    bridge: str,
    interface: str | None = None,
    settings: BridgeSettings = DEFAULT_SETTINGS,
) -> list[Step]:
    """Steps making ``bridge`` exist and up, with ``interface`` as its port.

    ``state.interface`` must describe ``interface`` when one is given.
    Raises Conflict when ``bridge`` is not a bridge or ``interface`` is a
    port of another bridge (moving it would cut that bridge off).
    """
    steps: list[Step] = []
    if state.bridge is None:
        steps += [CreateBridge(bridge, settings), SetUp(bridge)]
    else:
        if state.bridge.kind != "bridge":
            kind = state.bridge.kind or "a plain device"
            raise Conflict(f"{bridge} exists and is not a bridge (it is {kind})")
        if state.settings != settings:
            # nova set these only when it created the bridge; an existing bridge
            # with STP on would hold every new port in listening/learning
            # for twice the forward delay (30 s by default).
            steps.append(SetBridgeSettings(bridge, settings))
        if not state.bridge.up:
            steps.append(SetUp(bridge))
    if interface is None:
        return steps
    port = state.interface
    if port is None or port.name != interface:
        raise ValueError(f"the observed state does not describe interface {interface}")
    if port.master not in (None, bridge):
        raise Conflict(f"{interface} is already a port of {port.master}, not of {bridge}")
    if port.master != bridge:
        steps.append(SetMaster(interface, bridge))
    if not port.up:
        steps.append(SetUp(interface))
    return steps + plan_move(state, bridge, interface)


def plan_move(state: BridgeState, bridge: str, interface: str) -> list[Step]:
    """Move the interface's IPv4 addresses and routes to the bridge.

    Routes the kernel made for an address (proto kernel) come back by
    themselves when the address is re-added; the others (default route,
    static routes) are deleted first and re-added through the bridge once the
    addresses are there, as nova did.
    """
    moving = [route for route in state.interface_routes if route.proto != PROTO_KERNEL]
    if not state.interface_addresses and not moving:
        return []
    steps: list[Step] = [DeleteRoute(route) for route in moving]
    # Secondaries sit after the primaries; deleting from the end never
    # removes a primary before its secondaries (which the kernel would
    # delete with it when promote_secondaries is off).
    steps += [DeleteAddress(interface, addr) for addr in reversed(state.interface_addresses)]
    for addr in state.interface_addresses:
        if not any(addr.same_address(have) for have in state.addresses):
            steps.append(AddAddress(bridge, addr))
    present = {route.key() for route in state.routes}
    for route in moving:
        moved = route.on(bridge)
        if moved.key() not in present:
            steps.append(AddRoute(moved))
            present.add(moved.key())
    return steps


def plan_address(bridge: str, addresses: Sequence[AddressInfo], address: AddressInfo) -> list[Step]:
    """Steps giving ``bridge`` one more address, wherever it lands in the list.

    The other networks sharing a bridge (``network create --num_networks``)
    need their DHCP server address there; only the first network's must be
    first (see :func:`plan_gateway`).
    """
    if any(addr.ip == address.ip for addr in addresses):
        return []
    return [AddAddress(bridge, address)]


def plan_gateway(
    bridge: str,
    addresses: Sequence[AddressInfo],
    routes: Sequence[RouteInfo],
    gateway: AddressInfo,
) -> list[Step]:
    """Steps making ``gateway`` the first IPv4 address of ``bridge``, once.

    The kernel lists primary addresses in the order they were added, so the
    only way to put an address first is to remove the others and add them
    back after it. Removing the last address of a subnet also drops every
    route through it, so the bridge's routes are saved and re-added.
    """
    first_ok = bool(addresses) and addresses[0] == gateway
    duplicates = [addr for addr in addresses[1:] if addr.ip == gateway.ip]
    if first_ok and not duplicates:
        return []
    if not addresses:
        return [AddAddress(bridge, gateway)]
    saved = [route for route in routes if route.proto != PROTO_KERNEL]
    others = [addr for addr in addresses if addr.ip != gateway.ip]
    steps: list[Step] = [DeleteRoute(route) for route in saved]
    steps += [DeleteAddress(bridge, addr) for addr in reversed(addresses)]
    steps.append(AddAddress(bridge, gateway))
    steps += [AddAddress(bridge, addr) for addr in others]
    steps += [AddRoute(route) for route in saved]
    return steps
