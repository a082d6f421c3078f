"""The HTTP server of novanet-metadata: eventlet.wsgi with limits a hostile guest cannot beat.

eventlet is imported inside the functions (nothing happens at import, and
only the daemon, which monkey-patches first, starts a server). Limits:

- one green thread per connection, at most ``max_connections`` at once
  (an eventlet GreenPool); further connections wait in the listen backlog;
- ``client_timeout``: the whole exchange of one request (request line,
  headers, reply), counted from the accept or the previous reply, must fit
  in it. eventlet's own ``socket_timeout`` is per recv() and a slowloris
  client sending a byte a second never trips it; an ``eventlet.Timeout``
  around each request does;
- request line at most ``max_request_line`` bytes (414); a header line at
  most 8 KiB and all headers at most 64 KiB (eventlet's MAX_HEADER_LINE and
  MAX_TOTAL_HEADER_SIZE: 400), at most 100 headers (http.client: 431);
- a request that announces a body gets its reply and the connection is
  closed: eventlet would otherwise read and discard the body to keep the
  connection alive, and the body is never wanted;
- eventlet's ``debug`` is off, so a 500 carries no traceback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any

from novanet.exception import NovanetError

LOG = logging.getLogger(__name__)

WsgiApp = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Limits:
    client_timeout: float = 10.0
    max_connections: int = 1000
    max_request_line: int = 8192
    backlog: int = 1024


class _WsgiLog:
    """eventlet.wsgi's logger: its per-request lines go to DEBUG, errors to WARNING."""

    def info(self, msg: str, *args: object, **_kw: object) -> None:
        LOG.debug(msg.rstrip("\n"), *args)

    def debug(self, msg: str, *args: object, **_kw: object) -> None:
        LOG.debug(msg.rstrip("\n"), *args)

    def error(self, msg: str, *args: object, **_kw: object) -> None:
        LOG.warning(msg.rstrip("\n"), *args)

    def write(self, msg: str, *args: object) -> None:
        LOG.debug(msg.rstrip("\n"), *args)


def _protocol(client_timeout: float) -> type:
    """An eventlet HttpProtocol with a deadline per request and no body draining."""
    import eventlet
    from eventlet import wsgi

    class Protocol(wsgi.HttpProtocol):  # type: ignore[misc]
        # Errors http.server answers itself (431 for >100 headers, 400 for a
        # malformed request line) say no more than the status: no HTML, no
        # Python version.
        server_version = "novanet-metadata"
        sys_version = ""
        error_message_format = "%(code)d %(message)s\n"
        error_content_type = "text/plain; charset=utf-8"

        def handle_one_request(self) -> None:
            # A green socket whose data is already there never yields to the
            # hub: one fast keep-alive client would be served back to back
            # while the other connections wait (p99 in the hundreds of ms).
            eventlet.sleep(0)
            finished = False
            # exception=False: the timer ends the with-block silently. Raised
            # inside eventlet's response code it is caught there instead
            # (its "except (Exception, eventlet.Timeout)"), which closes the
            # connection too.
            with eventlet.Timeout(client_timeout, False):
                super().handle_one_request()
                finished = True
            if not finished:
                LOG.debug(
                    "closing %s: no complete request within %.1f s",
                    self.client_address,
                    client_timeout,
                )
                self.close_connection = 1

        def get_environ(self) -> dict[str, Any]:
            env: dict[str, Any] = super().get_environ()
            # http.server turns a leading "//" into "/" (its open-redirect
            # fix, gh-87389) before eventlet sets RAW_PATH_INFO: take the
            # path from the request line itself, so "//" is refused as such.
            words = self.raw_requestline.decode("latin-1").split()
            if len(words) >= 2:
                env["RAW_PATH_INFO"] = words[1].split("?", 1)[0]
            return env

        def handle_one_response(self) -> None:
            length = self.headers.get("content-length")
            if self.headers.get("transfer-encoding") or (length not in (None, "", "0")):
                self.close_connection = 1
            super().handle_one_response()

    return Protocol


def _family(host: str) -> socket.AddressFamily:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        return infos[0][0]
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


class MetadataServer:
    """Serves ``app`` on ``host:port`` in a green thread until :meth:`stop`."""

    def __init__(self, app: WsgiApp, host: str, port: int, limits: Limits | None = None) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        self._sock: Any = None
        self._thread: Any = None
        self._pool: Any = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (the real port when ``port`` was 0)."""
        if self._sock is None:
            return (self.host, self.port)
        name = self._sock.getsockname()
        return (name[0], name[1])

    @property
    def serving(self) -> bool:
        """True while the accept loop runs (health checks watch it)."""
        return self._thread is not None and not self._thread.dead

    def listen(self) -> None:
        """Bind the address (idempotent); raises NovanetError if it cannot be bound.

        Clients that connect before :meth:`start` wait in the listen backlog.
        """
        import eventlet

        if self._sock is not None:
            return
        try:
            self._sock = eventlet.listen(
                (self.host, self.port), family=_family(self.host), backlog=self.limits.backlog
            )
        except (OSError, socket.gaierror) as exc:
            reason = exc.strerror or str(exc)
            raise NovanetError(
                f"cannot listen on {self.host}:{self.port} (metadata_listen/metadata_port): "
                f"{reason}"
            ) from None

    def start(self) -> None:
        """Bind (unless :meth:`listen` did) and serve in a green thread."""
        import eventlet
        from eventlet import wsgi

        self.listen()
        self._pool = eventlet.GreenPool(self.limits.max_connections)
        self._thread = eventlet.spawn(
            wsgi.server,
            self._sock,
            self.app,
            log=_WsgiLog(),
            custom_pool=self._pool,
            protocol=_protocol(self.limits.client_timeout),
            url_length_limit=self.limits.max_request_line,
            socket_timeout=self.limits.client_timeout,
            keepalive=True,
            log_x_forwarded_for=False,
            debug=False,
        )
        LOG.info("serving metadata on %s:%d", *self.address)

    def stop(self) -> None:
        """Stop accepting, drop the open connections and wait for the server thread."""
        import greenlet

        thread, pool = self._thread, self._pool
        self._thread = self._pool = None
        if thread is None:  # bound but never served (or stopped already)
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            return
        # Killing the accept loop runs eventlet's cleanup, which waits for
        # every connection; connections of slow clients are killed too, so
        # stopping takes no client_timeout.
        thread.kill()
        for green in list(pool.coroutines_running):
            green.kill()
        try:
            thread.wait()
        except greenlet.GreenletExit:
            pass
        if self._sock is not None:
            self._sock.close()
            self._sock = None
