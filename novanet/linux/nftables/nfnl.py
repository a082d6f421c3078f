"""One table's set elements and structure over nfnetlink: dump, add, delete.

Why not the ``nft`` program for these (measured on this 2-core VM with the
anti-spoofing table, BENCHMARKS.md): ``nft`` loads every element of every
set of the table before it does anything, so listing the table takes
0.13-0.3 s at 5,000 ports even with ``-t``/``--terse``; and closing its
netlink socket after a deletion of elements waits in the kernel for about
10 ms, so ``nft delete element`` costs 15-25 ms at any size. Over one
long-lived socket adding or deleting one port's elements is one batch of
about 0.1 ms, and dumping every set at 5,000 ports takes 20-70 ms.
The table itself (chains, rules, set declarations) is still written by
``nft -f`` (its rule compiler is the reference), rarely: see table.py.

Structure fingerprint: what the kernel dumps of the table, its chains, its
sets (declarations, not elements) and its rules, without the message
headers (they carry sequence numbers and the generation), without the
values of ``counter`` expressions (they move with traffic) and without a
set's element count (NFTA_SET_COUNT, which recent kernels dump). Anything done
by hand to the table's structure (a rule deleted, a chain flushed, a
policy changed, the table deleted and made again) changes it; adding or
deleting elements does not.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
from collections.abc import Mapping, Sequence

from novanet.linux import nfnetlink as nl

FAMILIES = {"bridge": 7, "inet": 1, "ip": 2, "arp": 3, "netdev": 5, "ip6": 10}
MSG_NEWTABLE, MSG_GETTABLE, MSG_DELTABLE = 0, 1, 2
MSG_GETCHAIN, MSG_GETRULE, MSG_GETSET = 4, 7, 10
MSG_NEWSETELEM, MSG_GETSETELEM, MSG_DELSETELEM = 12, 13, 14
NFTA_RULE_EXPRESSIONS = 4
NFTA_SET_COUNT = 20  # the number of elements (recent kernels): not structure
# NFTA_SET_ELEM_LIST_{TABLE,SET,ELEMENTS}, NFTA_LIST_ELEM, NFTA_SET_ELEM_KEY, NFTA_DATA_VALUE
LIST_TABLE, LIST_SET, LIST_ELEMENTS, LIST_ELEM, ELEM_KEY, DATA_VALUE = 1, 2, 3, 1, 1, 1
SOL_NETLINK, NETLINK_EXT_ACK = 270, 11
SO_SNDBUFFORCE = 32
CHUNK = 1000  # elements per message: an attribute holds at most 64 KiB
_RECV = 1 << 20


class NftRefused(OSError):
    """nf_tables refused a batch (the whole transaction was aborted); names the message."""


def _kind(msg: int) -> int:
    return (nl.NFNL_SUBSYS_NFTABLES << 8) | msg


class NftSocket:
    """nfnetlink requests of one network namespace (``netns`` None: our own), one socket."""

    def __init__(self, netns: str | None = None) -> None:
        self._netns = netns
        self._sock: socket.socket | None = None
        self._seq = 0

    # -- reading ----------------------------------------------------------------

    def structure(self, family: str, table: str) -> bytes | None:
        """The table's structure fingerprint (module docstring); None if there is no table."""
        fam = FAMILIES[family]
        try:
            found = self.request(MSG_GETTABLE, fam, nl.text(1, table), dump=False)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        digest = hashlib.sha256()
        for payload in found:
            digest.update(payload)
        for payload in self.request(MSG_GETCHAIN, fam, nl.text(1, table), dump=True):
            # A dump of chains lists every table of the family: keep ours.
            if _table_of(payload, 1) == table:
                digest.update(b"\0chain\0" + payload)
        for payload in self.request(MSG_GETSET, fam, nl.text(1, table), dump=True):
            if _table_of(payload, 1) == table:
                digest.update(b"\0set\0" + _without(payload, NFTA_SET_COUNT))
        for payload in self.request(MSG_GETRULE, fam, nl.text(1, table), dump=True):
            if _table_of(payload, 1) == table:
                digest.update(b"\0rule\0" + _without_counters(payload))
        return digest.digest()

    def elements(self, family: str, table: str, set_name: str) -> set[bytes]:
        """The keys of every element of one set (ENOENT if the set is missing)."""
        attrs = nl.text(LIST_TABLE, table) + nl.text(LIST_SET, set_name)
        keys: set[bytes] = set()
        for payload in self.request(MSG_GETSETELEM, FAMILIES[family], attrs, dump=True):
            found = nl.attrs(payload, 0, len(payload))
            if LIST_ELEMENTS not in found:
                continue
            for _, elem in nl.attr_list(payload, *found[LIST_ELEMENTS]):
                key = nl.attrs(payload, *elem).get(ELEM_KEY)
                value = nl.attrs(payload, *key).get(DATA_VALUE) if key else None
                if value is not None:
                    keys.add(payload[value[0] : value[1]])
        return keys

    def request(self, msg: int, family: int, attrs: bytes, dump: bool) -> list[bytes]:
        """The payloads (after nfgenmsg) of the answers to one get or dump request.

        A dump that a concurrent change interrupted (NLM_F_DUMP_INTR) is
        asked again; an error answer raises OSError with its errno.
        """
        for _ in range(5):
            found, interrupted = self._request(msg, family, attrs, dump)
            if not interrupted:
                return found
        raise OSError(errno.EINTR, "nf_tables kept changing during the dump")

    def _request(self, msg: int, family: int, attrs: bytes, dump: bool) -> tuple[list[bytes], bool]:
        sock = self._socket()
        seq = self._next_seq()
        flags = nl.NLM_F_REQUEST | (nl.NLM_F_DUMP if dump else nl.NLM_F_ACK)
        sock.send(nl.message(_kind(msg), flags, seq, family, 0, attrs))
        found: list[bytes] = []
        interrupted = False
        while True:
            data = sock.recv(_RECV)
            for offset, length, kind, msg_flags, got in nl.messages(data):
                if got != seq:
                    continue  # a late answer to an earlier, failed request
                if kind == nl.NLMSG_ERROR:
                    code = nl.error_code(data, offset)
                    if code:
                        raise OSError(code, f"nf_tables: {os.strerror(code)}")
                    return found, interrupted  # the acknowledgement ends a get
                if kind == nl.NLMSG_DONE:
                    return found, interrupted
                interrupted |= bool(msg_flags & nl.NLM_F_DUMP_INTR)
                start = offset + nl.HEADER.size + nl.GENMSG_SIZE
                found.append(data[start : offset + length])

    # -- writing ----------------------------------------------------------------

    def write_elements(
        self,
        family: str,
        table: str,
        deletes: Mapping[str, Sequence[bytes]],
        adds: Mapping[str, Sequence[bytes]],
    ) -> None:
        """Delete then add elements, in one transaction (NftRefused: nothing changed)."""
        ops: list[tuple[int, int, bytes, str]] = []
        for msg, flags, by_set, verb in (
            (MSG_DELSETELEM, 0, deletes, "delete"),
            (MSG_NEWSETELEM, nl.NLM_F_CREATE, adds, "add"),
        ):
            for set_name, keys in by_set.items():
                for start in range(0, len(keys), CHUNK):
                    chunk = keys[start : start + CHUNK]
                    elems = b"".join(
                        nl.attr(LIST_ELEM, nl.attr(ELEM_KEY, nl.attr(DATA_VALUE, key), True), True)
                        for key in chunk
                    )
                    attrs = (
                        nl.text(LIST_TABLE, table)
                        + nl.text(LIST_SET, set_name)
                        + nl.attr(LIST_ELEMENTS, elems, True)
                    )
                    ops.append((msg, flags, attrs, f"{verb} {len(chunk)} element(s) of {set_name}"))
        if ops:
            self._batch(FAMILIES[family], ops)

    def delete_table(self, family: str, table: str) -> bool:
        """Delete the table (with its chains, sets and elements); False if there was none."""
        try:
            self._batch(FAMILIES[family], [(MSG_DELTABLE, 0, nl.text(1, table), "delete table")])
        except NftRefused as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def _batch(self, family: int, ops: Sequence[tuple[int, int, bytes, str]]) -> None:
        sock = self._socket()
        seqs: dict[int, str] = {}
        body = []
        for msg, flags, attrs, what in ops:
            seq = self._next_seq()
            seqs[seq] = what
            flags |= nl.NLM_F_REQUEST | nl.NLM_F_ACK
            body.append(nl.message(_kind(msg), flags, seq, family, 0, attrs))
        data = self._control(nl.NFNL_MSG_BATCH_BEGIN) + b"".join(body)
        data += self._control(nl.NFNL_MSG_BATCH_END)
        self._room(sock, len(data))
        sock.send(data)
        # nfnetlink handles the whole batch inside send(): every answer is queued now.
        waiting = set(seqs)
        failure: tuple[int, str] | None = None
        sock.setblocking(False)
        try:
            while True:
                try:
                    answer = sock.recv(_RECV)
                except BlockingIOError:
                    break
                for offset, _, kind, _, seq in nl.messages(answer):
                    if kind != nl.NLMSG_ERROR or seq not in seqs:
                        continue
                    waiting.discard(seq)
                    code = nl.error_code(answer, offset)
                    if code and failure is None:
                        failure = (code, seqs[seq])
        finally:
            sock.settimeout(5.0)
        if failure is not None:
            code, what = failure
            raise NftRefused(code, f"nf_tables refused '{what}': {os.strerror(code)}")
        if waiting:
            raise NftRefused(errno.EPROTO, "nf_tables did not answer every message of the batch")

    def _control(self, kind: int) -> bytes:
        """A batch's begin or end message (res_id: the subsystem it is for)."""
        seq = self._next_seq()
        return nl.message(kind, nl.NLM_F_REQUEST, seq, 0, nl.NFNL_SUBSYS_NFTABLES, b"")

    @staticmethod
    def _room(sock: socket.socket, size: int) -> None:
        """A batch must fit the socket's send buffer in one send() (as nft does, forced)."""
        if size * 2 <= sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF):
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, size * 2)
        except OSError:  # no CAP_NET_ADMIN: as far as net.core.wmem_max allows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size * 2)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = nl.netfilter_socket(self._netns)
        return self._sock


def _table_of(payload: bytes, table_attr: int) -> str | None:
    span = nl.attrs(payload, 0, len(payload)).get(table_attr)
    return None if span is None else nl.string(payload, span)


def _without(payload: bytes, kind: int) -> bytes:
    return b"".join(
        payload[start - 4 : end]
        for found, (start, end) in nl.attr_list(payload, 0, len(payload))
        if found != kind
    )


def _without_counters(payload: bytes) -> bytes:
    """A rule's attributes with the data of its ``counter`` expressions left out."""
    out = []
    for kind, (start, end) in nl.attr_list(payload, 0, len(payload)):
        if kind != NFTA_RULE_EXPRESSIONS:
            out.append(payload[start - 4 : end])
            continue
        for _, (estart, eend) in nl.attr_list(payload, start, end):
            expr = nl.attrs(payload, estart, eend)
            name = nl.string(payload, expr[1]) if 1 in expr else ""
            out.append(b"counter" if name == "counter" else payload[estart:eend])
    return b"".join(out)
