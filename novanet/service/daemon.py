"""The common life of a novanet daemon: configure, start, serve, reload on SIGHUP, stop.

A daemon object has ``start()`` (converge the host, start RPC and periodic
tasks; raise NovanetError if it cannot run) and ``stop()`` (stop serving;
kernel state, dnsmasq and devices stay, so instances keep working while the
daemon restarts). It may also have ``periodic`` (its PeriodicRunner: task
intervals become reloadable), ``metrics`` (a :class:`novanet.metrics.Metrics`
when ``metrics_listen`` is set) and ``health()`` (its checks).

Under systemd (``Type=notify``) the daemon says READY=1 once ``start()``
returned: the host is converged and it serves whatever does not need the
broker (dnsmasq, the lease socket, the metadata port); RPC follows as soon
as RabbitMQ answers, without holding the start up (a broker outage must not
become a restart loop). With ``WatchdogSec=`` the main loop pings the
watchdog while no fatal health check fails.

SIGTERM/SIGINT stop the daemon; SIGHUP re-reads the configuration
(:mod:`novanet.service.reload`) and never stops it. Entry points call
:func:`novanet.service.green.monkey_patch` before importing this module.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from oslo_config import cfg

from novanet import __version__
from novanet import conf as novanet_conf
from novanet.conf import loader
from novanet.exception import NovanetError
from novanet.service import health, logs
from novanet.service.args import parse_args
from novanet.service.httpd import StatusServer, parse_listen
from novanet.service.reload import Applier, Reloader
from novanet.service.systemd import Notifier

LOG = logging.getLogger(__name__)

LOOP_TICK = 1.0
# Options read where they are used (not captured at start): a SIGHUP can
# change them in the running configuration.
READ_AT_USE = ("service_down_time", "instance_create_timeout")


class Daemon(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class _Signals:
    """Signal handlers only set flags; the main loop acts on them."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.hup = threading.Event()
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        LOG.info("received %s, stopping (bridges, rules and dnsmasq stay in place)", name)
        self.stop.set()

    def _on_hup(self, _signum: int, _frame: object) -> None:
        self.hup.set()


def run(
    program: str,
    description: str,
    build: Callable[[cfg.ConfigOpts, list[loader.Source]], Daemon],
    argv: Sequence[str] | None = None,
) -> int:
    """Run a daemon until SIGTERM/SIGINT; returns the exit code."""
    args = parse_args(program, description, argv)
    signals = _Signals()  # first: a SIGHUP during the start must not kill us
    notifier = Notifier()
    conf = cfg.CONF
    novanet_conf.register_opts(conf)
    logs.setup(program, debug=args.debug)
    try:
        sources = loader.load(conf, list(args.config_sources or []), prog=program)
        listen = parse_listen(conf.metrics_listen, program)
    except (loader.ConfigError, NovanetError) as exc:
        sys.stderr.write(logs.error_line(program, str(exc)))
        return 2
    if conf.debug or args.debug:
        logs.set_debug(True)
    supervisor = Supervisor(program, conf, sources, notifier, signals, args.debug)
    try:
        daemon = build(conf, sources)
        supervisor.attach(daemon, listen)
        daemon.start()
    except NovanetError as exc:
        supervisor.abort()
        sys.stderr.write(logs.error_line(program, str(exc)))
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - one line for the operator, details at debug
        supervisor.abort()
        LOG.debug("start failed", exc_info=True)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        sys.stderr.write(logs.error_line(program, f"cannot start: {reason}"))
        return 1
    return supervisor.serve()


class Supervisor:
    """The main loop: SIGHUP, the watchdog, the status line, the status server."""

    def __init__(
        self,
        program: str,
        conf: cfg.ConfigOpts,
        sources: list[loader.Source],
        notifier: Notifier,
        signals: _Signals,
        debug_flag: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.program = program
        self.conf = conf
        self.notifier = notifier
        self.signals = signals
        self.clock = clock
        self.daemon: Any = None
        self.server: StatusServer | None = None
        self.started = False
        self._debug_flag = debug_flag
        self._sources = sources
        self._last_status = ""
        self._last_ping = float("-inf")
        self._warned_unhealthy = False

    def attach(self, daemon: Any, listen: tuple[str, int] | None) -> None:
        self.daemon = daemon
        if listen is not None:
            self.server = StatusServer(listen, getattr(daemon, "metrics", None), self.report)
            self.server.start()

    def abort(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.notifier.close()

    def report(self) -> health.Report:
        sources: list[health.HealthSource] = [self._own_checks]
        checks = getattr(self.daemon, "health", None)
        if checks is not None:
            sources.append(checks)
        return health.collect(*sources)

    def _own_checks(self) -> Iterable[health.Check]:
        yield health.Check("start", self.started, "done" if self.started else "starting")
        if self.server is not None:
            yield health.thread_check("status server", self.server.thread, required=True)

    def appliers(self) -> dict[str, Applier]:
        def debug(_name: str, value: Any) -> None:
            logs.set_debug(bool(value) or self._debug_flag)

        result: dict[str, Applier] = {"debug": debug}
        for name in READ_AT_USE:
            result[name] = lambda _n, _v: None
        periodic = getattr(self.daemon, "periodic", None)
        for task in getattr(periodic, "tasks", []):
            if task.option:
                result[task.option] = periodic.set_interval  # type: ignore[union-attr]
        return result

    def serve(self) -> int:
        self.started = True
        LOG.info("%s %s started", self.program, __version__)
        report = self.report()
        self.notifier.ready(status=report.summary())
        self._last_status = report.summary()
        reloader = Reloader(self.conf, self._sources, self.program, self.appliers())
        tick = LOOP_TICK
        if self.notifier.watchdog_interval is not None:
            tick = min(tick, self.notifier.watchdog_interval / 2)
        while not self.signals.stop.wait(tick):
            if self.signals.hup.is_set():
                self.signals.hup.clear()
                self.notifier.reloading()
                reloader.on_sighup()
                self.notifier.ready()
            self.tick()
        self.notifier.stopping()
        try:
            self.daemon.stop()
        except Exception:  # noqa: BLE001 - we are exiting anyway
            LOG.exception("error while stopping")
        self.abort()
        LOG.info("%s stopped", self.program)
        return 0

    def tick(self) -> None:
        """Status line on change; a watchdog ping when due and no fatal check fails."""
        report = self.report()
        summary = report.summary()
        if summary != self._last_status:
            self._last_status = summary
            self.notifier.status(summary)
            if report.healthy:
                LOG.info("healthy again")
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        if not report.alive:
            if not self._warned_unhealthy:
                LOG.error("not pinging the systemd watchdog (systemd will restart us): %s", summary)
                self._warned_unhealthy = True
            return
        self._warned_unhealthy = False
        now = self.clock()
        if now - self._last_ping >= interval:
            self.notifier.watchdog()
            self._last_ping = now
