"""Health of a daemon: what /healthz shows and what decides the systemd watchdog.

Each daemon lists :class:`Check` results. A failed check marks the daemon
unhealthy (``/healthz`` answers 503 naming it); only a failed *fatal* check
stops the watchdog pings, so that systemd restarts the daemon. Fatal means
a restart can help: a periodic task stuck for minutes, a server thread that
died. A broker or database that is away is not fatal: a restarted daemon
would find it away too, and meanwhile dnsmasq, the rules and the lease
socket keep working.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    fatal: bool = False

    def __str__(self) -> str:
        state = "ok" if self.ok else ("FATAL" if self.fatal else "failing")
        return f"{self.name}: {state}" + (f" ({self.detail})" if self.detail else "")


HealthSource = Callable[[], Iterable[Check]]


@dataclasses.dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def healthy(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def alive(self) -> bool:
        """False when a fatal check failed: the watchdog stops pinging."""
        return all(c.ok or not c.fatal for c in self.checks)

    def summary(self) -> str:
        failing = [str(c) for c in self.checks if not c.ok]
        return "healthy" if not failing else "; ".join(failing)

    def text(self) -> str:
        head = "ok" if self.healthy else ("failing" if self.alive else "fatal")
        return head + "\n" + "".join(f"{c}\n" for c in self.checks)


def collect(*sources: HealthSource) -> Report:
    checks: list[Check] = []
    for source in sources:
        try:
            checks.extend(source())
        except Exception as exc:  # noqa: BLE001 - a broken check is itself a finding
            checks.append(Check("health-check", False, f"{type(exc).__name__}: {exc}"))
    return Report(tuple(checks))


def thread_check(name: str, thread: object | None, *, required: bool) -> Check:
    """A server thread: it must be alive once started (fatal when it died)."""
    alive = bool(thread is not None and getattr(thread, "is_alive", lambda: False)())
    if alive:
        return Check(name, True, "running")
    if thread is None and not required:
        return Check(name, True, "not started yet")
    return Check(name, False, "its thread ended", fatal=True)
