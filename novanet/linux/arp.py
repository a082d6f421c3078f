"""Gratuitous ARP for an address just added to an interface (nova's send_arp_for_ip).

nova ran ``arping -U -A -I DEV -c COUNT ADDRESS``: with both flags iputils
sends unsolicited ARP *replies*, one per second, and the command took COUNT
seconds. novanet sends the same frames from an AF_PACKET socket (the daemon
holds CAP_NET_RAW already, for dnsmasq; no arping package, no process): the
first at once, so that neighbours that already cache the address (the
outside router, the gateway) move to the new MAC before the association
returns, the others from a background thread.

A frame: broadcast destination; ARP reply (op 2) with sender and target
protocol address both the floating address, sender and target hardware
address the interface's MAC (as arping -A fills them). Linux updates an
existing neighbour entry from it even with arp_accept=0.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Protocol

from novanet.linux.netns import NamespaceFiles

LOG = logging.getLogger(__name__)

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


class ArpApi(Protocol):
    def announce(self, interface: str, address: str, count: int) -> None: ...


def garp_frame(mac: bytes, address: str) -> bytes:
    """The Ethernet frame of one gratuitous ARP reply for ``address`` from ``mac``."""
    ip = ipaddress.IPv4Address(address).packed
    ether = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    # htype Ethernet, ptype IPv4, hlen 6, plen 4, op 2 (reply)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac + ip + mac + ip
    return ether + arp


class GratuitousArp:
    """Sends gratuitous ARP on an interface of a namespace (None: the calling thread's).

    :param sleep: waits between frames (tests pass a fake)
    :param spawn: runs the later frames in the background (tests run them inline)
    """

    def __init__(
        self,
        netns: str | None = None,
        *,
        interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        spawn: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.netns = netns
        self.interval = interval
        self._sleep = sleep
        self._spawn = spawn or _thread

    def announce(self, interface: str, address: str, count: int) -> None:
        """Send ``count`` frames, ``interval`` apart; the first before returning."""
        if count <= 0:
            return
        self.send(interface, address)
        if count > 1:
            self._spawn(lambda: self._rest(interface, address, count - 1))

    def _rest(self, interface: str, address: str, count: int) -> None:
        for _ in range(count):
            self._sleep(self.interval)
            try:
                self.send(interface, address)
            except OSError as exc:  # the interface went meanwhile: nothing to announce
                LOG.warning("gratuitous ARP for %s on %s: %s", address, interface, exc)
                return

    def send(self, interface: str, address: str) -> None:
        sock = NamespaceFiles().socket(
            self.netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)
        )
        with sock:
            sock.bind((interface, ETH_P_ARP))
            mac = sock.getsockname()[4]  # (ifname, proto, pkttype, hatype, hwaddr)
            sock.send(garp_frame(mac, address))


def _thread(func: Callable[[], None]) -> None:
    threading.Thread(target=func, name="garp", daemon=True).start()
