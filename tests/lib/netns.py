"""Throwaway network namespaces for functional tests.

Names are unique to the test run (``nt<pid>x<n>``) so parallel runs and
leftovers of a crashed run never collide; every namespace is removed after
its test, also after a failure, and processes still running inside it
(started by the test) are killed by pid first. Nothing here touches the
root namespace's interfaces.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from typing import Any

_COUNTER = itertools.count()
PREFIX = f"nt{os.getpid()}x"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Namespace:
    """A network namespace owned by one test."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(
        self, cmd: Sequence[str], check: bool = True, timeout: float = 60, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and return the completed process."""
        result = subprocess.run(
            ["ip", "netns", "exec", self.name, *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} in {self.name} failed ({result.returncode}): "
                f"{result.stdout}{result.stderr}"
            )
        return result

    def popen(self, cmd: Sequence[str], **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], text=True, **kw)  # type: ignore[call-overload]

    def popen_shared(self, cmd: Sequence[str], **kw: object) -> subprocess.Popen[str]:
        """Like popen, but with the machine's mount view (``nsenter --net``).

        ``ip netns exec`` gives the program a private mount namespace, so the
        network namespaces *it* creates (a compute agent's instance
        namespaces) would be invisible to everybody else.
        """
        argv = ["nsenter", f"--net=/run/netns/{self.name}", *cmd]
        return subprocess.Popen(argv, text=True, **kw)  # type: ignore[call-overload]

    def pids(self) -> list[int]:
        out = _ip("netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split()]

    def destroy(self) -> None:
        for attempt in range(50):
            pids = self.pids()
            if not pids:
                break
            sig = signal.SIGTERM if attempt < 10 else signal.SIGKILL
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        _ip("netns", "delete", self.name, check=False)


def create(tag: str = "") -> Namespace:
    name = f"{PREFIX}{next(_COUNTER)}{tag}"
    _ip("netns", "add", name)
    ns = Namespace(name)
    ns.run(["ip", "link", "set", "lo", "up"])
    return ns


def cleanup_leftovers() -> None:
    """Remove namespaces of this run that a crashed test left behind."""
    out = _ip("netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX):
            Namespace(name).destroy()


def veth_between(a: Namespace, a_if: str, b: Namespace, b_if: str) -> None:
    """A veth pair with one end in each namespace (created inside ``a``)."""
    a.run(["ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name])
    a.run(["ip", "link", "set", a_if, "up"])
    b.run(["ip", "link", "set", b_if, "up"])


def namespaces(count: int, tag: str = "") -> Iterator[Namespace]:
    for _ in range(count):
        yield create(tag)
