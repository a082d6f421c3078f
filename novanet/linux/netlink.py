"""The netlink vocabulary shared by the real IpLib and its fake.

This module holds plain data (what a link, an address and a route look
like), the exceptions, the interface both implementations provide
(:class:`IpLibApi`) and the executor hook.

The executor hook
-----------------
Every kernel call of :class:`novanet.linux.ip_lib.IpLib` is a function run
through an *executor*: ``executor(func) -> func()``. The module-level default
runs the function in the calling thread (:func:`run_inline`), which is right
for plain blocking Python. The daemons call
:func:`novanet.service.green.monkey_patch` first thing; it installs an
executor that runs the call in one of eventlet's native threads
(``eventlet.tpool``), because pyroute2 0.9 drives each socket with an asyncio
event loop: two green threads using pyroute2 on the hub's OS thread at the
same time fail with "This event loop is already running". This package never
imports eventlet; an IpLib can also be given its own executor.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, Protocol, TypeVar

from novanet.exception import Conflict, NotFound, NovanetError

T = TypeVar("T")
Executor = Callable[[Callable[[], Any]], Any]

MAIN_TABLE = 254
LOCAL_TABLE = 255

# rtm_protocol values (linux/rtnetlink.h): routes the kernel adds for an
# address are RTPROT_KERNEL; `ip route add` uses RTPROT_BOOT unless told.
PROTO_KERNEL = 2
PROTO_BOOT = 3
PROTO_STATIC = 4

# rtm_scope / ifa_scope values
SCOPE_UNIVERSE = 0
SCOPE_LINK = 253
SCOPE_HOST = 254

IFNAMSIZ = 15  # usable characters of an interface name (16 with the NUL)

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME_RE = re.compile(r"^[^\s/:]{1,15}$")


def run_inline(func: Callable[[], T]) -> T:
    """The default executor: call ``func`` in the calling thread."""
    return func()


class _ExecutorHook:
    """Holder of the process-wide default executor (see the module doc)."""

    executor: Executor = run_inline


def set_default_executor(executor: Executor | None) -> None:
    """Install the executor IpLib objects without their own one use.

    ``None`` restores :func:`run_inline`. Called by
    :func:`novanet.service.green.monkey_patch`.
    """
    _ExecutorHook.executor = executor or run_inline


def default_executor() -> Executor:
    return _ExecutorHook.executor


# -- errors -------------------------------------------------------------------


class NetlinkError(NovanetError):
    """A netlink request failed; ``errno`` is the kernel's error code."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class LinkNotFound(NetlinkError, NotFound):
    """The named interface does not exist (in the namespace asked)."""


class AlreadyExists(NetlinkError, Conflict):
    """The link, address or route exists already."""


class NetnsNotFound(NetlinkError, NotFound):
    """The named network namespace does not exist."""


# -- data ---------------------------------------------------------------------


@dataclass(frozen=True)
class LinkInfo:
    """One network interface as the kernel reports it.

    ``kind`` is the rtnetlink link kind ("bridge", "veth", "tap" for a tun
    device in tap mode, "tun"), or None for a device without one (a NIC).
    ``promisc`` is the effective promiscuity: a bridge port is promiscuous
    because the bridge made it so, without the IFF_PROMISC flag being set.
    """

    name: str
    index: int
    kind: str | None = None
    mac: str | None = None
    mtu: int = 1500
    up: bool = False
    master: str | None = None
    promisc: bool = False
    operstate: str = "UNKNOWN"
    link_netnsid: int | None = None
    # ifi_flags as `ip link` shows them (IFF_PROMISC there: promiscuity an
    # administrator asked for, as the seed's "ifconfig eth2 up promisc")
    flags: int = field(default=0, compare=False)


@dataclass(frozen=True)
class BridgeSettings:
    """The bridge attributes novanet cares about (forward_delay in seconds)."""

    stp: bool
    forward_delay: float


@dataclass(frozen=True)
class AddressInfo:
    """An IPv4 address of an interface, with its broadcast address."""

    interface: IPv4Interface
    broadcast: IPv4Address | None = None
    scope: int = SCOPE_UNIVERSE
    secondary: bool = field(default=False, compare=False)

    @classmethod
    def parse(
        cls, cidr: str | IPv4Interface, broadcast: str | IPv4Address | None = None
    ) -> AddressInfo:
        iface = cidr if isinstance(cidr, IPv4Interface) else IPv4Interface(cidr)
        brd = IPv4Address(broadcast) if broadcast is not None else None
        return cls(iface, brd)

    @property
    def ip(self) -> IPv4Address:
        return self.interface.ip

    @property
    def network(self) -> IPv4Network:
        return self.interface.network

    def same_address(self, other: AddressInfo) -> bool:
        """True when both name the same ip/prefixlen (what the kernel keys on)."""
        return self.interface == other.interface

    def __str__(self) -> str:
        text = self.interface.with_prefixlen
        if self.broadcast is not None:
            text += f" brd {self.broadcast}"
        return text


@dataclass(frozen=True)
class RouteInfo:
    """An IPv4 unicast route through one device (no multipath)."""

    dst: IPv4Network
    device: str
    gateway: IPv4Address | None = None
    metric: int = 0
    table: int = MAIN_TABLE
    proto: int = PROTO_BOOT
    scope: int = SCOPE_UNIVERSE
    prefsrc: IPv4Address | None = None

    @classmethod
    def parse(
        cls,
        dst: str,
        device: str,
        gateway: str | None = None,
        *,
        metric: int = 0,
        table: int = MAIN_TABLE,
        proto: int = PROTO_BOOT,
        prefsrc: str | None = None,
    ) -> RouteInfo:
        net = IPv4Network("0.0.0.0/0" if dst == "default" else dst)
        gw = IPv4Address(gateway) if gateway else None
        scope = SCOPE_UNIVERSE if gw else SCOPE_LINK
        src = IPv4Address(prefsrc) if prefsrc else None
        return cls(net, device, gw, metric, table, proto, scope, src)

    @property
    def is_default(self) -> bool:
        return self.dst.prefixlen == 0

    def key(self) -> tuple[IPv4Network, int, int]:
        """The kernel's identity of an IPv4 route (dst, metric, table)."""
        return (self.dst, self.metric, self.table)

    def on(self, device: str) -> RouteInfo:
        """The same route through another device."""
        return RouteInfo(
            self.dst,
            device,
            self.gateway,
            self.metric,
            self.table,
            self.proto,
            self.scope,
            self.prefsrc,
        )

    def __str__(self) -> str:
        text = "default" if self.is_default else str(self.dst)
        if self.gateway is not None:
            text += f" via {self.gateway}"
        text += f" dev {self.device}"
        if self.metric:
            text += f" metric {self.metric}"
        if self.table != MAIN_TABLE:
            text += f" table {self.table}"
        return text


# -- validation helpers ---------------------------------------------------------


def normalize_mac(mac: str) -> str:
    """Lower-case ``aa:bb:cc:dd:ee:ff``; raise ValueError for anything else."""
    value = mac.strip().lower().replace("-", ":")
    if not _MAC_RE.match(value):
        raise ValueError(f"invalid MAC address {mac!r}")
    return value


def check_ifname(name: str) -> str:
    """Validate an interface name (1-15 characters, no space, '/' or ':')."""
    if not _IFNAME_RE.match(name) or name in (".", ".."):
        raise ValueError(f"invalid interface name {name!r} (1-15 characters, no '/', ':' or space)")
    return name


def check_netns_name(name: str) -> str:
    """Validate a network namespace name (a file name in the netns directory)."""
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise ValueError(f"invalid network namespace name {name!r}")
    return name


def default_broadcast(address: IPv4Interface) -> IPv4Address | None:
    """The broadcast address `ip addr add ... brd +` would set (none for /31, /32)."""
    if address.network.prefixlen >= 31:
        return None
    return address.network.broadcast_address


def as_interface(value: str | IPv4Interface | AddressInfo) -> IPv4Interface:
    if isinstance(value, AddressInfo):
        return value.interface
    if isinstance(value, IPv4Interface):
        return value
    return ipaddress.IPv4Interface(value)


# -- the interface shared by IpLib and FakeIpLib --------------------------------


class IpLibApi(Protocol):
    """What the bridge and VIF code need from netlink (real or fake).

    Methods with a ``netns`` argument act in that named namespace, else in the
    namespace the process runs in. Missing interfaces raise LinkNotFound,
    missing namespaces NetnsNotFound, duplicates AlreadyExists.
    """

    def link(self, name: str, netns: str | None = None) -> LinkInfo | None: ...

    def links(self, prefix: str | None = None, netns: str | None = None) -> list[LinkInfo]: ...

    def create_bridge(self, name: str, *, forward_delay: float = 0, stp: bool = False) -> None: ...

    def bridge_settings(self, name: str) -> BridgeSettings: ...

    def set_bridge_settings(self, name: str, *, forward_delay: float, stp: bool) -> None: ...

    def set_master(self, name: str, master: str | None) -> None: ...

    def set_up(self, name: str, netns: str | None = None) -> None: ...

    def set_mac(self, name: str, mac: str, netns: str | None = None) -> None: ...

    def addresses(self, name: str, netns: str | None = None) -> list[AddressInfo]: ...

    def add_address(self, name: str, address: AddressInfo) -> None: ...

    def delete_address(self, name: str, address: AddressInfo) -> bool: ...

    def routes(self, name: str) -> list[RouteInfo]: ...

    def add_route(self, route: RouteInfo) -> None: ...

    def delete_route(self, route: RouteInfo) -> bool: ...

    def delete_link(self, name: str) -> bool: ...

    def create_tap(
        self, name: str, *, mac: str | None = None, bridge: str | None = None
    ) -> None: ...

    def create_veth(
        self, name: str, peer: str, *, mac: str | None = None, peer_mac: str | None = None
    ) -> None: ...

    def netns_exists(self, name: str) -> bool: ...

    def list_netns(self) -> list[str]: ...

    def ensure_netns(self, name: str) -> bool: ...

    def delete_netns(self, name: str) -> bool: ...

    def move_to_netns(self, name: str, netns: str) -> None: ...

    def configure_in_netns(
        self,
        netns: str,
        name: str,
        *,
        new_name: str | None = None,
        mac: str | None = None,
        up: bool = True,
        loopback_up: bool = True,
    ) -> None: ...
