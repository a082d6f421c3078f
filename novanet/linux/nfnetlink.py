"""nfnetlink message encoding and decoding, shared by the nf_tables clients.

The iptables manager deletes rules by handle (novanet/linux/iptables/nftnl.py)
and the anti-spoofing table reads and writes set elements
(novanet/linux/nftables/nfnl.py) with hand-built messages: pyroute2's
nftables support does not cover set elements of concatenated types, and
both need a batch that is one nf_tables transaction. This module holds the
byte-level part both use: attributes, messages, and walking a receive buffer.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator

from novanet.linux.netlink import NetlinkError
from novanet.linux.netns import NamespaceFiles

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 1, 2, 4
NLM_F_DUMP_INTR, NLM_F_DUMP = 16, 0x300
NLM_F_CREATE = 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
# struct nlattr type bits that are flags (NLA_F_NESTED, NLA_F_NET_BYTEORDER)
NLA_TYPE_MASK = 0x3FFF
HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
GENMSG_SIZE = 4  # struct nfgenmsg: family, version, res_id


def netfilter_socket(netns: str | None, timeout: float | None = 5.0) -> socket.socket:
    """A bound NETLINK_NETFILTER socket inside ``netns`` (None: ours).

    ``timeout`` None makes it non-blocking (a monitor drained when it has
    something). Failures to enter the namespace are OSErrors, as the
    socket's own are: callers fall back the same way for both.
    """
    try:
        sock = NamespaceFiles().socket(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except NetlinkError as exc:
        raise OSError(exc.errno or errno.ENOENT, str(exc)) from None
    if timeout is None:
        sock.setblocking(False)
    else:
        sock.settimeout(timeout)
    sock.bind((0, 0))
    return sock


def attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    """One netlink attribute, padded to 4 bytes (ValueError past 64 KiB)."""
    length = 4 + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"netlink attribute of {length} bytes (at most 65535)")
    kind |= NLA_F_NESTED if nested else 0
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def text(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def message(kind: int, flags: int, seq: int, family: int, res_id: int, attrs: bytes) -> bytes:
    """An nfnetlink message: nlmsghdr, nfgenmsg, then ``attrs``."""
    body = struct.pack("=BBH", family, 0, socket.htons(res_id)) + attrs
    return HEADER.pack(HEADER.size + len(body), kind, flags, seq, 0) + body


def attrs(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """type -> (payload start, payload end) of the attributes in data[start:end]."""
    found: dict[int, tuple[int, int]] = {}
    for kind, span in attr_list(data, start, end):
        found[kind] = span
    return found


def attr_list(data: bytes, start: int, end: int) -> Iterator[tuple[int, tuple[int, int]]]:
    """(type, (payload start, payload end)) of each attribute in order (repeats kept)."""
    while start + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, start)
        if length < 4:
            return
        yield kind & NLA_TYPE_MASK, (start + 4, min(start + length, end))
        start += (length + 3) & ~3


def string(data: bytes, span: tuple[int, int]) -> str:
    return data[span[0] : span[1]].split(b"\0", 1)[0].decode(errors="replace")


def messages(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(offset, length, type, flags, sequence) of each message in a receive buffer."""
    offset = 0
    while offset + HEADER.size <= len(data):
        length, kind, flags, seq, _pid = HEADER.unpack_from(data, offset)
        yield offset, length, kind, flags, seq
        offset += (max(length, HEADER.size) + 3) & ~3


def error_code(data: bytes, offset: int) -> int:
    """The (positive) errno of an NLMSG_ERROR message; 0 for an acknowledgement."""
    return -struct.unpack_from("=i", data, offset + HEADER.size)[0]
