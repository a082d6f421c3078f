"""The unix socket on which novanet-network takes lease events from novanet-dhcpbridge.

One JSON object per line in each direction. Plain ``socketserver`` threads:
under the daemon's eventlet patching they are green threads.
"""

from __future__ import annotations

import json
import logging
import os
import socketserver
import threading
from collections.abc import Callable
from typing import Any

LOG = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]
MAX_REQUEST = 4096


class _RequestHandler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST)
        try:
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ValueError("not an object")
            reply = self.server.callback(event)
        except ValueError as exc:
            reply = {"ok": False, "code": 2, "error": f"malformed request: {exc}"}
            LOG.warning("refused lease event %r: %s", line[:200], reply["error"])
        except Exception as exc:  # noqa: BLE001 - the script must get an answer
            LOG.exception("lease event %r failed", line[:200])
            reply = {"ok": False, "code": 1, "error": str(exc)}
        else:
            if not reply.get("ok") and reply.get("code") == 2:
                # Garbage from whoever can reach the socket: one line, no traceback.
                LOG.warning("refused lease event %r: %s", line[:200], reply.get("error"))
        self.wfile.write(json.dumps(reply).encode() + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    callback: Handler


class LeaseEventServer:
    """Listens on ``path`` (mode 0600) and hands each event to ``callback``."""

    def __init__(self, path: str, callback: Handler) -> None:
        self.path = path
        self.callback = callback
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            os.unlink(self.path)  # a previous run's socket
        except FileNotFoundError:
            pass
        old_umask = os.umask(0o177)
        try:
            server = _Server(self.path, _RequestHandler)
        finally:
            os.umask(old_umask)
        server.callback = self.callback
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="lease-events", daemon=True
        )
        self._thread.start()

    @property
    def thread(self) -> threading.Thread | None:
        """The accepting thread once started (health checks watch it)."""
        return self._thread

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
