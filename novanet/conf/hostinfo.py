"""Facts about this host used for option defaults (read at load, never at import)."""

from __future__ import annotations

import fcntl
import socket
import struct

_SIOCGIFADDR = 0x8915


def _interface_ipv4(ifname: str) -> str | None:
    # An ioctl on an unconnected UDP socket: reads the kernel's table, sends nothing.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(
                sock.fileno(), _SIOCGIFADDR, struct.pack("256s", ifname[:15].encode())
            )
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def default_route_interface(route_table: str = "/proc/net/route") -> str | None:
    """Name of the interface holding the IPv4 default route, if any."""
    try:
        with open(route_table, encoding="ascii") as handle:
            next(handle, None)
            for line in handle:
                fields = line.split()
                if len(fields) > 2 and fields[1] == "00000000":
                    return fields[0]
    except OSError:
        return None
    return None


def default_ipv4() -> str:
    """my_ip's default: the default-route interface's address, else 127.0.0.1."""
    ifname = default_route_interface()
    if ifname:
        address = _interface_ipv4(ifname)
        if address:
            return address
    return "127.0.0.1"
