"""A stateful fake of IpLib (and of Sysctl) for unit tests.

It keeps links, bridge ports, IPv4 addresses in kernel order, routes and
named namespaces, and mimics the kernel rules the bridge and VIF code rely on:

- an address in the subnet of an existing primary becomes a secondary and
  is listed after the primaries; a primary's prefix route (proto kernel)
  appears with it;
- deleting a primary deletes its secondaries (promote_secondaries off), its
  prefix route and the routes using it as source; deleting the last address
  of a device drops every route through it;
- a route needs its device up and its gateway on a connected subnet; the
  kernel keys routes on (dst, metric, table);
- moving a device to another namespace takes it down, out of its bridge,
  and drops its addresses and routes; deleting one end of a veth deletes
  the other; deleting a namespace deletes the veth pairs reaching into it.

Tests assert end states through the same read methods as the real IpLib, or
through :meth:`FakeIpLib.dump` (a compact text picture of one namespace).
"""

from __future__ import annotations

import errno
import itertools
from dataclasses import dataclass, field, replace

from novanet.linux.netlink import (
    PROTO_KERNEL,
    SCOPE_LINK,
    AddressInfo,
    AlreadyExists,
    BridgeSettings,
    LinkInfo,
    LinkNotFound,
    NetlinkError,
    NetnsNotFound,
    RouteInfo,
    check_ifname,
    check_netns_name,
    normalize_mac,
)
from novanet.linux.sysctl import BRIDGE_NF_CALL_IPTABLES, IP_FORWARD, Sysctl, SysctlError

HOST = ""  # the key of the namespace the "process" runs in


@dataclass
class _Link:
    name: str
    index: int
    kind: str | None
    mac: str
    up: bool = False
    master: int | None = None
    peer: tuple[str, int] | None = None  # (namespace, index) of a veth peer
    bridge: BridgeSettings | None = None


@dataclass
class _Namespace:
    links: dict[int, _Link] = field(default_factory=dict)
    addresses: dict[int, list[AddressInfo]] = field(default_factory=dict)
    routes: list[tuple[int, RouteInfo]] = field(default_factory=list)

    def find(self, name: str) -> _Link | None:
        return next((link for link in self.links.values() if link.name == name), None)


class FakeIpLib:
    """In-memory stand-in for :class:`novanet.linux.ip_lib.IpLib`."""

    def __init__(self) -> None:
        self.namespaces: dict[str, _Namespace] = {HOST: _Namespace()}
        self._indexes = itertools.count(2)
        self.fail_next: dict[str, Exception] = {}  # method name -> error raised once
        self.add_link("lo", kind=None, up=True, mac="00:00:00:00:00:00")

    # -- test helpers ----------------------------------------------------------

    def add_link(
        self,
        name: str,
        *,
        kind: str | None = None,
        up: bool = False,
        mac: str | None = None,
        netns: str | None = None,
    ) -> None:
        """Create a device the way the host's setup would (a NIC: kind None)."""
        self._new_link(self._ns(netns), name, kind, mac, up=up)

    def dump(self, netns: str | None = None) -> list[str]:
        """One line per link, address and route, `ip`-like, for assertions."""
        ns = self._ns(netns)
        lines = []
        for link in ns.links.values():
            info = self._info(ns, link)
            flags = ",".join(
                f
                for f in ("UP" if info.up else "", f"master {info.master}" if info.master else "")
                if f
            )
            lines.append(f"link {info.name} {info.kind or '-'} {info.mac} {flags}".rstrip())
            lines += [f"addr {link.name} {addr}" for addr in ns.addresses.get(link.index, [])]
        lines += [f"route {route}" for _, route in ns.routes]
        return lines

    def _check_fail(self, method: str) -> None:
        error = self.fail_next.pop(method, None)
        if error is not None:
            raise error

    # -- links ------------------------------------------------------------------

    def link(self, name: str, netns: str | None = None) -> LinkInfo | None:
        ns = self._ns(netns)
        found = ns.find(name)
        return self._info(ns, found) if found else None

    def links(self, prefix: str | None = None, netns: str | None = None) -> list[LinkInfo]:
        ns = self._ns(netns)
        return [
            self._info(ns, link)
            for link in ns.links.values()
            if prefix is None or link.name.startswith(prefix)
        ]

    def create_bridge(self, name: str, *, forward_delay: float = 0, stp: bool = False) -> None:
        self._check_fail("create_bridge")
        link = self._new_link(self._ns(None), name, "bridge", None)
        link.bridge = BridgeSettings(stp=stp, forward_delay=forward_delay)

    def bridge_settings(self, name: str) -> BridgeSettings:
        link = self._require(self._ns(None), name)
        if link.bridge is None:
            raise NetlinkError(f"{name} is not a bridge")
        return link.bridge

    def set_bridge_settings(self, name: str, *, forward_delay: float, stp: bool) -> None:
        link = self._require(self._ns(None), name)
        if link.bridge is None:
            raise NetlinkError(f"{name} is not a bridge", errno.EOPNOTSUPP)
        link.bridge = BridgeSettings(stp=stp, forward_delay=forward_delay)

    def set_master(self, name: str, master: str | None) -> None:
        self._check_fail("set_master")
        ns = self._ns(None)
        link = self._require(ns, name)
        if master is None:
            link.master = None
            return
        bridge = self._require(ns, master)
        if bridge.bridge is None or bridge is link:
            raise NetlinkError(f"cannot attach {name} to {master}", errno.EOPNOTSUPP)
        link.master = bridge.index

    def set_up(self, name: str, netns: str | None = None) -> None:
        self._check_fail("set_up")
        self._require(self._ns(netns), name, netns).up = True

    def set_mac(self, name: str, mac: str, netns: str | None = None) -> None:
        self._require(self._ns(netns), name, netns).mac = normalize_mac(mac)

    def delete_link(self, name: str) -> bool:
        self._check_fail("delete_link")
        ns = self._ns(None)
        link = ns.find(name)
        if link is None:
            return False
        self._remove_link(HOST, link.index)
        return True

    def create_tap(self, name: str, *, mac: str | None = None, bridge: str | None = None) -> None:
        self._check_fail("create_tap")
        self._new_link(self._ns(None), name, "tap", mac)
        if bridge:
            self.set_master(name, bridge)
            self.set_up(name)

    def create_veth(
        self, name: str, peer: str, *, mac: str | None = None, peer_mac: str | None = None
    ) -> None:
        self._check_fail("create_veth")
        ns = self._ns(None)
        if ns.find(peer) is not None or name == peer:
            raise AlreadyExists(f"cannot create veth pair {name}/{peer}: File exists", errno.EEXIST)
        first = self._new_link(ns, name, "veth", mac)
        second = self._new_link(ns, peer, "veth", peer_mac)
        first.peer, second.peer = (HOST, second.index), (HOST, first.index)

    # -- addresses ------------------------------------------------------------

    def addresses(self, name: str, netns: str | None = None) -> list[AddressInfo]:
        ns = self._ns(netns)
        return list(ns.addresses.get(self._require(ns, name, netns).index, []))

    def add_address(self, name: str, address: AddressInfo) -> None:
        self._check_fail("add_address")
        ns = self._ns(None)
        link = self._require(ns, name)
        addrs = ns.addresses.setdefault(link.index, [])
        if any(have.same_address(address) for have in addrs):
            raise AlreadyExists(
                f"cannot add address {address} to {name}: File exists", errno.EEXIST
            )
        secondary = any(not have.secondary and have.network == address.network for have in addrs)
        entry = replace(address, secondary=secondary)
        if secondary:
            addrs.append(entry)
        else:
            last_primary = max((i for i, a in enumerate(addrs) if not a.secondary), default=-1)
            addrs.insert(last_primary + 1, entry)
            prefix = RouteInfo(
                address.network, name, proto=PROTO_KERNEL, scope=SCOPE_LINK, prefsrc=address.ip
            )
            if not any(r.key() == prefix.key() for _, r in ns.routes):
                ns.routes.append((link.index, prefix))

    def delete_address(self, name: str, address: AddressInfo) -> bool:
        self._check_fail("delete_address")
        ns = self._ns(None)
        link = self._require(ns, name)
        addrs = ns.addresses.get(link.index, [])
        victim = next((have for have in addrs if have.same_address(address)), None)
        if victim is None:
            return False
        gone = [victim]
        if not victim.secondary:  # promote_secondaries=0: they go with it
            gone += [a for a in addrs if a.secondary and a.network == victim.network]
        addrs[:] = [a for a in addrs if all(a is not g for g in gone)]
        sources = {g.ip for g in gone}
        ns.routes = [
            (index, route)
            for index, route in ns.routes
            if not (
                index == link.index
                and (
                    not addrs
                    or route.prefsrc in sources
                    or (
                        not victim.secondary
                        and route.proto == PROTO_KERNEL
                        and route.dst == victim.network
                    )
                )
            )
        ]
        return True

    # -- routes -----------------------------------------------------------------

    def routes(self, name: str) -> list[RouteInfo]:
        ns = self._ns(None)
        index = self._require(ns, name).index
        return [route for owner, route in ns.routes if owner == index]

    def add_route(self, route: RouteInfo) -> None:
        self._check_fail("add_route")
        ns = self._ns(None)
        link = self._require(ns, route.device)
        if not link.up:
            raise NetlinkError(f"cannot add route {route}: Network is down", errno.ENETDOWN)
        if route.gateway is not None and not any(
            route.gateway in addr.network for addr in ns.addresses.get(link.index, [])
        ):
            raise NetlinkError(
                f"cannot add route {route}: Network is unreachable", errno.ENETUNREACH
            )
        if any(have.key() == route.key() for _, have in ns.routes):
            raise AlreadyExists(f"cannot add route {route}: File exists", errno.EEXIST)
        ns.routes.append((link.index, route))

    def delete_route(self, route: RouteInfo) -> bool:
        ns = self._ns(None)
        index = self._require(ns, route.device).index
        for i, (owner, have) in enumerate(ns.routes):
            if owner == index and have.key() == route.key() and have.gateway == route.gateway:
                del ns.routes[i]
                return True
        return False

    # -- namespaces -----------------------------------------------------------

    def netns_exists(self, name: str) -> bool:
        return check_netns_name(name) in self.namespaces

    def list_netns(self) -> list[str]:
        return sorted(name for name in self.namespaces if name != HOST)

    def ensure_netns(self, name: str) -> bool:
        if self.netns_exists(name):
            return False
        ns = self.namespaces[name] = _Namespace()
        self._new_link(ns, "lo", None, "00:00:00:00:00:00")
        return True

    def delete_netns(self, name: str) -> bool:
        if not self.netns_exists(name):
            return False
        for index in list(self.namespaces[name].links):
            if index in self.namespaces[name].links:
                self._remove_link(name, index)
        del self.namespaces[name]
        return True

    def move_to_netns(self, name: str, netns: str) -> None:
        self._check_fail("move_to_netns")
        ns, target = self._ns(None), self._ns(netns)
        link = self._require(ns, name)
        if target.find(name) is not None:
            raise AlreadyExists(f"cannot move {name} to network namespace {netns}: File exists")
        ns.addresses.pop(link.index, None)
        ns.routes = [(i, r) for i, r in ns.routes if i != link.index]
        del ns.links[link.index]
        link.up, link.master = False, None
        target.links[link.index] = link
        if link.peer is not None:
            peer_ns, peer_index = link.peer
            self.namespaces[peer_ns].links[peer_index].peer = (netns, link.index)

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
        self._check_fail("configure_in_netns")
        ns = self._ns(netns)
        link = self._require(ns, name, netns)
        if new_name and new_name != name:
            if ns.find(check_ifname(new_name)) is not None:
                raise AlreadyExists(f"cannot rename {name} to {new_name}: File exists")
            link.name = new_name
        if mac:
            link.mac = normalize_mac(mac)
        if up:
            link.up = True
        if loopback_up:
            self._require(ns, "lo", netns).up = True

    # -- internals ----------------------------------------------------------------

    def _ns(self, netns: str | None) -> _Namespace:
        key = HOST if netns is None else netns
        if key not in self.namespaces:
            raise NetnsNotFound(f"network namespace {netns} does not exist", errno.ENOENT)
        return self.namespaces[key]

    @staticmethod
    def _require(ns: _Namespace, name: str, netns: str | None = None) -> _Link:
        link = ns.find(name)
        if link is None:
            where = f" in network namespace {netns}" if netns else ""
            raise LinkNotFound(f"interface {name} does not exist{where}", errno.ENODEV)
        return link

    def _new_link(
        self, ns: _Namespace, name: str, kind: str | None, mac: str | None, up: bool = False
    ) -> _Link:
        check_ifname(name)
        if ns.find(name) is not None:
            raise AlreadyExists(f"cannot create {name}: File exists", errno.EEXIST)
        index = next(self._indexes)
        mac = (
            normalize_mac(mac) if mac else f"02:00:00:00:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}"
        )
        link = ns.links[index] = _Link(name, index, kind, mac, up=up)
        return link

    def _remove_link(self, netns: str, index: int) -> None:
        ns = self.namespaces[netns]
        link = ns.links.pop(index)
        ns.addresses.pop(index, None)
        ns.routes = [(i, r) for i, r in ns.routes if i != index]
        for other in ns.links.values():
            if other.master == index:
                other.master = None
        if link.peer is not None:
            peer_ns, peer_index = link.peer
            if peer_index in self.namespaces.get(peer_ns, _Namespace()).links:
                self.namespaces[peer_ns].links[peer_index].peer = None
                self._remove_link(peer_ns, peer_index)

    @staticmethod
    def _info(ns: _Namespace, link: _Link) -> LinkInfo:
        master = ns.links[link.master].name if link.master in ns.links else None
        return LinkInfo(
            name=link.name,
            index=link.index,
            kind=link.kind,
            mac=link.mac,
            up=link.up,
            master=master,
            promisc=master is not None,
            operstate="UP" if link.up else "DOWN",
            link_netnsid=0 if link.peer and link.peer[0] != HOST else None,
        )


class FakeSysctl(Sysctl):
    """Kernel parameters in a dict; ``br_netfilter=False`` hides bridge-nf-*."""

    def __init__(self, *, br_netfilter: bool = True) -> None:
        super().__init__(proc_root="/nonexistent")
        self.values: dict[str, str] = {IP_FORWARD: "0"}
        if br_netfilter:
            self.values[BRIDGE_NF_CALL_IPTABLES] = "1"

    def exists(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str) -> str:
        if name not in self.values:
            raise SysctlError(f"cannot read {name}: No such file or directory")
        return self.values[name]

    def set(self, name: str, value: str | int) -> bool:
        old = self.get(name)
        self.values[name] = str(value)
        return old != str(value)
