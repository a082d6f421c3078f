"""novanet-metadata as a daemon object: iptables of binary ``api``, then the HTTP server.

At start it converges its iptables chains (the seed's nova-api-* chains in
filter and nat, with ``-A nova-api-INPUT -d <metadata_host>/32 -p tcp -m tcp
--dport <metadata_port> -j ACCEPT``, or nova's ``-m addrtype --dst-type
LOCAL`` for a loopback metadata_host) and keeps them repaired every
iptables_check_interval seconds, and serves on metadata_listen:metadata_port
(bound before the rules are written, so a wrong address changes nothing).
On stop the server ends; the rules stay (as the other daemons' do), so a
restart does not drop guests' requests at the firewall.
"""

from __future__ import annotations

import ipaddress
import json
import logging

from oslo_config import cfg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from novanet.conf import loader
from novanet.db.api import Database
from novanet.exception import NovanetError, UsageError
from novanet.linux.iptables import IptablesManager
from novanet.metadata.app import MetadataApp
from novanet.metadata.lookup import InstanceLookup, find_by_address
from novanet.metadata.server import Limits, MetadataServer
from novanet.network import rules
from novanet.service.periodic import PeriodicRunner

LOG = logging.getLogger(__name__)

BINARY = "api"


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
    """The metadata service: its firewall rules and its HTTP server."""

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        *,
        db: Database,
        iptables: IptablesManager,
        server: MetadataServer,
        periodic: PeriodicRunner | None = None,
    ) -> None:
        self.conf = conf
        self.db = db
        self.iptables = iptables
        self.server = server
        self.periodic = periodic or PeriodicRunner()

    def start(self) -> None:
        # Everything that can fail on configuration fails before the kernel is touched.
        check_database(self.db)
        self.server.listen()
        rules.declare(
            self.iptables.ipv4,
            rules.metadata_rules(
                metadata_host=self.conf.metadata_host, metadata_port=self.conf.metadata_port
            ),
        )
        self.iptables.full_sync()
        self.periodic.add(
            "iptables-check", self.conf.iptables_check_interval, self.iptables.check_and_repair
        )
        self.periodic.start()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.periodic.stop()
        self.iptables.close()
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
    return MetadataDaemon(
        conf, db=db, iptables=IptablesManager.from_conf(conf, BINARY), server=server
    )
