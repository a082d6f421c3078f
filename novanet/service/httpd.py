"""The status endpoint of a daemon: ``/metrics`` (Prometheus) and ``/healthz``.

Served on ``metrics_listen`` (off by default) by a small threaded HTTP
server: green threads in the daemons, so a slow scraper holds no OS thread.
``/healthz`` answers 200 and ``ok`` when every check passes, else 503 and
the failing checks, one per line (see :mod:`novanet.service.health`).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from novanet.exception import NovanetError
from novanet.metrics import Metrics
from novanet.service.health import Report

LOG = logging.getLogger(__name__)

# Without a port in metrics_listen each daemon has its own, so the daemons of
# one controller can share a configuration file.
DEFAULT_PORTS = {"novanet-network": 9781, "novanet-compute": 9782, "novanet-metadata": 9783}


def parse_listen(value: str, program: str) -> tuple[str, int] | None:
    """``ADDRESS[:PORT]`` (``[v6]:PORT`` for IPv6) -> (address, port); None when off.

    Port 0 takes any free port (the log line says which): for tests.
    """
    value = value.strip()
    if not value:
        return None
    host, port = value, DEFAULT_PORTS.get(program, 9780)
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], value)
    elif value.count(":") == 1:
        host, _, raw = value.partition(":")
        port = _port(raw, value)
    return host or "0.0.0.0", port


def _port(raw: str, value: str) -> int:
    if not raw.isdigit() or not 0 <= int(raw) < 65536:
        raise NovanetError(f"metrics_listen {value!r}: the port must be a number 0-65535")
    return int(raw)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics" and self.server.metrics is not None:
            self._send(200, self.server.metrics.render(), self.server.metrics.content_type)
        elif path == "/healthz":
            report = self.server.health()
            self._send(200 if report.healthy else 503, report.text().encode(), "text/plain")
        else:
            self._send(404, b"not found: try /metrics or /healthz\n", "text/plain")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # one line per scrape would drown the daemon's own log


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    metrics: Metrics | None
    health: Callable[[], Report]


class _Server6(_Server):
    address_family = socket.AF_INET6


class StatusServer:
    def __init__(
        self, address: tuple[str, int], metrics: Metrics | None, health: Callable[[], Report]
    ) -> None:
        self.address = address
        self._metrics = metrics
        self._health = health
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind (raises NovanetError with one line) and serve in a thread."""
        host, port = self.address
        server_class = _Server6 if ":" in host else _Server
        try:
            server = server_class((host, port), _Handler)
        except OSError as exc:
            raise NovanetError(
                f"cannot serve metrics on {host}:{port} (metrics_listen): {exc.strerror}"
            ) from None
        server.metrics = self._metrics
        server.health = self._health
        self._server = server
        self.address = (host, int(server.server_address[1]))  # the real port when 0 was asked
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.5,), name="status-http", daemon=True
        )
        self._thread.start()
        LOG.info("serving /metrics and /healthz on %s:%d", *self.address)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
