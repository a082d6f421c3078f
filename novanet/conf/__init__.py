"""novanet's configuration: oslo.config options, one module per area.

Nothing is registered at import. A program builds or takes a ConfigOpts,
calls :func:`register_opts` and then :func:`novanet.conf.loader.load`.
"""

from __future__ import annotations

from oslo_config import cfg

from novanet.conf import (
    compute,
    database,
    dhcp,
    firewall,
    floating,
    metadata,
    network,
    paths,
    rpc,
    service,
)

_AREAS = (paths, network, floating, dhcp, firewall, compute, metadata, service, database, rpc)


def register_opts(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    """Register every novanet option on ``conf`` (idempotent) and return it."""
    for area in _AREAS:
        area.register_opts(conf)
    return conf


def new_conf() -> cfg.ConfigOpts:
    """A private ConfigOpts with every novanet option registered (for tests and tools)."""
    return register_opts(cfg.ConfigOpts())
