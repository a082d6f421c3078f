"""The large-network fast path against the real dnsmasq 2.90.

First what dnsmasq itself does with --dhcp-hostsdir (the facts the design in
novanet/dhcp/hostsdir.py relies on), then the driver using it.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from novanet.dhcp.argv import build_command
from novanet.dhcp.models import DhcpHost
from novanet.linux.process import PidFileProcess
from tests.functional.test_dnsmasq_driver import (  # noqa: F401 - fixtures
    CIRROS,
    NET,
    Lab,
    build_topology,
    workdir,
)
from tests.lib.wait import wait_for

pytestmark = pytest.mark.root

HOST_A = DhcpHost("fa:16:3e:00:00:0a", "a", "10.0.0.10")
HOST_B = DhcpHost("fa:16:3e:00:00:0b", "b", "10.0.0.11")
HOST_C = DhcpHost("fa:16:3e:00:00:0c", "c", "10.0.0.12")


def line(host: DhcpHost) -> str:
    return f"{host.mac},{host.hostname}.novalocal,{host.address}\n"


@pytest.fixture
def lab(netns_factory, workdir):  # noqa: F811
    srv, cli = netns_factory("srv"), netns_factory("cli")
    build_topology(srv, cli)
    yield Lab(srv, cli, workdir)


class RawDnsmasq:
    """dnsmasq started with novanet's hostsdir command line, files written by hand."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        lab.networks.mkdir(mode=0o755)
        self.dir = lab.networks / "nova-br100.d"
        self.dir.mkdir(mode=0o755)
        command = build_command(
            lab.conf,
            NET,
            hostsdir=True,
            extra_args=[f"--log-facility={lab.dnsmasq_log}", "--log-dhcp"],
        )
        self.proc = PidFileProcess(str(lab.pid_file), str(lab.hostsfile), execute=lab.execute)
        lab.hostsfile.write_text(line(CIRROS))
        self.proc.start(command.argv, command.env)

    def add_file(self, name: str, text: str) -> None:
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.rename(tmp, self.dir / name)
        assert self.lab.wait_log(f"read {self.dir / name}")

    def hup(self) -> None:
        # The hostsfile is re-read, then every file of the directory: wait for each.
        paths = [self.lab.hostsfile, *(p for p in sorted(self.dir.iterdir()) if p.name[0] != ".")]
        reads = {p: self.lab.log().count(f"read {p}") for p in paths}
        assert self.proc.hup()
        for path, count in reads.items():
            assert self.lab.wait_log(f"(?s)(read {re.escape(str(path))}.*){{{count + 1}}}")


def test_a_new_file_is_served_without_sighup_and_dotfiles_are_skipped(lab):
    raw = RawDnsmasq(lab)
    (raw.dir / ".hidden").write_text(line(HOST_B))
    raw.add_file("0000000001", line(HOST_A))
    assert lab.dhcp(HOST_A.mac) == HOST_A.address
    assert lab.dhcp(HOST_B.mac, attempts=1) is None
    assert lab.log().count(f"read {lab.hostsfile}") == 1  # only at start


def test_a_host_in_both_places_is_served_once_from_the_hostsfile(lab):
    raw = RawDnsmasq(lab)
    raw.add_file("0000000001", line(CIRROS))
    assert "duplicate dhcp-host IP address 10.0.0.2" in lab.log()
    assert lab.dhcp(CIRROS.mac) == CIRROS.address
    # Same again after a SIGHUP: the hostsfile is read first and keeps it.
    raw.hup()
    assert lab.log().count("duplicate dhcp-host IP address 10.0.0.2") == 2
    assert lab.dhcp(CIRROS.mac) == CIRROS.address


def test_a_removed_file_counts_until_sighup_which_rereads_the_directory(lab):
    raw = RawDnsmasq(lab)
    raw.add_file("0000000001", line(HOST_A))
    raw.add_file("0000000002", line(HOST_B))
    os.unlink(raw.dir / "0000000001")
    assert lab.dhcp(HOST_A.mac) == HOST_A.address  # still known
    raw.hup()
    assert lab.dhcp(HOST_A.mac, attempts=1) is None  # forgotten
    assert lab.dhcp(HOST_B.mac) == HOST_B.address  # re-read from the directory


def test_an_ignore_line_hides_a_hostsfile_host_and_its_release_still_works(lab):
    raw = RawDnsmasq(lab)
    assert lab.dhcp(CIRROS.mac) == CIRROS.address
    assert lab.wait_script("add fa:16:3e:2c:e8:ec 10.0.0.2 cirros")
    raw.add_file("0000000001", f"{CIRROS.mac},ignore\n")
    assert lab.dhcp(CIRROS.mac, attempts=1) is None
    assert "DHCPDISCOVER(br100) fa:16:3e:2c:e8:ec ignored" in lab.log()
    lab.execute(["dhcp_release", "br100", CIRROS.address, CIRROS.mac])
    assert lab.wait_script("del fa:16:3e:2c:e8:ec 10.0.0.2 cirros")


def test_a_rewritten_file_adds_but_does_not_replace(lab):
    raw = RawDnsmasq(lab)
    raw.add_file("0000000001", line(HOST_A))
    moved = DhcpHost(HOST_A.mac, "a", "10.0.0.20")
    raw.add_file("0000000001", line(moved))
    # Both configs exist now; the newest is first for the MAC.
    assert lab.dhcp(HOST_A.mac) == moved.address
    raw.hup()
    assert lab.dhcp(HOST_A.mac) == moved.address


# -- the driver on the fast path -------------------------------------------------


def fast_lab(lab: Lab) -> Lab:
    lab.conf.set_override("dhcp_hostsdir_threshold", 2)
    lab.hosts = [HOST_A, HOST_B, HOST_C]
    return lab


def test_driver_adds_hosts_without_sighup(lab):
    fast_lab(lab)
    driver = lab.driver()
    driver.enable(NET)
    pid = lab.pid()
    argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    assert f"--dhcp-hostsdir={lab.networks / 'nova-br100.d'}" in argv
    reads = lab.log().count(f"read {lab.hostsfile}")
    lab.hosts.append(CIRROS)
    driver.reload_allocations(NET)
    assert lab.dhcp(CIRROS.mac) == CIRROS.address
    assert lab.log().count(f"read {lab.hostsfile}") == reads  # no SIGHUP
    assert driver.stats(NET).hostsdir_files == 1
    assert lab.pid() == pid


def test_driver_release_on_the_fast_path(lab):
    fast_lab(lab)
    lab.hosts.append(CIRROS)
    driver = lab.driver()
    driver.enable(NET)
    assert lab.dhcp(CIRROS.mac) == CIRROS.address
    reads = lab.log().count(f"read {lab.hostsfile}")
    lab.hosts.remove(CIRROS)
    driver.release(NET, CIRROS.address, CIRROS.mac)
    assert lab.wait_log(r"DHCPRELEASE\(br100\) 10\.0\.0\.2 fa:16:3e:2c:e8:ec")
    assert lab.wait_script("del fa:16:3e:2c:e8:ec 10.0.0.2 cirros")
    assert lab.dhcp(CIRROS.mac, attempts=1) is None
    assert lab.log().count(f"read {lab.hostsfile}") == reads  # no SIGHUP
    # The address goes to a new MAC: one compaction, then it is served.
    newcomer = DhcpHost("fa:16:3e:00:00:99", "new", CIRROS.address)
    lab.hosts.append(newcomer)
    driver.flush(NET)
    assert lab.dhcp(newcomer.mac) == CIRROS.address
    assert "duplicate dhcp-host" not in lab.log()
    assert os.listdir(lab.networks / "nova-br100.d") == []


def test_driver_respawn_on_the_fast_path(lab):
    fast_lab(lab)
    driver = lab.driver()
    driver.enable(NET)
    lab.hosts.append(CIRROS)
    driver.flush(NET)
    os.kill(lab.pid(), signal.SIGKILL)
    wait_for(lambda: not driver.active(NET), "dnsmasq to die")
    assert driver.check_alive() == [1]
    assert lab.dhcp(CIRROS.mac) == CIRROS.address
    assert os.listdir(lab.networks / "nova-br100.d") == []  # all in the hostsfile
    assert line(CIRROS) in lab.hostsfile.read_text()
