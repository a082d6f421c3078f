"""novanet-metadata as a daemon object: the HTTP server and its heartbeat.

It serves on metadata_listen:metadata_port and reports its heartbeat into
the services table (``service list`` shows it as ``novanet-metadata``)
every report_interval seconds. It touches no firewall and needs no
privilege: it runs as its own unprivileged user (systemd/novanet-metadata.service).
The seed's ``nova-api-*`` chains - the ACCEPT of ``metadata_host:metadata_port``
- are installed by novanet-network, next to the 169.254.169.254 DNAT it
already owns (novanet.network.service).
"""

from __future__ import annotations

import ipaddress
import json
import logging

from oslo_config import cfg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from novanet import metrics as metrics_mod
from novanet.conf import loader
from novanet.db import services
from novanet.db.api import Database
from novanet.exception import NovanetError, UsageError
from novanet.metadata.app import MetadataApp
from novanet.metadata.lookup import InstanceLookup, find_by_address
from novanet.metadata.server import Limits, MetadataServer
from novanet.service.health import Check
from novanet.service.periodic import PeriodicRunner

LOG = logging.getLogger(__name__)

BINARY = "novanet-metadata"
TOPIC = "metadata"  # no RPC topic: the column names what it serves


def check_database(db: Database) -> None:
    """Fail at start, with one line, when the instances cannot be read (no schema, no server)."""
    try:
        find_by_address(db, "0.0.0.0")
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        url = make_url(db.url).render_as_string(hide_password=True)
        raise NovanetError(
            f"cannot read instances from the database {url} ([database] connection): {reason} "
            "(is it reachable and migrated with 'novanet-manage db sync'?)"
        ) from None


class MetadataDaemon:
    """The metadata service: its HTTP server and its heartbeat."""

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        *,
        db: Database,
        server: MetadataServer,
        periodic: PeriodicRunner | None = None,
        metrics: metrics_mod.Metrics | None = None,
    ) -> None:
        self.conf = conf
        self.db = db
        self.server = server
        self.periodic = periodic or PeriodicRunner(stuck_after=conf.periodic_task_timeout)
        self.metrics = metrics
        self.periodic.add(
            "heartbeat", conf.report_interval, self.heartbeat, option="report_interval"
        )
        if metrics is not None:
            metrics.add_collector(
                metrics_mod.FunctionCollector(
                    lambda: metrics_mod.periodic_families(self.periodic.tasks)
                )
            )

    def heartbeat(self) -> None:
        services.heartbeat(self.db, self.conf.host, BINARY, TOPIC)

    def start(self) -> None:
        # Everything that can fail on configuration fails before anything is served.
        check_database(self.db)
        self.server.listen()
        self.server.start()
        try:
            self.heartbeat()
        except SQLAlchemyError as exc:  # read-only database: it serves, service list says so
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            LOG.error("heartbeat not recorded (is the database writable for us?): %s", reason)
        self.periodic.start()

    def health(self) -> list[Check]:
        checks = list(self.periodic.checks())
        if self.server.serving:
            checks.append(Check("http", True, "serving on %s:%d" % self.server.address))
        else:
            checks.append(Check("http", False, "the server thread ended", fatal=True))
        return checks

    def stop(self) -> None:
        self.server.stop()
        self.periodic.stop()
        self.db.dispose()


def listen_address(conf: cfg.ConfigOpts) -> str:
    """Where to listen: metadata_listen, except that with a loopback metadata_host
    requests arrive REDIRECTed to the bridge's own address (network/rules.py
    metadata_forward), which a loopback socket would never see."""
    listen = str(conf.metadata_listen)
    if _is_loopback(conf.metadata_host) and _is_loopback(listen):
        LOG.info("metadata_host %s is loopback: listening on 0.0.0.0", conf.metadata_host)
        return "0.0.0.0"
    return listen


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def load_vendor_data(path: str | None) -> object:
    """vendordata_jsonfile_path's JSON ({} without one); one line on any problem."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise UsageError(f"vendordata_jsonfile_path {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"vendordata_jsonfile_path {path} is not JSON: {exc}") from None


def build(conf: cfg.ConfigOpts, _sources: list[loader.Source]) -> MetadataDaemon:
    """The daemon for ``conf`` (the entry point's factory for novanet.service.daemon.run)."""
    vendor_data = load_vendor_data(conf.vendordata_jsonfile_path)
    db = Database.from_conf(conf)
    lookup = InstanceLookup(db, cache_ttl=conf.metadata_cache_ttl)
    app = MetadataApp(lookup, dhcp_domain=conf.dhcp_domain or "", vendor_data=vendor_data)
    limits = Limits(
        client_timeout=conf.metadata_client_timeout,
        max_connections=conf.metadata_max_connections,
    )
    server = MetadataServer(app, listen_address(conf), conf.metadata_port, limits)
    metrics = metrics_mod.Metrics(BINARY) if conf.metrics_listen else None
    return MetadataDaemon(conf, db=db, server=server, metrics=metrics)
