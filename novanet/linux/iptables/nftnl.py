"""nf_tables rule handles over netlink (nft backend): learn them, delete by them.

iptables-nft rules are nf_tables rules, and each has a handle (a number
unique in its table, never reused while the table exists). A deletion by
handle is one netlink message, whereas ``iptables-nft-restore`` with
``-D nova-compute-local ...`` (by text or by number alike) first dumps and
parses every rule of the chain (tens of milliseconds at 5,000 instances;
the breakdown in BENCHMARKS.md), and the ``nft`` program is no better as it
loads its own cache of all 5,000 chains first. What remains grows with the
chain in the kernel itself: a commit rebuilds the rule blob of each chain it
changes (about 1 ms for 5,000 rules).

- Learning: while our ``iptables-nft-restore`` runs, a socket subscribed to
  NFNLGRP_NFTABLES receives the kernel's notification of every rule added
  (table, chain, handle, jump target), then one NFT_MSG_NEWGEN per committed
  transaction. If exactly one transaction was seen, the rules are ours.
  Otherwise (and when the socket overflowed) nothing is learned.
- Dumping: NFT_MSG_GETRULE of one chain gives its rules' handles in order.
- Deleting: one batch (flush chains, delete rules by handle, delete chains)
  whose NFNL_MSG_BATCH_BEGIN carries NFNL_BATCH_GENID, the generation id the
  handles were known at: nf_tables refuses the whole batch with ERESTART if
  anybody committed since, so a stale handle can never delete a wrong rule.
  Support for it is checked once (an empty batch with a wrong id must be
  refused); without it the manager does not use handles.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from novanet.linux import nfnetlink as nfnl
from novanet.linux.iptables.plan import HandleBatch
from novanet.linux.iptables.view import RuleHandle

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP = 1, 2
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFNL_BATCH_GENID = 1
MSG_DELCHAIN, MSG_NEWRULE, MSG_GETRULE, MSG_DELRULE, MSG_NEWGEN = 5, 6, 7, 8, 15
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_DUMP = 1, 2, 4, 16, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
# Encoding shared with the anti-spoofing table's client (novanet/linux/nfnetlink.py).
_HEADER = nfnl.HEADER
_attr = nfnl.attr
_text = nfnl.text
_message = nfnl.message
_attrs = nfnl.attrs
_string = nfnl.string
_NLA_TYPE_MASK = nfnl.NLA_TYPE_MASK
# NFTA_EXPR_NAME "immediate": length 14, type 1, the name, padding to 16.
_IMMEDIATE = struct.pack("=HH", 14, 1) + b"immediate\0\0\0"


class StaleGeneration(Exception):
    """nf_tables refused a batch: somebody committed since its generation id."""


class HandleError(OSError):
    """nf_tables refused a deletion by handle (the whole batch was aborted)."""


def _jump_target(data: bytes, span: tuple[int, int]) -> str | None:
    """The chain an ``immediate`` verdict of NFTA_RULE_EXPRESSIONS jumps or goes to.

    The expression is found by its NFTA_EXPR_NAME attribute (the kernel puts
    it first in each expression) with one C-level search: decoding every
    expression of 5,000 rules in Python costs 100 ms.
    """
    found = data.find(_IMMEDIATE, span[0], span[1])
    if found < 0:
        return None
    start = found + len(_IMMEDIATE)  # NFTA_EXPR_DATA follows the (aligned) name
    length, kind = struct.unpack_from("=HH", data, start)
    if kind & _NLA_TYPE_MASK != 2:
        return None
    value = _attrs(data, start + 4, start + length).get(2)  # NFTA_IMMEDIATE_DATA
    verdict = _attrs(data, *value).get(2) if value else None  # NFTA_DATA_VERDICT
    chain = _attrs(data, *verdict).get(2) if verdict else None  # NFTA_VERDICT_CHAIN
    return None if chain is None else _string(data, chain)


def _rule(data: bytes, offset: int, length: int) -> tuple[int, str, RuleHandle] | None:
    """(family, table, rule) of an NFT_MSG_NEWRULE message at ``offset``."""
    attrs = _attrs(data, offset + 20, offset + length)
    if not {1, 2, 3} <= attrs.keys():
        return None
    (handle,) = struct.unpack_from(">Q", data, attrs[3][0])
    target = _jump_target(data, attrs[4]) if 4 in attrs else None
    rule = RuleHandle(_string(data, attrs[2]), handle, target)
    return data[offset + 16], _string(data, attrs[1]), rule


class NftRules:
    """Rule handles of the ``ip`` family tables of one network namespace."""

    def __init__(self, netns: str | None = None) -> None:
        self._netns = netns
        self._sock: socket.socket | None = None
        self._monitor: socket.socket | None = None
        self._seq = 0
        self._supported: bool | None = None

    def supported(self, generation: int) -> bool:
        """Does the kernel check NFNL_BATCH_GENID? (asked once; ``generation``: the current id)"""
        if self._supported is None:
            try:
                self._batch(b"", (generation + 0x80000000) & 0xFFFFFFFF, [])
                self._supported = False
            except StaleGeneration:
                self._supported = True
            except OSError:
                self._supported = False
        return self._supported

    # -- learning from notifications --------------------------------------------

    def watch(self) -> None:
        """Start listening for rule additions (before our restore)."""
        sock = self._monitor_socket()
        sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        self._read_events()  # whatever came before is not ours

    def added(self, table: str) -> list[RuleHandle] | None:
        """Rules added to ``table`` since watch(), if exactly one transaction committed."""
        try:
            events, generations, complete = self._read_events()
        finally:
            if self._monitor is not None:
                self._monitor.setsockopt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, NFNLGRP_NFTABLES)
        if not complete or generations != 1:
            return None
        return [rule for family, name, rule in events if family == socket.AF_INET and name == table]

    def _read_events(self) -> tuple[list[tuple[int, str, RuleHandle]], int, bool]:
        sock = self._monitor_socket()
        events: list[tuple[int, str, RuleHandle]] = []
        generations = 0
        complete = True
        while True:
            try:
                data = sock.recv(262144)
            except BlockingIOError:
                return events, generations, complete
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                complete = False  # notifications were dropped: learn nothing
                continue
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
                if kind == (NFNL_SUBSYS_NFTABLES << 8) | MSG_NEWRULE:
                    parsed = _rule(data, offset, length)
                    if parsed is not None:
                        events.append(parsed)
                elif kind == (NFNL_SUBSYS_NFTABLES << 8) | MSG_NEWGEN:
                    generations += 1
                offset += (max(length, _HEADER.size) + 3) & ~3

    # -- dumping and deleting ---------------------------------------------------

    def rules(self, table: str, chain: str) -> list[RuleHandle]:
        """The rules of one chain, in order, with their handles."""
        sock = self._socket()
        seq = self._next_seq()
        kind = (NFNL_SUBSYS_NFTABLES << 8) | MSG_GETRULE
        attrs = _text(1, table) + _text(2, chain)  # NFTA_RULE_TABLE, NFTA_RULE_CHAIN
        sock.send(_message(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, socket.AF_INET, 0, attrs))
        found: list[RuleHandle] = []
        while True:
            data = sock.recv(262144)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, flags, got, _ = _HEADER.unpack_from(data, offset)
                if got == seq:
                    if flags & NLM_F_DUMP_INTR:
                        raise OSError(errno.EINTR, f"rules of {chain} changed while dumped")
                    if kind == NLMSG_DONE:
                        return found
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + 16)[0]
                        raise OSError(code, f"dump of {chain}: {os.strerror(code)}")
                    parsed = _rule(data, offset, length)
                    if parsed is not None:
                        found.append(parsed[2])
                offset += (max(length, _HEADER.size) + 3) & ~3

    def delete(self, table: str, batch: HandleBatch, generation: int) -> None:
        """Apply ``batch`` as one transaction, refused if the generation moved."""
        messages: list[bytes] = []
        seqs: list[int] = []
        rule_kind = (NFNL_SUBSYS_NFTABLES << 8) | MSG_DELRULE
        chain_kind = (NFNL_SUBSYS_NFTABLES << 8) | MSG_DELCHAIN
        ops: list[tuple[int, bytes]] = [
            (rule_kind, _text(1, table) + _text(2, chain)) for chain in batch.flush
        ]
        ops += [
            (rule_kind, _text(1, table) + _text(2, chain) + _attr(3, struct.pack(">Q", handle)))
            for chain, handle in batch.rules
        ]
        ops += [(chain_kind, _text(1, table) + _text(3, chain)) for chain in batch.delete]
        for kind, attrs in ops:
            seqs.append(self._next_seq())
            flags = NLM_F_REQUEST | NLM_F_ACK
            messages.append(_message(kind, flags, seqs[-1], socket.AF_INET, 0, attrs))
        self._batch(b"".join(messages), generation, seqs, batch.describe(table))

    def close(self) -> None:
        for sock in (self._sock, self._monitor):
            if sock is not None:
                sock.close()
        self._sock = self._monitor = None

    def _batch(
        self, body: bytes, generation: int, seqs: list[int], lines: list[str] | None = None
    ) -> None:
        sock = self._socket()
        begin_seq = self._next_seq()
        genid = _attr(NFNL_BATCH_GENID, struct.pack(">I", generation))
        begin = _message(
            NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, begin_seq, 0, NFNL_SUBSYS_NFTABLES, genid
        )
        end = _message(
            NFNL_MSG_BATCH_END, NLM_F_REQUEST, self._next_seq(), 0, NFNL_SUBSYS_NFTABLES, b""
        )
        sock.send(begin + body + end)
        # nfnetlink handles the batch inside send(): every answer is queued now.
        waiting = set(seqs)
        failure: tuple[int, int] | None = None
        sock.setblocking(False)
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    break
                offset = 0
                while offset + _HEADER.size <= len(data):
                    length, kind, _, seq, _ = _HEADER.unpack_from(data, offset)
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + 16)[0]
                        if seq == begin_seq and code == errno.ERESTART:
                            raise StaleGeneration("the ruleset changed since it was read")
                        waiting.discard(seq)
                        if code and failure is None and seq in seqs:
                            failure = (code, seqs.index(seq))
                    offset += (max(length, _HEADER.size) + 3) & ~3
        finally:
            sock.settimeout(5.0)
        if failure is not None:
            code, index = failure
            line = (lines or [])[index] if lines and index < len(lines) else "?"
            raise HandleError(code, f"nf_tables refused {line!r}: {os.strerror(code)}")
        if waiting:
            raise HandleError(errno.EPROTO, "nf_tables did not answer every deletion")

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = nfnl.netfilter_socket(self._netns)
        return self._sock

    def _monitor_socket(self) -> socket.socket:
        if self._monitor is None:
            self._monitor = nfnl.netfilter_socket(self._netns, timeout=None)
        return self._monitor
