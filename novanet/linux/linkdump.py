"""Every link of a namespace in one RTM_GETLINK dump, decoding only what novanet reads.

pyroute2 decodes every attribute of every link into Python objects: about
1.3 ms a link here (0.65 s at 500 devices, 6.5 s at 5,000), which made the
compute agent's periodic resync (one dump) slow with many instances. This
module sends the same dump on a plain rtnetlink socket and reads, with
``struct``, the attributes :class:`~novanet.linux.netlink.LinkInfo` holds;
the dump asks the kernel to leave out the statistics (RTEXT_FILTER_SKIP_STATS,
most of each message). Measured: 5,000 links in well under 0.1 s.

Names and values follow <linux/rtnetlink.h> and <linux/if_link.h>.
"""

from __future__ import annotations

import _socket
import os
import socket
import struct
from collections.abc import Iterator

from novanet.linux.netlink import LinkInfo, NetlinkError
from novanet.linux.netns import NamespaceFiles

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK = 16, 18
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFF_UP = 0x1

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_EXT_MASK = 16, 18, 29
IFLA_PROMISCUITY, IFLA_LINK_NETNSID = 30, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_TUN_TYPE = 3  # in IFLA_INFO_DATA of a "tun" link: IFF_TUN 1, IFF_TAP 2
IFF_TAP = 2
RTEXT_FILTER_SKIP_STATS = 1 << 3
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTA = struct.Struct("=HH")  # len, type
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")
_BUFFER = 1 << 20


def _attrs(data: bytes, offset: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each attribute in data[offset:end]."""
    unpack = _RTA.unpack_from
    while offset + 4 <= end:
        length, kind = unpack(data, offset)
        if length < 4:
            break
        yield kind & NLA_TYPE_MASK, offset + 4, offset + length
        offset += (length + 3) & ~3


def _kind(data: bytes, start: int, end: int) -> str | None:
    kind = None
    for attr, a, b in _attrs(data, start, end):
        if attr == IFLA_INFO_KIND:
            kind = data[a:b].rstrip(b"\0").decode()
        elif attr == IFLA_INFO_DATA and kind == "tun":  # only a tun's data matters
            for sub, c, _d in _attrs(data, a, b):
                if sub == IFLA_TUN_TYPE and data[c] == IFF_TAP:
                    # A tun device in tap mode: what `ip tuntap add mode tap` makes.
                    return "tap"
    return kind


def parse_link(
    data: bytes, offset: int, end: int, names: dict[int, str] | None = None
) -> tuple[LinkInfo, int | None]:
    """One RTM_NEWLINK message's link and its master's ifindex.

    ``names`` (ifindex -> name) names the master; without it (a dump's
    first pass) the master is left None and its ifindex returned.

    A message carries some 40 attributes: one plain loop over them, slicing
    only the few read (this runs 5,000 times per dump on a busy host).
    """
    _family, _type, index, flags, _change = _IFINFO.unpack_from(data, offset)
    name = f"if{index}"
    mac = kind = netnsid = master = None
    mtu, promisc, operstate = 0, False, "UNKNOWN"
    offset += _IFINFO.size
    unpack, u32 = _RTA.unpack_from, _U32.unpack_from
    while offset + 4 <= end:
        length, attr = unpack(data, offset)
        if length < 4:
            break
        attr &= NLA_TYPE_MASK
        a, b = offset + 4, offset + length
        offset += (length + 3) & ~3
        if attr == IFLA_IFNAME:
            name = data[a:b].rstrip(b"\0").decode("utf-8", "replace")
        elif attr == IFLA_ADDRESS and b - a == 6:
            mac = data[a:b].hex(":")
        elif attr == IFLA_MTU:
            mtu = u32(data, a)[0]
        elif attr == IFLA_MASTER:
            master = u32(data, a)[0] or None
        elif attr == IFLA_OPERSTATE:
            state = data[a]
            operstate = OPERSTATES[state] if state < len(OPERSTATES) else "UNKNOWN"
        elif attr == IFLA_PROMISCUITY:
            promisc = bool(u32(data, a)[0])
        elif attr == IFLA_LINK_NETNSID:
            netnsid = _S32.unpack_from(data, a)[0]
        elif attr == IFLA_LINKINFO:
            kind = _kind(data, a, b)
    link = LinkInfo(
        name=name, index=index, kind=kind, mac=mac, mtu=mtu, up=bool(flags & IFF_UP),
        master=names.get(master) if names is not None and master else None,
        promisc=promisc, operstate=operstate, link_netnsid=netnsid, flags=flags,
    )  # fmt: skip
    return link, master


def _request(seq: int) -> bytes:
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    body += _RTA.pack(8, IFLA_EXT_MASK) + _U32.pack(RTEXT_FILTER_SKIP_STATS)
    return (
        _NLMSG.pack(_NLMSG.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body
    )


def dump_links(
    netns: str | None = None, namespaces: NamespaceFiles | None = None
) -> list[LinkInfo]:
    """Every link of namespace ``netns`` (None: this thread's), masters resolved to names."""
    fd = (namespaces or NamespaceFiles()).socket_fd(
        netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE
    )
    # The C-level socket: plain blocking calls in whatever thread runs this
    # (eventlet's tpool under the daemons), never eventlet's green wrapper.
    sock = _socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE, fd)
    spans: list[tuple[bytes, int, int]] = []  # the RTM_NEWLINK messages, parsed below
    try:
        sock.settimeout(10.0)
        sock.bind((0, 0))
        seq = 1
        sock.send(_request(seq))
        done = False
        while not done:
            data = sock.recv(_BUFFER)
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, kind, _flags, got, _pid = _NLMSG.unpack_from(data, offset)
                if length < _NLMSG.size:
                    break
                end = offset + length
                if got == seq:
                    if kind == NLMSG_DONE:
                        done = True
                        break
                    if kind == NLMSG_ERROR:
                        code = -_S32.unpack_from(data, offset + _NLMSG.size)[0]
                        raise NetlinkError(f"cannot list links: {os.strerror(code)}", code)
                    if kind == RTM_NEWLINK:
                        spans.append((data, offset + _NLMSG.size, end))
                offset = (end + 3) & ~3
    except OSError as exc:
        raise NetlinkError(f"cannot list links: {exc.strerror or exc}", exc.errno) from None
    finally:
        sock.close()
    names = dict(_name(*span) for span in spans)
    return [parse_link(*span, names)[0] for span in spans]


def _name(data: bytes, offset: int, end: int) -> tuple[int, str]:
    """(ifindex, name) of a link message: the kernel puts IFLA_IFNAME first, so this is quick."""
    index = _IFINFO.unpack_from(data, offset)[2]
    for attr, a, b in _attrs(data, offset + _IFINFO.size, end):
        if attr == IFLA_IFNAME:
            return index, data[a:b].rstrip(b"\0").decode("utf-8", "replace")
    return index, f"if{index}"
