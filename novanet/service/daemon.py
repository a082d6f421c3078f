"""The common life of a novanet daemon: configure, start, serve, stop on SIGTERM.

A daemon object has ``start()`` (converge the host, start RPC and periodic
tasks; raise NovanetError if it cannot run) and ``stop()`` (stop serving;
kernel state, dnsmasq and devices stay, so instances keep working while the
daemon restarts). Entry points call :func:`novanet.service.green.monkey_patch`
before importing this module.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from oslo_config import cfg

from novanet import conf as novanet_conf
from novanet.conf import loader
from novanet.exception import NovanetError
from novanet.service import logs

LOG = logging.getLogger(__name__)


class Daemon(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def parse_args(program: str, description: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=program, description=description)
    loader.add_config_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level")
    return parser.parse_args(argv)


def run(
    program: str,
    description: str,
    build: Callable[[cfg.ConfigOpts, list[loader.Source]], Daemon],
    argv: Sequence[str] | None = None,
) -> int:
    """Run a daemon until SIGTERM/SIGINT; returns the exit code."""
    args = parse_args(program, description, argv)
    conf = cfg.CONF
    novanet_conf.register_opts(conf)
    logs.setup(program, debug=args.debug)
    try:
        sources = loader.load(conf, list(args.config_sources or []), prog=program)
    except loader.ConfigError as exc:
        sys.stderr.write(f"{program}: error: {exc}\n")
        return 2
    if conf.debug or args.debug:
        logs.setup(program, debug=True)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        LOG.info("received %s, stopping (bridges, rules and dnsmasq stay in place)", name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        daemon = build(conf, sources)
        daemon.start()
    except NovanetError as exc:
        LOG.error("cannot start: %s", exc)
        sys.stderr.write(f"{program}: error: {exc}\n")
        return exc.exit_code
    LOG.info("%s started", program)
    while not stopping.wait(1.0):
        pass
    try:
        daemon.stop()
    except Exception:  # noqa: BLE001 - we are exiting anyway
        LOG.exception("error while stopping")
    LOG.info("%s stopped", program)
    return 0
