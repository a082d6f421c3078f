"""The daemon object on the fake iptables: the seed's nova-api chains, repair, start/stop."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from novanet.conf import new_conf
from novanet.db.api import Database
from novanet.exception import NovanetError
from novanet.linux.fakes.iptables import FakeIptables
from novanet.linux.iptables import IptablesManager
from novanet.metadata import daemon as metadata_daemon
from novanet.metadata.daemon import MetadataDaemon
from tests.lib.paths import SEED


class FakeServer:
    """Stands in for MetadataServer: remembers whether it serves."""

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


def api_lines(listing: list[str]) -> list[str]:
    return [line for line in listing if "nova-api" in line]


def make(
    db: Database, interval: int = 10, fail: str | None = None
) -> tuple[MetadataDaemon, FakeIptables, FakeServer]:
    conf = new_conf()
    conf([], default_config_files=[])
    conf.set_override("metadata_host", "192.168.56.200")
    conf.set_override("iptables_check_interval", interval)
    fake = FakeIptables()
    server = FakeServer(fail)
    daemon = MetadataDaemon(
        conf, db=db, iptables=IptablesManager("api", fake, prefix="nova"), server=server  # type: ignore[arg-type]
    )
    return daemon, fake, server


def test_start_writes_the_seed_nova_api_chains(db: Database) -> None:
    daemon, fake, server = make(db)
    daemon.start()
    try:
        assert server.serving
        for table in ("filter", "nat"):
            seed = (SEED / f"controller-iptables-{table}.txt").read_text().splitlines()
            assert api_lines(fake.listing(table)) == api_lines(seed), table
        assert (
            "-A nova-api-INPUT -d 192.168.56.200/32 -p tcp -m tcp --dport 8775 -j ACCEPT"
            in fake.listing("filter")
        )
    finally:
        daemon.stop()
    assert not server.serving
    # the rules stay when the daemon stops
    assert "-A INPUT -j nova-api-INPUT" in fake.listing("filter")


def test_periodic_check_repairs_a_flushed_chain(db: Database) -> None:
    daemon, fake, _server = make(db, interval=1)
    daemon.start()
    try:
        fake.run("-F nova-api-INPUT")
        assert fake.chain("nova-api-INPUT") == []
        deadline = time.monotonic() + 5
        while fake.chain("nova-api-INPUT") == [] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.chain("nova-api-INPUT") == [
            "-d 192.168.56.200/32 -p tcp -m tcp --dport 8775 -j ACCEPT"
        ]
    finally:
        daemon.stop()


def test_other_rules_are_left_alone(db: Database) -> None:
    daemon, fake, _server = make(db)
    fake.run("-N other-chain")
    fake.run("-A INPUT -p tcp --dport 22 -j ACCEPT")
    daemon.start()
    daemon.stop()
    listing = fake.listing("filter")
    assert "-N other-chain" in listing
    assert "-A INPUT -p tcp --dport 22 -j ACCEPT" in listing
    assert "-A INPUT -j nova-api-INPUT" in listing


def test_unmigrated_database_stops_the_start(tmp_path: Path) -> None:
    empty = Database(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    daemon, fake, server = make(empty)
    with pytest.raises(NovanetError, match=r"cannot read instances from the database sqlite:///"):
        daemon.start()
    assert not server.serving
    assert fake.listing("filter") == [
        "-P INPUT ACCEPT", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT"
    ]
    empty.dispose()


def test_unbindable_address_stops_the_start_before_iptables(db: Database) -> None:
    daemon, fake, server = make(db, fail="cannot listen on 10.9.9.9:8775")
    with pytest.raises(NovanetError, match="cannot listen"):
        daemon.start()
    assert not server.serving
    assert fake.listing("filter") == ["-P INPUT ACCEPT", "-P FORWARD ACCEPT", "-P OUTPUT ACCEPT"]
    assert fake.listing("nat") == [
        "-P PREROUTING ACCEPT", "-P INPUT ACCEPT", "-P OUTPUT ACCEPT", "-P POSTROUTING ACCEPT"
    ]


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
    try:
        built = metadata_daemon.build(conf, [])
    finally:
        conf.clear_override("connection", group="database")
    assert (built.server.host, built.server.port) == ("10.9.9.9", 18775)
    assert (built.server.limits.client_timeout, built.server.limits.max_connections) == (3.5, 77)
    assert built.iptables.naming.wrap("INPUT") == "nova-api-INPUT"
    built.db.dispose()
