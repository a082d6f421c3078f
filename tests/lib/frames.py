"""Hand-made Ethernet frames for attack tests: build, send, and watch for them.

A test that shows a frame was *dropped* must not sleep and hope: the
sender sends its forged frames and then a marker frame on the same port,
and the watcher reads until the marker arrives (frames of one port travel
the bridge in order), then reports which of the forged frames it saw.

Run as a program inside a namespace (``ip netns exec NS python
tests/lib/frames.py ...``, or in a lab node or guest), where the test
process cannot go itself: a tap must be opened in the tap's own namespace
(QEMU's place, which this stands in for), and a lab guest's namespace is
only visible in its node's mount view::

    frames.py tap vnet2 HEXFRAME...     write frames into a tap
    frames.py send eth0 HEXFRAME...     send frames out of an interface
    frames.py watch br100 TAG SECONDS [NEEDLE]
                                        print "ready", then each frame received
                                        (hex; only those containing the hex
                                        NEEDLE) until the marker TAG: exit 0, or 1
    frames.py flood eth0 SECONDS HEXFRAME  send one frame again and again
    frames.py get SRC URL SECONDS       HTTP GET from source address SRC: the body
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Iterable, Sequence

from novanet.linux.netns import NamespaceFiles

BROADCAST = "ff:ff:ff:ff:ff:ff"
ETH_P_ALL, ETH_P_IP, ETH_P_ARP, ETH_P_IPV6, ETH_P_8021Q = 0x0003, 0x0800, 0x0806, 0x86DD, 0x8100
TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454CA, 0x0002, 0x1000


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def ip_bytes(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ether(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    # Not padded to 60 bytes: veth and tap carry short frames, and
    # br_netfilter trims IPv4 frames to the packet's length anyway.
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + payload


def arp(op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
    """An Ethernet/IPv4 ARP packet (op 1 request, 2 reply)."""
    header = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, op)
    return header + mac_bytes(sha) + ip_bytes(spa) + mac_bytes(tha) + ip_bytes(tpa)


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, ttl, proto, 0,
        ip_bytes(src), ip_bytes(dst),
    )  # fmt: skip
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def udp(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    """A UDP datagram with its checksum (the IPv4 pseudo header), as an IPv4 packet."""
    length = 8 + len(data)
    pseudo = ip_bytes(src) + ip_bytes(dst) + struct.pack("!BBH", 0, 17, length)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    value = checksum(pseudo + header + data) or 0xFFFF
    return ipv4(src, dst, 17, header[:6] + struct.pack("!H", value) + data)


def icmp_echo(src: str, dst: str, ident: int, seq: int, data: bytes = b"novanet") -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return ipv4(src, dst, 1, body)


def dhcp(
    op: int,
    chaddr: str,
    xid: int,
    message_type: int,
    yiaddr: str = "0.0.0.0",
    ciaddr: str = "0.0.0.0",
    server: str | None = None,
) -> bytes:
    """A minimal BOOTP/DHCP message (op 1 request, 2 reply; option 53 = message type)."""
    fixed = struct.pack("!BBBBIHH", op, 1, 6, 0, xid, 0, 0x8000)
    fixed += ip_bytes(ciaddr) + ip_bytes(yiaddr) + b"\0" * 8 + mac_bytes(chaddr).ljust(16, b"\0")
    fixed += b"\0" * 192 + bytes([99, 130, 83, 99])
    options = bytes([53, 1, message_type])
    if server is not None:
        options += bytes([54, 4]) + ip_bytes(server)  # server identifier
    return fixed + options + bytes([255])


def marker(src_mac: str, src_ip: str, tag: str) -> bytes:
    """An honest broadcast UDP frame ending a burst; ``tag`` names it in the payload."""
    payload = f"novanet-marker {tag}".encode()
    return ether(BROADCAST, src_mac, ETH_P_IP, udp(src_ip, "10.0.0.255", 9, 9, payload))


class Watcher:
    """Frames arriving on an interface of a namespace (opened before the sender sends)."""

    def __init__(self, netns: str | None, iface: str) -> None:
        self.sock = NamespaceFiles().socket(
            netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)
        )
        self.sock.bind((iface, 0))
        self.sock.setblocking(False)

    def until(self, tag: str, timeout: float = 10.0) -> list[bytes] | None:
        """Frames received up to the marker ``tag`` (None: it never came)."""
        wanted = f"novanet-marker {tag}".encode()
        seen: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.sock], [], [], 0.2)
            if not ready:
                continue
            frame, address = self.sock.recvfrom(65535)
            if address[2] == socket.PACKET_OUTGOING:
                continue
            if wanted in frame:
                return seen
            seen.append(frame)
        return None

    def close(self) -> None:
        self.sock.close()


def send(netns: str | None, iface: str, frames: Iterable[bytes]) -> None:
    """Send frames out of ``iface`` in namespace ``netns`` (an AF_PACKET socket)."""
    sock = NamespaceFiles().socket(netns, socket.AF_PACKET, socket.SOCK_RAW)
    try:
        sock.bind((iface, 0))
        for frame in frames:
            sock.send(frame)
    finally:
        sock.close()


def contains(frames: Sequence[bytes], needle: bytes) -> bool:
    """Did any frame carry ``needle`` (a forged frame, or a unique part of it)?"""
    return any(needle in frame for frame in frames)


def write_tap(tap: str, frames: Iterable[bytes]) -> None:
    """Write frames into a tap as its guest would (call inside the tap's namespace)."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", tap.encode(), IFF_TAP | IFF_NO_PI))
        # Attaching gives the tap its carrier; the bridge hears of it through
        # the kernel's linkwatch (up to a second later) and drops the port's
        # frames until then: wait for the port to forward (state 3).
        state = f"/sys/class/net/{tap}/brport/state"
        deadline = time.monotonic() + 10
        while os.path.exists(state) and time.monotonic() < deadline:
            with open(state) as handle:
                if handle.read().strip() == "3":
                    break
            time.sleep(0.02)
        for frame in frames:
            os.write(fd, frame)
    finally:
        os.close(fd)


def get(source: str, url: str, timeout: float) -> bytes:
    """An HTTP/1.0 GET sent from ``source`` (an address of this namespace); the body."""
    host, _, path = url.removeprefix("http://").partition("/")
    with socket.create_connection((host, 80), timeout, (source, 0)) as conn:
        conn.sendall(f"GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2]


def main(argv: Sequence[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command in ("tap", "send") and args:
        frames = [bytes.fromhex(frame) for frame in args[1:]]
        write_tap(args[0], frames) if command == "tap" else send(None, args[0], frames)
        return 0
    if command == "watch" and len(args) in (3, 4):
        watcher = Watcher(None, args[0])
        print("ready", flush=True)
        seen = watcher.until(args[1], float(args[2]))
        needle = bytes.fromhex(args[3]) if len(args) == 4 else b""
        for frame in seen or []:
            if needle in frame:
                print(frame.hex())
        return 0 if seen is not None else 1
    if command == "flood" and len(args) == 3:
        frame, deadline = bytes.fromhex(args[2]), time.monotonic() + float(args[1])
        while time.monotonic() < deadline:
            send(None, args[0], [frame] * 100)
            time.sleep(0.001)
        return 0
    if command == "get" and len(args) == 3:
        try:
            sys.stdout.write(get(args[0], args[1], float(args[2])).decode(errors="replace"))
        except OSError as exc:
            print(f"get: {exc}", file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
