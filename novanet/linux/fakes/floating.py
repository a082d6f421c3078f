"""Stateful stand-ins for the conntrack table and gratuitous ARP (floating IPs' unit tests)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class FakeEntry:
    """A connection as conntrack -L shows its two tuples' addresses."""

    orig_src: str
    orig_dst: str
    reply_src: str
    reply_dst: str


class FakeConntrack:
    """A conntrack table: entries are added by the test, deleted like the kernel's."""

    def __init__(self) -> None:
        self.entries: list[FakeEntry] = []

    def add(self, orig_src: str, orig_dst: str, reply_src: str, reply_dst: str) -> None:
        self.entries.append(FakeEntry(orig_src, orig_dst, reply_src, reply_dst))

    def delete_mapping(self, address: str) -> int:
        keep = [e for e in self.entries if address not in (e.orig_dst, e.reply_dst)]
        gone = len(self.entries) - len(keep)
        self.entries = keep
        return gone


class FakeArp:
    """Records each announcement: (interface, address, count)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int]] = []

    def announce(self, interface: str, address: str, count: int) -> None:
        self.sent.append((interface, address, count))
