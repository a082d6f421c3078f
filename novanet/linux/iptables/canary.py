"""Cheap "did anybody change the rules?" probes for check_and_repair().

Reading the whole table is what a check costs otherwise: at 5,000 instance
chains ``iptables-nft-save -t filter`` takes about 0.6 s and
``iptables-legacy-save`` about 0.1 s. The probes below cost well under a
millisecond.

- nft: the nf_tables ruleset generation id (netlink NFT_MSG_GETGEN). Every
  committed nf_tables transaction in the namespace increments it, and each
  table section of an ``iptables-nft-restore`` is one transaction (measured:
  a two-table restore adds 2; an empty COMMIT adds 0; saves add 0). So if the
  id went up by exactly the number of our own restores, nobody else changed
  anything: the probe is exact.
- legacy: x_tables has no generation counter. IPT_SO_GET_INFO returns each
  table's hook offsets, entry count and blob size; any rule added, deleted,
  any chain created, flushed or deleted changes them. A rule replaced by one
  of the same size (``iptables -R``) does not: the manager therefore also
  reads the tables every few checks when the probe is not exact. (Hashing the
  IPT_SO_GET_ENTRIES blob without its counters was measured too: 0.1 s at
  5,000 chains, no cheaper than iptables-legacy-save itself.)
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from collections.abc import Hashable, Sequence

from pyroute2.netlink import NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.nfnetlink import NFNL_SUBSYS_NFTABLES
from pyroute2.netlink.nfnetlink.nftsocket import NFT_MSG_GETGEN, nft_gen_msg

from novanet.linux.netlink import NetlinkError
from novanet.linux.netns import NamespaceFiles
from novanet.linux.nfnetlink import netfilter_socket

# <linux/netfilter_ipv4/ip_tables.h>
IPT_SO_GET_INFO = 64
_IPT_GETINFO_SIZE = 84  # name[32], valid_hooks, hook_entry[5], underflow[5], num_entries, size


def probe_socket(netns: str | None, family: int, kind: int, proto: int) -> socket.socket:
    """A socket in ``netns``; a probe's failures are OSErrors (the runner then reads tables)."""
    try:
        return NamespaceFiles().socket(netns, family, kind, proto)
    except NetlinkError as exc:
        raise OSError(exc.errno or errno.ENOENT, str(exc)) from None


class NftGeneration:
    """The nf_tables generation id of a namespace, over one netlink socket."""

    exact = True

    def __init__(self, netns: str | None = None) -> None:
        self._netns = netns
        self._sock: socket.socket | None = None
        self._seq = 0

    def token(self) -> int:
        sock = self._socket()
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        msg = nft_gen_msg()
        msg["header"]["type"] = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN
        msg["header"]["flags"] = NLM_F_REQUEST
        msg["header"]["sequence_number"] = self._seq
        msg["nfgen_family"] = socket.AF_UNSPEC
        msg.encode()
        try:
            sock.send(msg.data)
            while True:
                data = sock.recv(65536)
                _length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data)
                if seq != self._seq:
                    continue  # a late answer to an earlier, timed-out request
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, 16)[0]
                    raise OSError(code, f"NFT_MSG_GETGEN: {os.strerror(code)}")
                reply = nft_gen_msg(data)
                reply.decode()
                return int(reply.get_attr("NFTA_GEN_ID"))
        except OSError:
            self.close()
            raise

    @staticmethod
    def own_commits(before: Hashable, after: Hashable, count: int) -> bool:
        if not isinstance(before, int) or not isinstance(after, int):
            return False
        return (after - before) & 0xFFFFFFFF == count

    def genid(self, token: int) -> int:
        """The generation id a token stands for (NFNL_BATCH_GENID); see SharedGeneration."""
        return token

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = netfilter_socket(self._netns)
        return self._sock


class LegacyTableShape:
    """Entry count, size and hook offsets of each x_tables table (IPT_SO_GET_INFO)."""

    exact = False

    def __init__(self, tables: Sequence[str], netns: str | None = None) -> None:
        self._tables = tuple(tables)
        self._netns = netns
        # getsockopt with a caller-made buffer: the socket module cannot pass one.
        self._libc = ctypes.CDLL(None, use_errno=True)

    def token(self) -> tuple[tuple[int, ...] | None, ...]:
        sock = probe_socket(self._netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        try:
            return tuple(self._info(sock.fileno(), table) for table in self._tables)
        finally:
            sock.close()

    @staticmethod
    def own_commits(before: Hashable, after: Hashable, count: int) -> bool:
        # The shape says nothing about who made a change.
        return True

    def close(self) -> None:
        pass

    def _info(self, fd: int, table: str) -> tuple[int, ...] | None:
        buf = ctypes.create_string_buffer(table.encode(), _IPT_GETINFO_SIZE)
        length = ctypes.c_uint32(_IPT_GETINFO_SIZE)
        result = self._libc.getsockopt(
            fd, socket.SOL_IP, IPT_SO_GET_INFO, buf, ctypes.byref(length)
        )
        if result != 0:
            code = ctypes.get_errno()
            if code == errno.ENOENT:
                return None  # the table does not exist (yet) in this namespace
            raise OSError(code, f"IPT_SO_GET_INFO {table}: {os.strerror(code)}")
        return struct.unpack_from("=13I", buf.raw, 32)
