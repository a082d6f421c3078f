"""Connection tracking entries of a floating IP mapping, removed over nfnetlink (pyroute2).

Why netlink and not ``conntrack -D`` (nova's ``clean_conntrack``): no extra
package, no process per disassociation, and one dump answers both
directions of the mapping. nova deleted ``-r FIXED`` (entries whose reply
comes from the fixed address), which also killed the instance's flows
that never used the floating address and kept its outbound ones (their
reply source is the remote host); novanet deletes exactly the entries NATed
by the mapping:

- original destination == the floating address: connections made to it
  (DNATed by nova-network-PREROUTING or OUTPUT);
- reply destination == the floating address: connections the instance made
  that left SNATed to it (nova-network-float-snat).

Without this a flow keeps its NAT binding after the rules are gone: the
kernel consults the rules only for a connection's first packet.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from novanet.linux.netlink import Executor, NetlinkError, default_executor
from novanet.linux.netns import NamespaceFiles
from novanet.linux.nfnetlink import NETLINK_NETFILTER

T = TypeVar("T")


class ConntrackApi(Protocol):
    def delete_mapping(self, address: str) -> int: ...


def matches(entry: Any, address: str) -> bool:
    """Whether a pyroute2 ConntrackEntry was NATed to or from ``address``."""
    return bool(entry.tuple_orig.daddr == address or entry.tuple_reply.daddr == address)


class Conntrack:
    """The conntrack table of a namespace (None: the calling thread's).

    :param executor: runs each kernel call (see novanet.linux.netlink: the
        daemons run pyroute2 in a native thread under eventlet)
    """

    def __init__(self, netns: str | None = None, executor: Executor | None = None) -> None:
        self.netns = netns
        self._executor = executor

    def _run(self, func: Callable[[Any], T]) -> T:
        """``func(conntrack socket)`` on a socket of its own.

        One socket per call: pyroute2 0.9's Conntrack (unlike IPRoute) closes
        its transport after each request when driven from another thread's
        event loop, as under eventlet's tpool; a second request on it fails
        with "Invalid file descriptor: -1".
        """
        from pyroute2 import Conntrack as NfConntrack
        from pyroute2.netlink.exceptions import NetlinkError as PyNetlinkError

        def task() -> T:
            kwargs: dict[str, Any] = {}
            if self.netns is not None:
                kwargs["fileno"] = NamespaceFiles().socket_fd(
                    self.netns, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_NETFILTER
                )
            ct = NfConntrack(**kwargs)
            try:
                return func(ct)
            except PyNetlinkError as exc:
                raise NetlinkError(f"conntrack: {exc}", exc.code) from None
            finally:
                ct.close()

        result: T = (self._executor or default_executor())(task)
        return result

    def delete_mapping(self, address: str) -> int:
        """Delete the entries NATed to or from ``address``; returns how many went."""
        from pyroute2.netlink.exceptions import NetlinkError as PyNetlinkError

        entries = self._run(lambda ct: [e for e in ct.dump_entries() if matches(e, address)])
        gone = 0
        for entry in entries:

            def delete(ct: Any, entry: Any = entry) -> int:
                try:
                    ct.delete(entry)
                except PyNetlinkError as exc:
                    if exc.code != errno.ENOENT:  # it expired meanwhile: fine
                        raise
                    return 0
                return 1

            gone += self._run(delete)
        return gone

    def count_mapping(self, address: str) -> int:
        """How many entries are NATed to or from ``address`` (tests, diagnosis)."""
        return self._run(lambda ct: sum(1 for e in ct.dump_entries() if matches(e, address)))
