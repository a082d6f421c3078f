"""The daemon object: serves, reports its heartbeat, touches no firewall, fails in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from novanet.conf import new_conf
from novanet.db import services
from novanet.db.api import Database
from novanet.exception import NovanetError
from novanet.metadata import daemon as metadata_daemon
from novanet.metadata.daemon import MetadataDaemon


class FakeServer:
    """Stands in for MetadataServer: remembers whether it serves."""

    address = ("192.168.56.200", 8775)

    def __init__(self, fail: str | None = None) -> None:
        self.serving = False
        self.bound = False
        self.starts = 0
        self.fail = fail

    def listen(self) -> None:
        if self.fail:
            raise NovanetError(self.fail)
        self.bound = True

    def start(self) -> None:
        self.listen()
        self.serving = True
        self.starts += 1

    def stop(self) -> None:
        self.serving = self.bound = False


def make(db: Database, fail: str | None = None) -> tuple[MetadataDaemon, FakeServer]:
    conf = new_conf()
    conf([], default_config_files=[])
    conf.set_override("metadata_host", "192.168.56.200")
    conf.set_override("host", "controller-1")
    server = FakeServer(fail)
    return MetadataDaemon(conf, db=db, server=server), server  # type: ignore[arg-type]


def test_start_serves_and_reports_its_heartbeat(db: Database) -> None:
    daemon, server = make(db)
    daemon.start()
    try:
        assert server.serving
        rows = [(s.host, s.binary, s.topic) for s in services.list_services(db)]
        assert rows == [("controller-1", "novanet-metadata", "metadata")]
        assert all(check.ok for check in daemon.health())
        server.serving = False  # the accept loop died
        assert [c.name for c in daemon.health() if c.fatal and not c.ok] == ["http"]
    finally:
        daemon.stop()
    assert not server.serving


def test_it_has_no_firewall_to_touch(db: Database) -> None:
    daemon, _server = make(db)
    assert not hasattr(daemon, "iptables")


def test_unmigrated_database_stops_the_start(tmp_path: Path) -> None:
    empty = Database(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    daemon, server = make(empty)
    with pytest.raises(NovanetError, match=r"cannot read instances from the database sqlite:///"):
        daemon.start()
    assert not server.serving
    empty.dispose()


def test_unbindable_address_stops_the_start(db: Database) -> None:
    daemon, server = make(db, fail="cannot listen on 10.9.9.9:8775")
    with pytest.raises(NovanetError, match="cannot listen"):
        daemon.start()
    assert not server.serving
    assert services.list_services(db) == []


def test_build_wires_the_configuration(tmp_path: Path, db: Database) -> None:
    conf = new_conf()
    conf([], default_config_files=[])
    # An override in group [database] would outlive this ConfigOpts (oslo.config
    # keeps it on the module-level OptGroup): clear it again.
    conf.set_override("connection", db.url, group="database")
    conf.set_override("metadata_host", "10.9.9.9")
    conf.set_override("metadata_port", 18775)
    conf.set_override("metadata_client_timeout", 3.5)
    conf.set_override("metadata_max_connections", 77)
    conf.set_override("report_interval", 7)
    try:
        built = metadata_daemon.build(conf, [])
    finally:
        conf.clear_override("connection", group="database")
    assert (built.server.host, built.server.port) == ("10.9.9.9", 18775)
    assert (built.server.limits.client_timeout, built.server.limits.max_connections) == (3.5, 77)
    assert [(t.name, t.interval, t.option) for t in built.periodic.tasks] == [
        ("heartbeat", 7, "report_interval")
    ]
    assert built.metrics is None  # metrics_listen is off by default
    built.db.dispose()
