"""DnsmasqDriver with the real dnsmasq 2.90, a real DHCP client and real signals.

Topology, built with ``ip`` in throwaway namespaces: ``srv`` holds br100 =
10.0.0.1/24 with a veth port whose peer ``eth0`` is in ``cli``, where
``busybox udhcpc`` plays the guest. dnsmasq and dhcp_release run in ``srv``
through an ``execute`` wrapper (``ip netns exec``); pid file, /proc and
signals work across namespaces. The dhcp-script is a shell script that logs
its arguments. dnsmasq logs to a file (test-only extra arguments).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from novanet import conf as novanet_conf
from novanet.dhcp.driver import DnsmasqDriver
from novanet.dhcp.models import DhcpHost
from novanet.linux import processutils, procfs
from novanet.linux.process import PidFileProcess
from tests.lib.dhcp import dhcp_network
from tests.lib.netns import Namespace, veth_between
from tests.lib.signals import pending_signals, start_blocker
from tests.lib.wait import poll

pytestmark = pytest.mark.root

NET = dhcp_network(dns1="8.8.4.4")
CIRROS = DhcpHost("fa:16:3e:2c:e8:ec", "cirros", "10.0.0.2")

SCRIPT = """#!/bin/sh
# Test dhcp-script: log every call; "init" prints no lease.
echo "$@" >> {log}
exit 0
"""


class Lab:
    """Namespaces, files and a driver factory for one test."""

    def __init__(self, srv: Namespace, cli: Namespace, work: Path) -> None:
        self.srv, self.cli, self.work = srv, cli, work
        self.networks = work / "networks"
        self.script_log = work / "script.log"
        self.dnsmasq_log = work / "dnsmasq.log"
        self.script = work / "dhcpbridge"
        self.script.write_text(SCRIPT.format(log=self.script_log))
        self.script.chmod(0o755)
        self.hosts: list[DhcpHost] = []
        self.conf = novanet_conf.new_conf()
        self.conf.set_override("networks_path", str(self.networks))
        self.conf.set_override("dhcpbridge", str(self.script))
        self.conf.set_override("dhcp_lease_time", 120)
        self.conf.set_override("dnsmasq_reload_delay", 0.01)
        self.conf.set_override("dhcp_hostsdir_threshold", 0)
        self.hostsfile = self.networks / "nova-br100.conf"
        self.pid_file = self.networks / "nova-br100.pid"

    def execute(self, cmd, **kw):
        return processutils.execute(["ip", "netns", "exec", self.srv.name, *cmd], **kw)

    def driver(self) -> DnsmasqDriver:
        return DnsmasqDriver(
            self.conf,
            lambda network_id: list(self.hosts),
            execute=self.execute,
            extra_args=[f"--log-facility={self.dnsmasq_log}", "--log-dhcp"],
        )

    def expected_argv(self, *extra: str) -> list[str]:
        return [
            "/usr/sbin/dnsmasq",
            "--strict-order",
            "--bind-interfaces",
            "--conf-file=",
            "--domain=novalocal",
            f"--pid-file={self.pid_file}",
            "--listen-address=10.0.0.1",
            "--except-interface=lo",
            "--dhcp-range=10.0.0.2,static,120s",
            "--dhcp-lease-max=256",
            f"--dhcp-hostsfile={self.hostsfile}",
            f"--dhcp-script={self.script}",
            "--leasefile-ro",
            "--no-hosts",
            "--dhcp-authoritative",
            *extra,
            f"--log-facility={self.dnsmasq_log}",
            "--log-dhcp",
        ]

    def pid(self) -> int:
        pid = PidFileProcess(str(self.pid_file), str(self.hostsfile)).pid()
        assert pid is not None, "dnsmasq is not running"
        return pid

    def dnsmasq_pids(self) -> list[int]:
        """Every dnsmasq serving our hostsfile (scan of /proc).

        dnsmasq's dhcp-script helper is a child with the same command line
        (the seed's "two dnsmasq processes"); only the parents are listed.
        """
        found: dict[int, int] = {}
        for pid in procfs.pids():
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            stat = procfs.stat(pid)
            if stat and f"--dhcp-hostsfile={self.hostsfile}".encode() in raw.split(b"\0"):
                found[pid] = stat.ppid
        return sorted(pid for pid, ppid in found.items() if ppid not in found)

    def dhcp(self, mac: str, attempts: int = 3) -> str | None:
        """Run udhcpc in ``cli`` with ``mac``; return the leased address or None."""
        self.cli.run(["ip", "link", "set", "eth0", "address", mac])
        result = self.cli.run(
            ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", str(attempts)]
            + ["-T", "1", "-s", "/bin/true"],
            check=False,
            timeout=attempts * 3 + 5,
        )
        match = re.search(r"lease of (\S+) obtained", result.stdout + result.stderr)
        return match.group(1) if match else None

    def script_calls(self) -> list[str]:
        return self.script_log.read_text().splitlines() if self.script_log.exists() else []

    def log(self) -> str:
        return self.dnsmasq_log.read_text() if self.dnsmasq_log.exists() else ""

    def wait_log(self, pattern: str, timeout: float = 5.0) -> bool:
        return bool(poll(lambda: re.search(pattern, self.log()), timeout))

    def wait_script(self, line: str, timeout: float = 5.0) -> bool:
        return bool(poll(lambda: line in self.script_calls(), timeout))


def build_topology(srv: Namespace, cli: Namespace, prefix: int = 24) -> None:
    broadcast = "10.0.0.255" if prefix == 24 else "10.0.255.255"
    srv.run(["ip", "link", "add", "br100", "type", "bridge"])
    srv.run(["ip", "addr", "add", f"10.0.0.1/{prefix}", "brd", broadcast, "dev", "br100"])
    srv.run(["ip", "link", "set", "br100", "up"])
    veth_between(srv, "vnet0", cli, "eth0")
    srv.run(["ip", "link", "set", "vnet0", "master", "br100"])


@pytest.fixture
def workdir() -> Iterator[Path]:
    # dnsmasq drops to user nobody: every directory on the way to its files
    # must be world-traversable, which pytest's tmp_path (0700) is not.
    path = Path(tempfile.mkdtemp(prefix="novanet-dnsmasq-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def lab(netns_factory, workdir) -> Iterator[Lab]:
    srv, cli = netns_factory("srv"), netns_factory("cli")
    build_topology(srv, cli)
    yield Lab(srv, cli, workdir)
    # The namespaces' teardown kills dnsmasq (it runs inside srv).


def test_seed_host_gets_its_lease_and_release_frees_it(lab):
    driver = lab.driver()
    driver.enable(NET)
    pid = lab.pid()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    assert [a.decode() for a in argv] == lab.expected_argv()
    assert lab.hostsfile.read_text() == ""
    assert lab.script_calls() == ["init"]

    lab.hosts = [CIRROS]
    driver.reload_allocations(NET)
    assert driver.wait_idle(NET, 5)
    assert lab.hostsfile.read_text() == "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2\n"
    assert lab.dhcp(CIRROS.mac) == "10.0.0.2"
    assert lab.wait_script("add fa:16:3e:2c:e8:ec 10.0.0.2 cirros")
    assert "DHCPACK(br100) 10.0.0.2 fa:16:3e:2c:e8:ec cirros" in lab.log()

    lab.hosts = []
    reads = lab.log().count(f"read {lab.hostsfile}")
    driver.release(NET, CIRROS.address, CIRROS.mac)
    assert lab.wait_log(r"DHCPRELEASE\(br100\) 10\.0\.0\.2 fa:16:3e:2c:e8:ec")
    assert lab.wait_script("del fa:16:3e:2c:e8:ec 10.0.0.2 cirros")
    # dnsmasq re-read the emptied hostsfile (SIGHUP) before the release came.
    log = lab.log()
    release_at = log.index("DHCPRELEASE(br100) 10.0.0.2")
    assert log[:release_at].count(f"read {lab.hostsfile}") == reads + 1
    assert lab.hostsfile.read_text() == ""
    assert lab.dhcp(CIRROS.mac, attempts=1) is None  # forgotten
    assert lab.pid() == pid  # reloaded with SIGHUP, never restarted


def test_unknown_mac_gets_nothing(lab):
    lab.hosts = [CIRROS]
    lab.driver().enable(NET)
    assert lab.dhcp("fa:16:3e:00:00:99", attempts=1) is None


def test_check_alive_restarts_a_killed_dnsmasq(lab):
    lab.hosts = [CIRROS]
    driver = lab.driver()
    driver.enable(NET)
    first = lab.pid()
    os.kill(first, signal.SIGKILL)
    assert poll(lambda: not driver.active(NET), 5, 0.02)
    assert driver.check_alive() == [1]
    second = lab.pid()
    assert second != first
    assert lab.dnsmasq_pids() == [second]
    assert lab.dhcp(CIRROS.mac) == "10.0.0.2"


def test_a_second_driver_adopts_the_running_dnsmasq(lab):
    lab.driver().enable(NET)
    pid = lab.pid()
    reads = lab.log().count(f"read {lab.hostsfile}")
    lab.hosts = [CIRROS]
    lab.driver().enable(NET)  # the daemon restarted: same dnsmasq, SIGHUP
    assert lab.pid() == pid
    assert lab.dnsmasq_pids() == [pid]
    assert lab.wait_log(f"(?s)(read {re.escape(str(lab.hostsfile))}.*){{{reads + 1}}}")
    assert lab.dhcp(CIRROS.mac) == "10.0.0.2"


def test_lease_time_change_restarts_dnsmasq(lab):
    lab.hosts = [CIRROS]
    driver = lab.driver()
    driver.enable(NET)
    first = lab.pid()
    lab.conf.set_override("dhcp_lease_time", 3600)
    driver.enable(NET)
    second = lab.pid()
    assert second != first
    assert lab.dnsmasq_pids() == [second]
    assert "--dhcp-range=10.0.0.2,static,3600s" in Path(f"/proc/{second}/cmdline").read_text()
    assert lab.dhcp(CIRROS.mac) == "10.0.0.2"


def test_a_foreign_pid_in_the_pid_file_is_never_signalled(lab):
    # It blocks HUP and TERM: a signal novanet sent would stay pending, visible.
    sleeper = start_blocker(lab.srv.popen)
    try:
        lab.networks.mkdir(parents=True, exist_ok=True)
        lab.pid_file.write_text(f"{sleeper.pid}\n")
        driver = lab.driver()
        assert not driver.active(NET)
        driver.enable(NET)
        first = lab.pid()
        assert first != sleeper.pid
        # The pid file gets overwritten while our dnsmasq runs (a recycled pid).
        lab.pid_file.write_text(f"{sleeper.pid}\n")
        lab.hosts = [CIRROS]
        driver.flush(NET)
        assert pending_signals(sleeper.pid) == set(), "the foreign process was signalled"
        # Our unnamed dnsmasq was found by its command line and replaced.
        assert lab.dnsmasq_pids() == [lab.pid()]
        assert first not in lab.dnsmasq_pids()
        assert lab.dhcp(CIRROS.mac) == "10.0.0.2"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_start_failure_is_reported_with_dnsmasqs_message(lab):
    other = dataclasses.replace(NET, dhcp_server="10.9.9.9")
    with pytest.raises(processutils.ProcessExecutionError, match="10.9.9.9"):
        lab.driver().enable(other)


def test_disable_stops_dnsmasq_and_removes_its_files(lab):
    lab.hosts = [CIRROS]
    driver = lab.driver()
    driver.enable(NET)
    pid = lab.pid()
    driver.disable(NET)
    assert pid not in lab.dnsmasq_pids()
    assert not lab.hostsfile.exists() and not lab.pid_file.exists()


def test_dhcp_script_environment(lab):
    lab.conf.set_override("dhcpbridge_flagfile", ["/etc/novanet/novanet.conf"])
    lab.driver().enable(NET)
    environ = Path(f"/proc/{lab.pid()}/environ").read_bytes().split(b"\0")
    assert b"NOVANET_NETWORK_ID=1" in environ
    assert b'NOVANET_CONFIG_FILES=[["config", "/etc/novanet/novanet.conf"]]' in environ


def test_dnsmasq_runs_without_the_hosts_etc_hosts(lab):
    # --no-hosts: the controller's /etc/hosts names are not served to guests.
    lab.driver().enable(NET)
    assert "--no-hosts" in Path(f"/proc/{lab.pid()}/cmdline").read_text()
    assert "read /etc/hosts" not in lab.log()


def test_subprocess_dhcp_release_tool_exists():
    assert shutil.which("dhcp_release"), "dnsmasq-utils is needed for force_dhcp_release"
    assert subprocess.run(["dnsmasq", "--version"], capture_output=True).returncode == 0
