"""The machine's RabbitMQ, reachable inside the lab at 192.168.56.200:5672.

Two socat processes and a unix socket, so that no namespace is connected to
the root namespace's network and nothing in the root namespace listens on
a lab address:

- on the machine: ``socat UNIX-LISTEN:<lab>/amqp.sock,fork TCP:127.0.0.1:5672``
  (it connects only to loopback; the broker sees a loopback client, so the
  guest account is accepted);
- in controller-1: ``socat TCP-LISTEN:5672,bind=<controller mgmt ip>,fork,
  reuseaddr UNIX-CONNECT:<lab>/amqp.sock`` (the lab directory is the same
  filesystem in every node's mount view).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable

from novanet.lab.procs import Launcher
from novanet.lab.state import LabPaths
from novanet.lab.topology import Topology

NAME = "amqp-relay"
AMQP_PORT = 5672
TCP_LISTEN = "0A"


def _proc_net_tcp_address(ip: str, port: int) -> str:
    # /proc/net/tcp prints the __be32 address as a host-order %08X.
    (value,) = struct.unpack("=I", socket.inet_aton(ip))
    return f"{value:08X}:{port:04X}"


def listening(pid: int, ip: str, port: int) -> bool:
    """True if the network namespace of ``pid`` has a TCP listener on ip:port."""
    wanted = _proc_net_tcp_address(ip, port)
    try:
        with open(f"/proc/{pid}/net/tcp", encoding="ascii") as handle:
            next(handle)
            return any(
                fields[1] == wanted and fields[3] == TCP_LISTEN
                for fields in (line.split() for line in handle)
            )
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return False


def _wait(predicate: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout} s")
        time.sleep(0.01)


def start(
    launcher: Launcher,
    paths: LabPaths,
    topology: Topology,
    broker_port: int = AMQP_PORT,
    timeout: float = 5.0,
) -> None:
    """Start both relays and wait until the controller-side one listens."""
    sock = paths.amqp_socket
    launcher.start(
        None,
        NAME,
        ["socat", f"UNIX-LISTEN:{sock},fork,unlink-early", f"TCP:127.0.0.1:{broker_port}"],
    )
    _wait(lambda: os.path.exists(sock), f"relay socket {sock}", timeout)
    controller = topology.controller
    ip = controller.management_ip
    record = launcher.start(
        controller.name,
        NAME,
        ["socat", f"TCP-LISTEN:{AMQP_PORT},bind={ip},fork,reuseaddr", f"UNIX-CONNECT:{sock}"],
    )
    _wait(lambda: listening(record.pid, ip, AMQP_PORT), f"relay on {ip}:{AMQP_PORT}", timeout)
