"""Daemons: heartbeats and logging."""

from __future__ import annotations

from oslo_config import cfg

service_opts = [
    cfg.IntOpt(
        "report_interval",
        default=10,
        min=1,
        help="Seconds between a daemon's heartbeats into the services table.",
    ),
    cfg.IntOpt(
        "service_down_time",
        default=60,
        min=1,
        help="Seconds without a heartbeat after which a service is shown as down "
        "(should be several report_interval).",
    ),
    cfg.BoolOpt(
        "debug",
        short="d",
        default=False,
        help="Log at DEBUG level instead of INFO.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(service_opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", service_opts)]
