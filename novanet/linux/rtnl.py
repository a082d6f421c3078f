"""Translation between pyroute2's rtnetlink messages and novanet's data.

Used by :mod:`novanet.linux.ip_lib` inside an open IPRoute session.
"""

from __future__ import annotations

import errno
import os
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError as PyNetlinkError

from novanet.linux.netlink import (
    MAIN_TABLE,
    AddressInfo,
    AlreadyExists,
    LinkInfo,
    LinkNotFound,
    NetlinkError,
    RouteInfo,
)

IFF_UP = 0x1
IFA_F_SECONDARY = 0x01
IFLA_TUN_TYPE_TAP = 2
RTN_UNICAST = 1


def where(netns: str | None) -> str:
    return f" in network namespace {netns}" if netns else ""


# BR_MAX_PORTS in the kernel's net/bridge/br_private.h; port number 0 is
# reserved, so a bridge holds 1023 ports.
BR_MAX_PORTS = 1024


def translate(exc: PyNetlinkError, what: str) -> NetlinkError:
    code = exc.code
    reason = os.strerror(code) if code else str(exc)
    if code == errno.ENODEV:
        return LinkNotFound(f"{what}: no such device", code)
    if code == errno.EEXIST:
        return AlreadyExists(f"{what}: {reason}", code)
    if code == errno.EXFULL:
        # the only "exchange full" rtnetlink gives: a port for a full bridge
        return NetlinkError(
            f"{what}: the bridge is full (a Linux bridge holds at most "
            f"{BR_MAX_PORTS - 1} ports; spread instances over more networks or hosts)",
            code,
        )
    return NetlinkError(f"{what}: {reason} (errno {code})", code)


def get_link(ipr: IPRoute, name: str) -> Any:
    try:
        return ipr.link("get", ifname=name)[0]
    except PyNetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def require_link(ipr: IPRoute, name: str, netns: str | None = None) -> Any:
    msg = get_link(ipr, name)
    if msg is None:
        raise LinkNotFound(f"interface {name} does not exist{where(netns)}", errno.ENODEV)
    return msg


def link_info(msg: Any, names: dict[int, str | None]) -> LinkInfo:
    kind = msg.get(("linkinfo", "kind"))
    if kind == "tun":
        data = msg.get(("linkinfo", "data"))
        if data is not None and data.get("IFLA_TUN_TYPE") == IFLA_TUN_TYPE_TAP:
            kind = "tap"
    master_index = msg.get("master")
    return LinkInfo(
        name=msg.get("ifname"),
        index=msg["index"],
        kind=kind,
        mac=msg.get("address"),
        mtu=msg.get("mtu") or 0,
        up=bool(msg["flags"] & IFF_UP),
        flags=msg["flags"],
        master=names.get(master_index) if master_index else None,
        promisc=bool(msg.get("promiscuity")),
        operstate=msg.get("operstate") or "UNKNOWN",
        link_netnsid=msg.get("link_netnsid"),
    )


def address_info(msg: Any) -> AddressInfo:
    ip = msg.get("local") or msg.get("address")
    broadcast = msg.get("broadcast")
    return AddressInfo(
        interface=IPv4Interface(f"{ip}/{msg['prefixlen']}"),
        broadcast=IPv4Address(broadcast) if broadcast else None,
        scope=msg["scope"],
        secondary=bool(msg["flags"] & IFA_F_SECONDARY),
    )


def route_info(msg: Any, device: str, table: int) -> RouteInfo:
    gateway = msg.get("gateway")
    prefsrc = msg.get("prefsrc")
    return RouteInfo(
        dst=IPv4Network(f"{msg.get('dst') or '0.0.0.0'}/{msg['dst_len']}"),
        device=device,
        gateway=IPv4Address(gateway) if gateway else None,
        metric=msg.get("priority") or 0,
        table=table,
        proto=msg["proto"],
        scope=msg["scope"],
        prefsrc=IPv4Address(prefsrc) if prefsrc else None,
    )


def route_spec(ipr: IPRoute, route: RouteInfo) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "dst": str(route.dst),
        "oif": require_link(ipr, route.device)["index"],
        "table": route.table,
        "proto": route.proto,
        "scope": route.scope,
    }
    if route.gateway is not None:
        spec["gateway"] = str(route.gateway)
    if route.metric:
        spec["priority"] = route.metric
    if route.prefsrc is not None:
        spec["prefsrc"] = str(route.prefsrc)
    if route.table == MAIN_TABLE:
        del spec["table"]
    return spec
