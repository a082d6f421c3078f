"""The systemd units as the tests use them: their capability sets, a notify socket.

Tests start the daemons with exactly the ``CapabilityBoundingSet=`` and
``NoNewPrivileges=`` their unit file declares (``setpriv``), so a capability
dropped from a unit that a daemon needs fails a test.
"""

from __future__ import annotations

import socket
from pathlib import Path

from tests.lib.paths import ROOT

UNITS = ROOT / "systemd"


def directives(unit: str, name: str) -> list[str]:
    """Every value of ``name=`` in the unit (continued lines are not used in ours)."""
    values = []
    for line in (UNITS / unit).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            values.append(value.strip())
    return values


def capabilities(unit: str) -> list[str]:
    """The unit's bounding set, as setpriv spells capabilities (``net_admin``)."""
    caps: list[str] = []
    for value in directives(unit, "CapabilityBoundingSet"):
        caps += [c.lower().removeprefix("cap_") for c in value.split()]
    return caps


def setpriv(unit: str) -> list[str]:
    """A command prefix giving a root process the unit's limits."""
    bounding = ",".join(["-all", *(f"+{c}" for c in capabilities(unit))])
    prefix = ["setpriv", f"--bounding-set={bounding}", "--inh-caps=-all"]
    if directives(unit, "NoNewPrivileges") == ["yes"]:
        prefix.append("--no-new-privs")
    return [*prefix, "--"]


def sandboxed(unit: str) -> list[str]:
    """setpriv's limits, then the unit's system-call filter and W^X (tests/lib/sandbox.py).

    The command must run with the source tree as working directory.
    """
    import sys

    return [*setpriv(unit), sys.executable, "-m", "tests.lib.sandbox", unit, "--"]


class NotifySocket:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        message = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append(message)
        return message

    def wait_for(self, key: str, timeout: float = 30.0) -> dict[str, str]:
        """The next message carrying ``key`` (earlier ones are kept in ``messages``)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(max(0.05, deadline - time.monotonic()))
            if message is not None and key in message:
                return message
        raise AssertionError(f"no {key} on the notify socket after {timeout} s: {self.messages}")

    def close(self) -> None:
        self.sock.close()
