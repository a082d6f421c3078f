"""The machine's RabbitMQ for tests: a private vhost per test run, relays into namespaces.

A vhost per run keeps oslo.messaging's queues (``network``,
``compute.compute-1``) apart from a lab's or another run's. Daemons in a
namespace reach the broker through a unix-socket relay (PLATFORM.md): socat
in the root namespace connects only to 127.0.0.1, socat in the namespace
listens on that namespace's own loopback.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.lib.netns import Namespace

HOST = "127.0.0.1"
PORT = 5672


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


class Vhost:
    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"novanet-test-{os.getpid()}"
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    def url(self, host: str = HOST) -> str:
        return f"rabbit://guest:guest@{host}:{PORT}/{self.name}"

    def delete(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.name], capture_output=True, timeout=60)


class Relay:
    """Broker reachable at 127.0.0.1:5672 inside ``ns``."""

    def __init__(self, ns: Namespace, workdir: Path) -> None:
        self.sock = workdir / "amqp.sock"
        self.outer = subprocess.Popen(
            ["socat", f"UNIX-LISTEN:{self.sock},fork,unlink-early", f"TCP:{HOST}:{PORT}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: self.sock.exists(), "relay socket")
        self.inner = ns.popen(
            ["socat", f"TCP-LISTEN:{PORT},bind=127.0.0.1,fork,reuseaddr", f"UNIX-CONNECT:{self.sock}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: _listening(ns), "relay listener")

    def stop(self) -> None:
        for proc in (self.inner, self.outer):
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def _listening(ns: Namespace) -> bool:
    out = ns.run(["cat", "/proc/net/tcp"], check=False).stdout
    return any(line.split()[1] == "0100007F:1628" and line.split()[3] == "0A" for line in out.splitlines()[1:])


def _wait(predicate, what: str, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout} s")
        time.sleep(0.02)


def transport(vhost: Vhost):  # type: ignore[no-untyped-def]
    """An oslo.messaging transport on ``vhost`` from the root namespace (call cleanup())."""
    from novanet import conf as novanet_conf
    from novanet.rpc import transport as rpc

    conf = novanet_conf.new_conf()
    conf([])
    rpc.register_opts(conf)
    conf.set_override("transport_url", vhost.url())
    return rpc.get_transport(conf)
