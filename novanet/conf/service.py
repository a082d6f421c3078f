"""Daemons: heartbeats and logging."""

from __future__ import annotations

from oslo_config import cfg

service_opts = [
    cfg.IntOpt(
        "report_interval",
        default=10,
        min=1,
        help="Seconds between a daemon's heartbeats into the services table. A SIGHUP "
        "applies a change from the next heartbeat on.",
    ),
    cfg.IntOpt(
        "service_down_time",
        default=60,
        min=1,
        help="Seconds without a heartbeat after which a service is shown as down "
        "(should be several report_interval).",
    ),
    cfg.StrOpt(
        "metrics_listen",
        default="",
        help="Where each daemon serves Prometheus metrics (/metrics) and its health "
        "(/healthz): ADDRESS or ADDRESS:PORT ([ADDRESS]:PORT for IPv6). Empty (the "
        "default): off. Without a port each daemon takes its own, so the daemons of "
        "one host can share this file: novanet-network 9781, novanet-compute 9782, "
        "novanet-metadata 9783. The endpoint has no authentication: bind it to a "
        "management or loopback address.",
    ),
    cfg.IntOpt(
        "periodic_task_timeout",
        default=300,
        min=10,
        help="Seconds after which a periodic task (heartbeat, iptables check, dnsmasq "
        "check, resync...) still running counts as stuck: /healthz reports it and the "
        "daemon stops pinging the systemd watchdog (WatchdogSec in the units), so "
        "systemd restarts it.",
    ),
    cfg.BoolOpt(
        "debug",
        short="d",
        default=False,
        help="Log at DEBUG level instead of INFO. A SIGHUP applies a change at once.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(service_opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", service_opts)]
