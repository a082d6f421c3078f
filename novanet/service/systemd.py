"""systemd's notify protocol (sd_notify(3)) without libsystemd: READY, RELOADING, WATCHDOG.

systemd passes ``NOTIFY_SOCKET`` (a unix datagram socket; a leading ``@``
means the abstract namespace) to a ``Type=notify`` service and, with
``WatchdogSec=``, ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, the process meant).
Each message is one datagram of ``KEY=VALUE`` lines. Without NOTIFY_SOCKET
(started by hand, in the lab, in tests) every call is a no-op.

The variables are removed from the environment once read: dnsmasq and the
dhcp-script, started by the daemon, must not talk to systemd on its behalf
(with the default ``NotifyAccess=main`` systemd would drop their messages
anyway, with a warning in the journal).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

LOG = logging.getLogger(__name__)

_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Talks to the service manager that started us, if any."""

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_usec = _watchdog_usec(env)
        for name in _VARIABLES:
            env.pop(name, None)
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the timeout, as sd_watchdog_enabled(3) says)."""
        if not self.enabled or not self.watchdog_usec:
            return None
        return self.watchdog_usec / 2_000_000

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram; False if not sent (logged once)."""
        if self.address is None:
            return False
        message = "\n".join(fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._warned:
                LOG.warning("cannot notify systemd on %s: %s", self.address, exc.strerror)
                self._warned = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract socket
    if value.startswith("/"):
        return value
    return None  # vsock and other forms systemd may use: not for a host daemon


def _watchdog_usec(env: MutableMapping[str, str]) -> int | None:
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (we were exec'd by a wrapper)
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None
