"""Apply the bridge and gateway plans (see :mod:`novanet.linux.bridge_plan`).

Every change runs under the bridge's lock (in-process and inter-process,
:class:`~novanet.linux.lock.LockSet`), observed and applied in one go, so two
callers never interleave their address edits: nova-network had no lock here
and concurrent edits left the bridge without its gateway address.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Interface

from novanet.exception import NotFound
from novanet.linux.bridge_plan import (
    DEFAULT_SETTINGS,
    AddAddress,
    AddRoute,
    BridgeState,
    CreateBridge,
    DeleteAddress,
    DeleteRoute,
    SetBridgeSettings,
    SetMaster,
    SetUp,
    Step,
    plan_address,
    plan_bridge,
    plan_gateway,
)
from novanet.linux.lock import LockSet
from novanet.linux.netlink import (
    AddressInfo,
    BridgeSettings,
    IpLibApi,
    as_interface,
    check_ifname,
    default_broadcast,
)
from novanet.linux.sysctl import Sysctl

LOG = logging.getLogger(__name__)


class BridgeManager:
    """Ensure the flat bridge, its port and (on the controller) its gateway.

    :param ip: an IpLib (or the fake), bound to the host's namespace
    :param lock_dir: directory of the inter-process lock files (lock_path)
    :param sysctl: kernel parameters (ip_forward, bridge-nf-call-iptables)
    """

    def __init__(
        self,
        ip: IpLibApi,
        lock_dir: str,
        sysctl: Sysctl,
        *,
        settings: BridgeSettings = DEFAULT_SETTINGS,
    ) -> None:
        self.ip = ip
        self.locks = LockSet(lock_dir)
        # Required, never defaulted to the real /proc/sys: a unit test with the
        # fake IpLib must not be able to flip the host's ip_forward by accident.
        self.sysctl = sysctl
        self.settings = settings

    def observe(self, bridge: str, interface: str | None = None) -> BridgeState:
        """Read the kernel state the plans need."""
        link = self.ip.link(bridge)
        state = BridgeState(bridge=link)
        if link is not None:
            state = BridgeState(
                bridge=link,
                settings=self.ip.bridge_settings(bridge) if link.kind == "bridge" else None,
                addresses=tuple(self.ip.addresses(bridge)),
                routes=tuple(self.ip.routes(bridge)),
            )
        if interface is None:
            return state
        port = self.ip.link(interface)
        if port is None:
            raise NotFound(f"flat interface {interface} does not exist")
        return BridgeState(
            bridge=state.bridge,
            settings=state.settings,
            addresses=state.addresses,
            routes=state.routes,
            interface=port,
            interface_addresses=tuple(self.ip.addresses(interface)),
            interface_routes=tuple(self.ip.routes(interface)),
        )

    def ensure_bridge(self, bridge: str, interface: str | None = None) -> list[Step]:
        """Create/fix ``bridge``, enslave ``interface``, move its IPv4 config.

        Returns the steps applied (empty when the host was already right).
        """
        check_ifname(bridge)
        if interface is not None:
            check_ifname(interface)
        with self.locks.lock(f"bridge-{bridge}"):
            steps = plan_bridge(self.observe(bridge, interface), bridge, interface, self.settings)
            self._apply(steps)
        return steps

    def ensure_gateway(
        self,
        bridge: str,
        address: str | IPv4Interface,
        broadcast: str | None = None,
    ) -> list[Step]:
        """Make ``address`` (e.g. 10.0.0.1/24) the bridge's first IPv4 address.

        ``broadcast`` defaults to the subnet's broadcast address, as the seed
        shows (`inet 10.0.0.1/24 brd 10.0.0.255`).
        """
        iface = as_interface(address)
        gateway = AddressInfo.parse(iface, broadcast if broadcast else default_broadcast(iface))
        with self.locks.lock(f"bridge-{bridge}"):
            if self.ip.link(bridge) is None:
                raise NotFound(f"bridge {bridge} does not exist")
            steps = plan_gateway(bridge, self.ip.addresses(bridge), self.ip.routes(bridge), gateway)
            self._apply(steps)
        return steps

    def ensure_address(
        self, bridge: str, address: str | IPv4Interface, broadcast: str | None = None
    ) -> list[Step]:
        """Give ``bridge`` ``address`` too (not first: see :meth:`ensure_gateway`)."""
        iface = as_interface(address)
        wanted = AddressInfo.parse(iface, broadcast if broadcast else default_broadcast(iface))
        with self.locks.lock(f"bridge-{bridge}"):
            if self.ip.link(bridge) is None:
                raise NotFound(f"bridge {bridge} does not exist")
            steps = plan_address(bridge, self.ip.addresses(bridge), wanted)
            self._apply(steps)
        return steps

    def setup_controller(
        self,
        bridge: str,
        interface: str | None,
        gateway: str | IPv4Interface,
        broadcast: str | None = None,
    ) -> list[Step]:
        """The network host: bridge, port, gateway first, net.ipv4.ip_forward=1."""
        steps = self.ensure_bridge(bridge, interface)
        steps += self.ensure_gateway(bridge, gateway, broadcast)
        if self.sysctl.enable_ip_forward():
            LOG.info("set net.ipv4.ip_forward=1")
        return steps

    def setup_compute(self, bridge: str, interface: str | None) -> list[Step]:
        """A compute host: bridge and port, no address of ours on the bridge.

        Also requires net.bridge.bridge-nf-call-iptables=1 (raises
        BridgeNetfilterMissing without br_netfilter): without it the
        per-instance chains never see bridged traffic.
        """
        self.sysctl.ensure_bridge_nf_call_iptables()
        return self.ensure_bridge(bridge, interface)

    def _apply(self, steps: list[Step]) -> None:
        for step in steps:
            LOG.info("%s", step)
            self._apply_one(step)

    def _apply_one(self, step: Step) -> None:
        ip = self.ip
        match step:
            case CreateBridge(name, settings):
                ip.create_bridge(name, forward_delay=settings.forward_delay, stp=settings.stp)
            case SetBridgeSettings(name, settings):
                ip.set_bridge_settings(name, forward_delay=settings.forward_delay, stp=settings.stp)
            case SetMaster(device, master):
                ip.set_master(device, master)
            case SetUp(device):
                ip.set_up(device)
            case DeleteRoute(route):
                ip.delete_route(route)
            case DeleteAddress(device, address):
                ip.delete_address(device, address)
            case AddAddress(device, address):
                ip.add_address(device, address)
            case AddRoute(route):
                ip.add_route(route)
