"""A node's interfaces, bridges and routes, read with pyroute2 and printed like the seed's tools.

The seed shows ``ip a``, ``brctl show`` and ``route -n``; these functions
read the same facts over netlink from a lab namespace and render them in
those tools' shapes, so the demo can put the seed's line and ours side by
side. Only the columns that mean something in a lab are rendered (no
counters, no IPv6 link-local addresses, which are random per boot).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
from typing import Any

from pyroute2 import IPRoute

from novanet.linux.ip_lib import iproute

IFF_UP = 0x1
IFF_PROMISC = 0x100
RT_TABLE_MAIN = 254
RT_SCOPE_NAMES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
RTN_UNICAST = 1


@dataclasses.dataclass(frozen=True)
class Address:
    address: str  # 10.0.0.1/24
    broadcast: str | None
    scope: str
    label: str

    def render(self) -> str:
        """``inet 10.0.0.1/24 brd 10.0.0.255 scope global br100`` (ip a's line)."""
        brd = f" brd {self.broadcast}" if self.broadcast else ""
        return f"inet {self.address}{brd} scope {self.scope} {self.label}"


@dataclasses.dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str | None
    up: bool
    promisc: bool
    master: str | None
    kind: str | None
    addresses: tuple[Address, ...]
    bridge_id: str | None = None  # brctl's "8000.0800278f87fa" for bridges
    stp: bool | None = None


def _ipr(netns: str) -> contextlib.AbstractContextManager[IPRoute]:
    return iproute(netns)


def _bridge_info(msg: Any) -> tuple[str | None, bool | None]:
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    data = linkinfo.get_attr("IFLA_INFO_DATA") if linkinfo else None
    if data is None:
        return None, None
    # pyroute2 decodes IFLA_BR_BRIDGE_ID's 16-bit priority as one byte:
    # the priority comes from IFLA_BR_PRIORITY instead.
    prio = data.get_attr("IFLA_BR_PRIORITY")
    ident = data.get_attr("IFLA_BR_BRIDGE_ID") or {}
    mac = str(ident.get("addr") or msg.get_attr("IFLA_ADDRESS") or "")
    bridge_id = f"{int(prio or 0):04x}.{mac.replace(':', '')}"
    stp = data.get_attr("IFLA_BR_STP_STATE")
    return bridge_id, bool(stp) if stp is not None else None


def links(netns: str) -> list[Link]:
    """Every link of a namespace with its IPv4 addresses in kernel order."""
    with _ipr(netns) as ipr:
        msgs = ipr.get_links()
        addrs: dict[int, list[Address]] = {}
        for msg in ipr.get_addr(family=2):
            addrs.setdefault(msg["index"], []).append(
                Address(
                    address=f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}",
                    broadcast=msg.get_attr("IFA_BROADCAST"),
                    scope=RT_SCOPE_NAMES.get(msg["scope"], str(msg["scope"])),
                    label=msg.get_attr("IFA_LABEL") or "",
                )
            )
    names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in msgs}
    result = []
    for msg in msgs:
        linkinfo = msg.get_attr("IFLA_LINKINFO")
        kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo else None
        bridge_id, stp = _bridge_info(msg) if kind == "bridge" else (None, None)
        master = msg.get_attr("IFLA_MASTER")
        result.append(
            Link(
                index=msg["index"],
                name=str(msg.get_attr("IFLA_IFNAME")),
                mac=msg.get_attr("IFLA_ADDRESS"),
                up=bool(msg["flags"] & IFF_UP),
                promisc=bool(msg["flags"] & IFF_PROMISC),
                master=names.get(master) if master else None,
                kind=kind,
                addresses=tuple(addrs.get(msg["index"], [])),
                bridge_id=bridge_id,
                stp=stp,
            )
        )
    return result


def render_link(link: Link) -> list[str]:
    """``ip a``'s meaningful lines of one link: name, flags, master, MAC, inet lines."""
    flags = [f for f, on in (("UP", link.up), ("PROMISC", link.promisc)) if on]
    head = f"{link.name}: <{','.join(flags)}>"
    if link.master:
        head += f" master {link.master}"
    lines = [head, f"    link/ether {link.mac}"]
    lines += [f"    {a.render()}" for a in link.addresses]
    return lines


def render_links(all_links: list[Link], names: list[str]) -> list[str]:
    """The named links (missing ones say so), in the order given."""
    by_name = {link.name: link for link in all_links}
    lines: list[str] = []
    for name in names:
        link = by_name.get(name)
        lines += render_link(link) if link else [f"{name}: (no such interface)"]
    return lines


def brctl_show(all_links: list[Link]) -> list[str]:
    """``brctl show``'s rows: ``br100 8000.0800278f87fa no eth2 [vnet0...]``."""
    rows = []
    for bridge in (link for link in all_links if link.kind == "bridge"):
        ports = sorted(link.name for link in all_links if link.master == bridge.name)
        stp = "yes" if bridge.stp else "no"
        rows.append(" ".join([bridge.name, bridge.bridge_id or "?", stp, *ports]))
    return rows


def route_n(netns: str) -> list[str]:
    """``route -n``'s rows of the main table: Destination Gateway Genmask Flags Metric Iface.

    The Ref and Use columns are always 0 on Linux and are left out.
    """
    with _ipr(netns) as ipr:
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
        msgs = [
            m for m in ipr.get_routes(family=2, table=RT_TABLE_MAIN) if m["type"] == RTN_UNICAST
        ]
    rows = []
    for msg in msgs:
        dst = msg.get_attr("RTA_DST") or "0.0.0.0"
        net = ipaddress.IPv4Network(f"{dst}/{msg['dst_len']}")
        gateway = msg.get_attr("RTA_GATEWAY")
        flags = "U" + ("G" if gateway else "") + ("H" if msg["dst_len"] == 32 else "")
        rows.append(
            (
                int(net.network_address),
                msg["dst_len"],
                " ".join(
                    [
                        str(net.network_address),
                        gateway or "0.0.0.0",
                        str(net.netmask),
                        flags,
                        str(msg.get_attr("RTA_PRIORITY") or 0),
                        str(names.get(msg.get_attr("RTA_OIF"), "?")),
                    ]
                ),
            )
        )
    return [text for _, _, text in sorted(rows)]
