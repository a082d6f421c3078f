"""IpLib: links, addresses, routes and namespaces over pyroute2 (0.9).

Each public method opens one short-lived ``IPRoute`` (about 1.5 ms), does its
requests and closes it, inside one call of the executor (see
:mod:`novanet.linux.netlink`). pyroute2 0.9 binds an IPRoute to the thread
and asyncio loop that first used it, so an object is never shared between
calls. Work in a named namespace uses a netlink socket created inside it
(:meth:`NamespaceFiles.netlink_fd`), never pyroute2's forking netns helpers.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from socket import AF_INET
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError as PyNetlinkError

from novanet.linux import rtnl
from novanet.linux.linkdump import dump_links
from novanet.linux.netlink import (
    LOCAL_TABLE,
    AddressInfo,
    AlreadyExists,
    BridgeSettings,
    Executor,
    LinkInfo,
    NetlinkError,
    RouteInfo,
    check_ifname,
    default_executor,
    normalize_mac,
)
from novanet.linux.netns import DEFAULT_NETNS_DIR, NamespaceFiles

T = TypeVar("T")

# Bridge times travel in clock_t units of USER_HZ (100 per second): a
# forward delay of 15 s is 1500 in IFLA_BR_FORWARD_DELAY, as in sysfs.
USER_HZ = 100


@contextmanager
def iproute(netns: str | None, namespaces: NamespaceFiles | None = None) -> Iterator[IPRoute]:
    """An IPRoute bound to namespace ``netns`` (None: this thread's), closed afterwards.

    How the daemons and novanet-lab reach a named namespace: a socket made in
    it by :meth:`NamespaceFiles.netlink_fd` (no forked helper; a missing
    namespace is an error, never created by accident).
    """
    if netns is None:
        ipr = IPRoute()
    else:
        # IPRoute takes the fd over: it dups it and closes the original.
        ipr = IPRoute(fileno=(namespaces or NamespaceFiles()).netlink_fd(netns))
    try:
        yield ipr
    finally:
        ipr.close()


class IpLib:
    """Netlink facade bound to the process's network namespace.

    :param netns_dir: where named namespaces live (``ip netns`` uses /run/netns)
    :param executor: runs each kernel call (default: the module-level hook of
        :mod:`novanet.linux.netlink`, which the eventlet service layer replaces)
    """

    def __init__(
        self, *, netns_dir: str = DEFAULT_NETNS_DIR, executor: Executor | None = None
    ) -> None:
        self.namespaces = NamespaceFiles(netns_dir)
        self._executor = executor

    # -- plumbing ---------------------------------------------------------------

    def _run(self, what: str, func: Callable[[IPRoute], T], netns: str | None = None) -> T:
        def task() -> T:
            try:
                with self._session(netns) as ipr:
                    return func(ipr)
            except PyNetlinkError as exc:
                raise rtnl.translate(exc, what + rtnl.where(netns)) from None
            except OSError as exc:  # ioctl (tun), setns, socket errors
                reason = exc.strerror or str(exc)
                raise NetlinkError(f"{what}{rtnl.where(netns)}: {reason}", exc.errno) from None

        executor = self._executor or default_executor()
        result: T = executor(task)
        return result

    def _session(self, netns: str | None) -> contextlib.AbstractContextManager[IPRoute]:
        return iproute(netns, self.namespaces)

    def _plain(self, func: Callable[[], T]) -> T:
        executor = self._executor or default_executor()
        result: T = executor(func)
        return result

    # -- links ------------------------------------------------------------------

    def link(self, name: str, netns: str | None = None) -> LinkInfo | None:
        check_ifname(name)

        def get(ipr: IPRoute) -> LinkInfo | None:
            msg = rtnl.get_link(ipr, name)
            if msg is None:
                return None
            master = None
            if msg.get("master"):
                master_msg = ipr.link("get", index=msg.get("master"))[0]
                master = master_msg.get("ifname")
            return rtnl.link_info(msg, {msg.get("master"): master} if master else {})

        return self._run(f"cannot read link {name}", get, netns)

    def links(self, prefix: str | None = None, netns: str | None = None) -> list[LinkInfo]:
        """Every link (whose name starts with ``prefix``): one lean dump (see linkdump.py)."""

        def dump() -> list[LinkInfo]:
            found = dump_links(netns, self.namespaces)
            return [li for li in found if prefix is None or li.name.startswith(prefix)]

        return self._plain(dump)

    def create_bridge(self, name: str, *, forward_delay: float = 0, stp: bool = False) -> None:
        check_ifname(name)
        self._run(
            f"cannot create bridge {name}",
            lambda ipr: ipr.link(
                "add",
                ifname=name,
                kind="bridge",
                br_forward_delay=round(forward_delay * USER_HZ),
                br_stp_state=1 if stp else 0,
            ),
        )

    def bridge_settings(self, name: str) -> BridgeSettings:
        def get(ipr: IPRoute) -> BridgeSettings:
            msg = rtnl.require_link(ipr, name)
            if msg.get(("linkinfo", "kind")) != "bridge":
                raise NetlinkError(f"{name} is not a bridge")
            data = msg.get(("linkinfo", "data"))
            return BridgeSettings(
                stp=bool(data.get("IFLA_BR_STP_STATE")),
                forward_delay=(data.get("IFLA_BR_FORWARD_DELAY") or 0) / USER_HZ,
            )

        return self._run(f"cannot read bridge {name}", get)

    def set_bridge_settings(self, name: str, *, forward_delay: float, stp: bool) -> None:
        def configure(ipr: IPRoute) -> None:
            index = rtnl.require_link(ipr, name)["index"]
            delay = {"br_forward_delay": round(forward_delay * USER_HZ)}
            state = {"br_stp_state": 1 if stp else 0}
            # While STP is on the kernel only accepts forward delays of 2-30 s
            # (ERANGE otherwise), and it applies IFLA_BR_FORWARD_DELAY before
            # IFLA_BR_STP_STATE: turn STP off before setting a zero delay, and
            # set the delay before turning STP on.
            for attrs in (state, delay) if not stp else (delay, state):
                ipr.link("set", index=index, kind="bridge", **attrs)

        self._run(f"cannot configure bridge {name}", configure)

    def set_master(self, name: str, master: str | None) -> None:
        def enslave(ipr: IPRoute) -> None:
            index = rtnl.require_link(ipr, name)["index"]
            master_index = rtnl.require_link(ipr, master)["index"] if master else 0
            ipr.link("set", index=index, master=master_index)

        target = f"to {master}" if master else "from its master"
        self._run(f"cannot attach {name} {target}", enslave)

    def set_up(self, name: str, netns: str | None = None) -> None:
        self._run(
            f"cannot bring {name} up",
            lambda ipr: ipr.link("set", index=rtnl.require_link(ipr, name)["index"], state="up"),
            netns,
        )

    def set_mac(self, name: str, mac: str, netns: str | None = None) -> None:
        mac = normalize_mac(mac)
        self._run(
            f"cannot set the MAC of {name} to {mac}",
            lambda ipr: ipr.link("set", index=rtnl.require_link(ipr, name)["index"], address=mac),
            netns,
        )

    def delete_link(self, name: str) -> bool:
        def delete(ipr: IPRoute) -> bool:
            msg = rtnl.get_link(ipr, name)
            if msg is None:
                return False
            try:
                ipr.link("del", index=msg["index"])
            except PyNetlinkError as exc:
                if exc.code == errno.ENODEV:  # deleted meanwhile
                    return False
                raise
            return True

        return self._run(f"cannot delete {name}", delete)

    def create_tap(self, name: str, *, mac: str | None = None, bridge: str | None = None) -> None:
        """A persistent tap, like `ip tuntap add NAME mode tap` (no packet info).

        With ``bridge`` the tap is also attached to it and brought up.
        The kernel has no rtnetlink "add" for tun devices; pyroute2 does the
        TUNSETIFF/TUNSETPERSIST ioctls on /dev/net/tun, in this thread's
        namespace. TUNSETIFF on an existing persistent tap attaches to it
        instead of failing, hence the explicit existence check.
        """
        check_ifname(name)
        mac = normalize_mac(mac) if mac else None

        def create(ipr: IPRoute) -> None:
            if rtnl.get_link(ipr, name) is not None:
                raise AlreadyExists(f"cannot create tap {name}: it exists", errno.EEXIST)
            flags = {"no_pi": True, "one_queue": False, "vnet_hdr": False, "multi_queue": False}
            ipr.link("add", ifname=name, kind="tuntap", mode="tap", ifr=flags)
            index = rtnl.require_link(ipr, name)["index"]
            try:
                if mac:
                    ipr.link("set", index=index, address=mac)
                if bridge:
                    ipr.link("set", index=index, master=rtnl.require_link(ipr, bridge)["index"])
                    ipr.link("set", index=index, state="up")
            except BaseException:
                # a persistent tap outlives us: never leave a half-made one
                ipr.link("del", index=index)
                raise

        self._run(f"cannot create tap {name}", create)

    def create_veth(
        self, name: str, peer: str, *, mac: str | None = None, peer_mac: str | None = None
    ) -> None:
        check_ifname(name)
        check_ifname(peer)
        peer_spec: dict[str, Any] = {"ifname": peer}
        if peer_mac:
            peer_spec["address"] = normalize_mac(peer_mac)
        extra: dict[str, Any] = {"address": normalize_mac(mac)} if mac else {}
        self._run(
            f"cannot create veth pair {name}/{peer}",
            lambda ipr: ipr.link("add", ifname=name, kind="veth", peer=peer_spec, **extra),
        )

    # -- addresses ------------------------------------------------------------

    def addresses(self, name: str, netns: str | None = None) -> list[AddressInfo]:
        """IPv4 addresses of ``name`` in kernel order (primaries first)."""

        def dump(ipr: IPRoute) -> list[AddressInfo]:
            index = rtnl.require_link(ipr, name)["index"]
            return [
                rtnl.address_info(m)
                for m in ipr.addr("dump", family=AF_INET)
                if m["index"] == index
            ]

        return self._run(f"cannot list addresses of {name}", dump, netns)

    def add_address(self, name: str, address: AddressInfo) -> None:
        def add(ipr: IPRoute) -> None:
            spec: dict[str, Any] = {
                "index": rtnl.require_link(ipr, name)["index"],
                "address": str(address.ip),
                "prefixlen": address.interface.network.prefixlen,
                "scope": address.scope,
            }
            if address.broadcast is not None:
                spec["broadcast"] = str(address.broadcast)
            ipr.addr("add", **spec)

        self._run(f"cannot add address {address} to {name}", add)

    def delete_address(self, name: str, address: AddressInfo) -> bool:
        def delete(ipr: IPRoute) -> bool:
            index = rtnl.require_link(ipr, name)["index"]
            try:
                ipr.addr(
                    "del",
                    index=index,
                    address=str(address.ip),
                    prefixlen=address.interface.network.prefixlen,
                )
            except PyNetlinkError as exc:
                if exc.code == errno.EADDRNOTAVAIL:
                    return False
                raise
            return True

        return self._run(f"cannot delete address {address} from {name}", delete)

    # -- routes -----------------------------------------------------------------

    def routes(self, name: str) -> list[RouteInfo]:
        """IPv4 unicast routes through ``name``, every table but `local`."""

        def dump(ipr: IPRoute) -> list[RouteInfo]:
            index = rtnl.require_link(ipr, name)["index"]
            found = []
            for msg in ipr.route("dump", family=AF_INET):
                # rtm_table is 8 bits; ids above 255 are only in RTA_TABLE.
                table = msg.get("RTA_TABLE") or msg["table"]
                if (
                    msg.get("oif") != index
                    or table == LOCAL_TABLE
                    or msg["type"] != rtnl.RTN_UNICAST
                ):
                    continue
                found.append(rtnl.route_info(msg, name, table))
            return found

        return self._run(f"cannot list routes of {name}", dump)

    def add_route(self, route: RouteInfo) -> None:
        self._run(
            f"cannot add route {route}", lambda ipr: ipr.route("add", **rtnl.route_spec(ipr, route))
        )

    def delete_route(self, route: RouteInfo) -> bool:
        def delete(ipr: IPRoute) -> bool:
            try:
                ipr.route("del", **rtnl.route_spec(ipr, route))
            except PyNetlinkError as exc:
                if exc.code == errno.ESRCH:
                    return False
                raise
            return True

        return self._run(f"cannot delete route {route}", delete)

    # -- namespaces -----------------------------------------------------------

    def netns_exists(self, name: str) -> bool:
        return self.namespaces.exists(name)

    def list_netns(self) -> list[str]:
        return self.namespaces.list()

    def ensure_netns(self, name: str) -> bool:
        """Create the named namespace unless it exists; True if created."""
        return self._plain(lambda: self.namespaces.create(name))

    def delete_netns(self, name: str) -> bool:
        return self._plain(lambda: self.namespaces.delete(name))

    def move_to_netns(self, name: str, netns: str) -> None:
        def move(ipr: IPRoute) -> None:
            index = rtnl.require_link(ipr, name)["index"]
            fd = self.namespaces.open(netns)
            try:
                ipr.link("set", index=index, net_ns_fd=fd)
            finally:
                os.close(fd)

        self._run(f"cannot move {name} to network namespace {netns}", move)

    def configure_in_netns(
        self,
        netns: str,
        name: str,
        *,
        new_name: str | None = None,
        mac: str | None = None,
        up: bool = True,
        loopback_up: bool = True,
    ) -> None:
        """Rename, set the MAC of and bring up ``name`` inside ``netns`` (one session)."""
        if new_name:
            check_ifname(new_name)
        mac = normalize_mac(mac) if mac else None

        def configure(ipr: IPRoute) -> None:
            msg = rtnl.require_link(ipr, name, netns)
            index = msg["index"]
            if new_name and new_name != name:
                if msg["flags"] & rtnl.IFF_UP:
                    # The kernel refuses to rename a device that is up (EBUSY).
                    ipr.link("set", index=index, state="down")
                ipr.link("set", index=index, ifname=new_name)
            if mac and msg.get("address") != mac:
                ipr.link("set", index=index, address=mac)
            if up:
                ipr.link("set", index=index, state="up")
            if loopback_up:
                ipr.link("set", index=rtnl.require_link(ipr, "lo", netns)["index"], state="up")

        self._run(f"cannot configure {name}", configure, netns)
