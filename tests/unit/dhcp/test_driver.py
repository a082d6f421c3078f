"""DnsmasqDriver over the fake process table and a model of dnsmasq."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import signal
import tempfile

import pytest

from novanet import conf as novanet_conf
from novanet.dhcp.driver import DnsmasqDriver
from novanet.dhcp.models import DhcpHost
from novanet.exception import ProcessExecutionError
from novanet.linux.fakes.process import FakeProcessTable
from tests.lib.dhcp import dhcp_network
from tests.lib.paths import SEED
from tests.lib.reloads import ManualReloads
from tests.unit.dhcp.fake_dnsmasq import FakeDnsmasq

NET = dhcp_network("10.0.0.0/16")
CIRROS = DhcpHost("fa:16:3e:2c:e8:ec", "cirros", "10.0.0.2")


def host(i: int) -> DhcpHost:
    a = i + 2
    return DhcpHost(f"fa:16:3e:00:{i >> 8:02x}:{i & 255:02x}", f"vm{i}", f"10.0.{a >> 8}.{a & 255}")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Env:
    def __init__(self, tmp_path, **overrides) -> None:
        self.conf = novanet_conf.new_conf()
        self.conf.set_override("networks_path", str(tmp_path / "networks"))
        self.conf.set_override("dhcpbridge", "/usr/bin/nova-dhcpbridge")
        self.conf.set_override("dhcp_lease_time", 120)
        self.conf.set_override("dnsmasq_reload_delay", 0.05)
        self.conf.set_override("dhcp_hostsdir_threshold", 0)
        for name, value in overrides.items():
            self.conf.set_override(name, value)
        self.table = FakeProcessTable()
        self.dnsmasq = FakeDnsmasq(self.table)
        self.hosts: dict[int, list[DhcpHost]] = {1: []}
        self.provider_calls = 0
        self.executed: list[tuple[list[str], dict[str, str]]] = []
        self.clock = Clock()
        self.hostsfile = tmp_path / "networks" / "nova-br100.conf"
        self.hostsdir = tmp_path / "networks" / "nova-br100.d"
        self.pid_file = tmp_path / "networks" / "nova-br100.pid"

    def provider(self, network_id: int) -> list[DhcpHost]:
        self.provider_calls += 1
        return list(self.hosts[network_id])

    def execute(self, cmd, **kw):
        # dhcp_release: record what dnsmasq served at the moment it was sent.
        self.executed.append((list(cmd), self.dnsmasq.served()))
        return "", ""

    def driver(self, **kw) -> DnsmasqDriver:
        return DnsmasqDriver(
            self.conf,
            self.provider,
            process_factory=self.table.handle,
            execute=self.execute,
            clock=self.clock,
            **kw,
        )

    def running(self):
        procs = self.table.running(str(self.hostsfile))
        assert len(procs) == 1, procs
        return procs[0]


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


def test_enable_writes_the_seed_file_and_starts_dnsmasq_with_the_seed_argv(env, tmp_path):
    env.hosts[1] = [CIRROS]
    driver = env.driver()
    driver.enable(NET)
    assert env.hostsfile.read_text() == (SEED / "controller-hostsfile-after-boot.txt").read_text()
    proc = env.running()
    networks = str(tmp_path / "networks")
    seed = (SEED / "controller-dnsmasq-argv.txt").read_text().split()
    expected = [a.replace("/var/lib/nova/networks", networks) for a in seed]
    expected[expected.index("--dhcp-lease-max=256")] = "--dhcp-lease-max=65536"  # a /16
    assert list(proc.argv) == expected + ["--no-hosts", "--dhcp-authoritative"]
    assert proc.env["NOVANET_NETWORK_ID"] == "1"
    assert env.dnsmasq.served() == {CIRROS.mac: "10.0.0.2"}
    assert driver.active(NET)
    assert not env.hostsdir.exists()


def test_empty_network_gets_an_empty_hostsfile(env):
    env.driver().enable(NET)
    assert env.hostsfile.read_text() == ""
    assert env.dnsmasq.served() == {}


def test_enable_again_hups_the_same_process(env):
    env.driver().enable(NET)
    first = env.running()
    env.hosts[1] = [CIRROS]
    env.driver().enable(NET)  # a second driver: the daemon restarted
    assert env.running().pid == first.pid
    assert first.hups == 1
    assert env.dnsmasq.served() == {CIRROS.mac: "10.0.0.2"}


def test_lease_time_change_restarts_dnsmasq(env):
    driver = env.driver()
    driver.enable(NET)
    first = env.running()
    env.conf.set_override("dhcp_lease_time", 86400)
    driver.enable(NET)
    second = env.running()
    assert second.pid != first.pid and not first.alive
    assert first.signals == [signal.SIGTERM]
    assert "--dhcp-range=10.0.0.2,static,86400s" in second.argv


def test_dns_change_restarts_dnsmasq(env):
    env.conf.set_override("use_network_dns_servers", True)
    driver = env.driver()
    driver.enable(NET)
    first = env.running()
    changed = dataclasses.replace(NET, dns1="9.9.9.9")
    driver.reload_allocations(changed)
    assert driver.wait_idle(NET, 5)
    assert not first.alive
    assert "--server=9.9.9.9" in env.running().argv


def test_script_environment_change_restarts(env):
    env.driver(script_env={"NOVANET_CONFIG_FILES": "/a.conf"}).enable(NET)
    first = env.running()
    env.driver(script_env={"NOVANET_CONFIG_FILES": "/b.conf"}).enable(NET)
    assert not first.alive
    assert env.running().env["NOVANET_CONFIG_FILES"] == "/b.conf"


def test_100_reload_allocations_give_at_most_3_writes(env):
    driver = env.driver()
    driver.enable(NET)
    writes_before = driver.stats(NET).hostsfile_writes
    hups_before = env.running().hups
    for i in range(100):
        env.hosts[1].append(host(i))
        driver.reload_allocations(NET)
    assert driver.wait_idle(NET, 5)
    stats = driver.stats(NET)
    assert stats.hostsfile_writes - writes_before <= 3
    assert env.running().hups - hups_before <= 3
    assert len(env.dnsmasq.served()) == 100
    assert len(env.hostsfile.read_text().splitlines()) == 100


def test_reload_without_change_neither_writes_nor_hups(env):
    driver = env.driver()
    env.hosts[1] = [CIRROS]
    driver.enable(NET)
    stats = driver.stats(NET)
    driver.flush(NET)
    assert driver.stats(NET).hostsfile_writes == stats.hostsfile_writes
    assert env.running().hups == 0


def test_release_forgets_before_dhcp_release(env):
    driver = env.driver()
    env.hosts[1] = [CIRROS, host(5)]
    driver.enable(NET)
    env.hosts[1] = [host(5)]  # deallocated in the database
    driver.release(NET, "10.0.0.2", "FA:16:3E:2C:E8:EC")
    ((cmd, served_then),) = env.executed
    assert cmd == ["dhcp_release", "br100", "10.0.0.2", "fa:16:3e:2c:e8:ec"]
    assert CIRROS.mac not in served_then
    assert host(5).mac in served_then


def test_release_without_force_dhcp_release_only_reloads(env):
    env.conf.set_override("force_dhcp_release", False)
    driver = env.driver()
    env.hosts[1] = [CIRROS]
    driver.enable(NET)
    env.hosts[1] = []
    driver.release(NET, "10.0.0.2", CIRROS.mac)
    assert driver.wait_idle(NET, 5)
    assert env.executed == []
    assert env.dnsmasq.served() == {}


def test_release_refuses_garbage(env):
    with pytest.raises(ValueError):
        env.driver().release(NET, "10.0.0.2; rm -rf /", CIRROS.mac)


def test_check_alive_restarts_a_dead_dnsmasq(env):
    driver = env.driver()
    env.hosts[1] = [CIRROS]
    driver.enable(NET)
    first = env.running()
    env.table.kill(first.pid, signal.SIGKILL)
    assert not driver.active(NET)
    assert driver.check_alive() == [1]
    assert env.running().pid != first.pid
    assert env.dnsmasq.served() == {CIRROS.mac: "10.0.0.2"}
    assert driver.check_alive() == []


def test_reload_of_a_dead_dnsmasq_starts_it(env):
    driver = env.driver()
    driver.enable(NET)
    env.table.kill(env.running().pid, signal.SIGKILL)
    env.hosts[1] = [CIRROS]
    driver.flush(NET)
    assert env.dnsmasq.served() == {CIRROS.mac: "10.0.0.2"}


def test_foreign_pid_in_the_pid_file_is_never_signalled(env):
    foreign = env.table.spawn(["/usr/bin/python3", "important.py"])
    env.pid_file.parent.mkdir(parents=True)
    env.pid_file.write_text(f"{foreign.pid}\n")
    driver = env.driver()
    assert not driver.active(NET)
    driver.enable(NET)
    driver.flush(NET)
    driver.disable(NET)
    assert foreign.alive and foreign.signals == []


def test_start_failure_is_surfaced(env):
    env.table.fail_next_start = "dnsmasq: failed to create listening socket for 10.0.0.1"
    with pytest.raises(ProcessExecutionError, match="failed to create listening socket"):
        env.driver().enable(NET)


def test_disable_stops_dnsmasq_and_removes_its_files(env):
    driver = env.driver()
    env.hosts[1] = [CIRROS]
    driver.enable(NET)
    proc = env.running()
    driver.disable(NET)
    assert not proc.alive
    assert not env.hostsfile.exists() and not env.pid_file.exists()
    assert env.driver().check_alive() == []


def test_disable_by_a_fresh_driver_stops_the_running_dnsmasq(env):
    env.driver().enable(NET)
    proc = env.running()
    env.driver().disable(NET)
    assert not proc.alive


def test_bad_rows_are_left_out_not_written(env):
    env.hosts[1] = [CIRROS, DhcpHost("fa:16:3e:00:00:01\nx", "evil", "10.0.0.3")]
    env.driver().enable(NET)
    assert env.hostsfile.read_text() == "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2\n"


# -- the fast path ---------------------------------------------------------------


@pytest.fixture
def big(tmp_path):
    return Env(tmp_path, dhcp_hostsdir_threshold=10)


def test_small_networks_keep_the_seed_argv(big):
    big.hosts[1] = [host(i) for i in range(10)]
    big.driver().enable(NET)
    assert not [a for a in big.running().argv if "hostsdir" in a]


def test_additions_go_to_the_hostsdir_without_sighup(big):
    big.hosts[1] = [host(i) for i in range(20)]
    driver = big.driver()
    driver.enable(NET)
    proc = big.running()
    assert f"--dhcp-hostsdir={big.hostsdir}" in proc.argv
    assert len(big.hostsfile.read_text().splitlines()) == 20
    big.hosts[1].append(host(20))
    driver.reload_allocations(NET)
    assert driver.wait_idle(NET, 5)
    assert proc.hups == 0
    assert os.listdir(big.hostsdir) == ["0000000001"]
    assert (big.hostsdir / "0000000001").read_text() == (
        "fa:16:3e:00:00:14,vm20.novalocal,10.0.0.22\n"
    )
    assert big.dnsmasq.served()[host(20).mac] == "10.0.0.22"
    assert len(big.hostsfile.read_text().splitlines()) == 20  # untouched


def test_burst_on_the_fast_path_gives_few_files_and_no_sighup(big):
    big.hosts[1] = [host(i) for i in range(20)]
    manual = ManualReloads()  # however slow the machine, the burst is one coalesced run
    driver = big.driver(reloader=manual.reloader)
    driver.enable(NET)
    for i in range(20, 1020):
        big.hosts[1].append(host(i))
        driver.reload_allocations(NET)
    assert driver.stats(NET).hostsdir_files == 1  # the first, at once; the rest coalesced
    assert manual.run_pending() == 1
    assert driver.wait_idle(NET, 0)
    assert driver.stats(NET).hostsdir_files == 2
    assert big.running().hups == 0
    assert len(big.dnsmasq.served()) == 1020


def test_removal_waits_for_compaction(big):
    big.hosts[1] = [host(i) for i in range(20)]
    driver = big.driver()
    driver.enable(NET)
    proc = big.running()
    big.hosts[1] = big.hosts[1][1:]
    driver.flush(NET)
    assert proc.hups == 0
    assert host(0).mac in big.dnsmasq.served()  # stale, harmless
    big.clock.now += 301  # half of fixed_ip_disassociate_timeout
    driver.check_alive()
    assert driver.wait_idle(NET, 5)
    assert proc.hups == 1
    assert host(0).mac not in big.dnsmasq.served()
    assert os.listdir(big.hostsdir) == []


def test_release_on_the_fast_path_costs_a_file_not_a_sighup(big):
    big.hosts[1] = [host(i) for i in range(20)]
    driver = big.driver()
    driver.enable(NET)
    big.hosts[1] = big.hosts[1][1:]
    driver.release(NET, host(0).address, host(0).mac)
    ((cmd, served_then),) = big.executed
    assert host(0).mac not in served_then
    assert big.running().hups == 0


def test_reusing_a_released_address_compacts_and_serves_the_new_mac(big):
    big.hosts[1] = [host(i) for i in range(20)]
    driver = big.driver()
    driver.enable(NET)
    big.hosts[1] = big.hosts[1][1:]
    driver.release(NET, host(0).address, host(0).mac)
    newcomer = DhcpHost("fa:16:3e:99:99:99", "new", host(0).address)
    big.hosts[1].append(newcomer)
    driver.flush(NET)
    assert big.running().hups == 1
    served = big.dnsmasq.served()
    assert served[newcomer.mac] == host(0).address and host(0).mac not in served
    assert big.dnsmasq.running_state().rejected == []


def test_crossing_the_threshold_restarts_with_hysteresis(big):
    big.hosts[1] = [host(i) for i in range(10)]
    driver = big.driver()
    driver.enable(NET)
    small = big.running()
    big.hosts[1].append(host(10))  # 11 > 10
    driver.flush(NET)
    large = big.running()
    assert large.pid != small.pid and any("hostsdir" in a for a in large.argv)
    big.hosts[1] = big.hosts[1][:10]  # 10 > 9: keeps the hostsdir
    driver.flush(NET)
    assert big.running().pid == large.pid
    big.hosts[1] = big.hosts[1][:9]
    driver.flush(NET)
    assert not any("hostsdir" in a for a in big.running().argv)
    assert not big.hostsdir.exists()
    assert len(big.dnsmasq.served()) == 9


def test_daemon_restart_on_the_fast_path_compacts_once(big):
    big.hosts[1] = [host(i) for i in range(20)]
    driver = big.driver()
    driver.enable(NET)
    big.hosts[1].append(host(20))
    driver.flush(NET)
    proc = big.running()
    big.driver().enable(NET)  # new daemon: adopts with one SIGHUP
    assert big.running().pid == proc.pid and proc.hups == 1
    assert os.listdir(big.hostsdir) == []
    assert len(big.hostsfile.read_text().splitlines()) == 21
    assert len(big.dnsmasq.served()) == 21


def test_no_sighup_storm_while_dnsmasq_is_busy(env):
    manual = ManualReloads()
    driver = env.driver(reloader=manual.reloader)
    driver.enable(NET)
    proc = env.running()
    proc.busy = True  # re-reading a big hostsfile after an earlier SIGHUP
    for i in range(20):
        env.hosts[1].append(host(i))
        driver.reload_allocations(NET)
    assert proc.hups == 0  # deferred, not queued
    proc.busy = False
    assert manual.run_pending() == 1
    assert driver.wait_idle(NET, 0)
    assert proc.hups == 1  # one SIGHUP for all twenty
    assert len(env.dnsmasq.served()) == 20


def test_release_does_not_wait_for_a_busy_dnsmasq(env):
    env.hosts[1] = [CIRROS]
    driver = env.driver()
    driver.enable(NET)
    env.running().busy = True
    env.hosts[1] = []
    driver.release(NET, CIRROS.address, CIRROS.mac)
    ((cmd, served_then),) = env.executed
    assert CIRROS.mac not in served_then


def test_a_busy_dnsmasq_gets_its_sighup_after_max_defer(env, monkeypatch):
    monkeypatch.setattr("novanet.dhcp.sync.MAX_DEFER", 0.0)
    driver = env.driver()
    driver.enable(NET)
    proc = env.running()
    proc.busy = True
    env.hosts[1] = [CIRROS]
    driver.reload_allocations(NET)
    assert driver.wait_idle(NET, 5)
    assert proc.hups == 1


def test_a_big_burst_is_written_in_pieces_while_dnsmasq_is_idle(big, monkeypatch):
    monkeypatch.setattr("novanet.dhcp.sync.FILE_WORK", 100)  # 16 lines a file
    big.hosts[1] = [host(i) for i in range(20)]
    manual = ManualReloads()
    driver = big.driver(reloader=manual.reloader)
    driver.enable(NET)
    proc = big.running()
    proc.busy = True
    for i in range(20, 120):
        big.hosts[1].append(host(i))
        driver.reload_allocations(NET)
    assert driver.stats(NET).hostsdir_files == 0  # nothing while dnsmasq is busy
    proc.busy = False
    assert manual.run_pending() >= 1
    assert driver.wait_idle(NET, 0)
    files = sorted(os.listdir(big.hostsdir))
    assert len(files) == 7  # 100 hosts, 16 a file
    assert all(len((big.hostsdir / f).read_text().splitlines()) <= 16 for f in files)
    assert len(big.dnsmasq.served()) == 120
    assert proc.hups == 0


def test_unreadable_networks_path_is_reported(tmp_path, caplog):
    env = Env(tmp_path / "private")
    (tmp_path / "private").mkdir(mode=0o700)
    (tmp_path / "private").chmod(0o700)
    env.driver().enable(NET)
    assert "will not be able to re-read" in caplog.text
    assert str(tmp_path / "private") in caplog.text


def test_readable_networks_path_is_not_reported(caplog):
    # pytest's tmp_path is 0700: build a world-traversable one under /tmp.
    work = tempfile.mkdtemp()
    try:
        os.chmod(work, 0o755)
        env = Env(pathlib.Path(work))
        env.driver().enable(NET)
        assert "will not be able to re-read" not in caplog.text
    finally:
        shutil.rmtree(work)
