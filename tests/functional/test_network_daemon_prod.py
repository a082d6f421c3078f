"""novanet-network as systemd runs it: the unit's capabilities, notify, watchdog, SIGHUP, metrics.

The daemon runs in the seed-like controller namespace of test_network_daemon,
as root with only the capabilities systemd/novanet-network.service bounds it
to, no_new_privs, the unit's system-call filter and MemoryDenyWriteExecute
(emulated with seccomp and PR_SET_MDWE: tests/lib/sandbox.py), with
NOTIFY_SOCKET pointing at a real unix datagram socket of this test and
WATCHDOG_USEC set.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from novanet.db import instances
from tests.functional.test_network_daemon import (
    BIN,
    MAC,
    Controller,
    _rpc,
    _seed,
    started,
)
from tests.lib.paths import ROOT
from tests.lib.units import NotifySocket, sandboxed
from tests.lib.wait import wait_for

pytestmark = [pytest.mark.root, pytest.mark.rabbit]

UNIT = "novanet-network.service"
WATCHDOG_USEC = 2_000_000


class SystemdController(Controller):
    def __init__(self, tmp: Path, vhost) -> None:
        super().__init__(tmp, vhost)
        self.vhost = vhost
        self.notify = NotifySocket(tmp / "notify.sock")
        self.flagfile.write_text(self.flagfile.read_text() + "--metrics_listen=127.0.0.1:0\n")

    def start(self) -> None:
        env = dict(os.environ, NOTIFY_SOCKET=str(self.notify.path), WATCHDOG_USEC=str(WATCHDOG_USEC))
        mark = self.log.read_text().count("serving RPC") if self.log.exists() else 0
        log = open(self.log, "a")  # noqa: SIM115 - kept by the child
        self.proc = self.ctl.popen(
            [*sandboxed(UNIT), str(BIN / "novanet-network"), "--flagfile", str(self.flagfile)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT),
        )
        try:
            wait_for(
                lambda: self.log.read_text().count("serving RPC") > mark,
                "novanet-network to serve RPC",
                30,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log:\n{self.log.read_text()[-3000:]}") from None

    def http(self, path: str) -> tuple[int, str]:
        port = re.findall(r"serving /metrics and /healthz on 127\.0\.0\.1:(\d+)", self.log.read_text())[-1]
        code = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=10)\n"
            "    print(r.status); print(r.read().decode(), end='')\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code); print(e.read().decode(), end='')\n"
        )
        out = self.ctl.run([sys.executable, "-c", code]).stdout
        status, _, body = out.partition("\n")
        return int(status), body

    def destroy(self) -> None:
        super().destroy()
        self.notify.close()


@pytest.fixture(scope="module")
def controller(vhost):
    yield from started(SystemdController, "ctlsd", vhost)


def test_ready_then_watchdog_pings(controller):
    ready = controller.notify.wait_for("READY")
    assert ready["READY"] == "1"
    for _ in range(2):
        assert controller.notify.wait_for("WATCHDOG", timeout=10)["WATCHDOG"] == "1"


def test_it_does_its_job_with_only_the_units_capabilities(controller):
    status = Path(f"/proc/{controller.proc.pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines())
    assert int(fields["CapBnd"], 16) < int(Path("/proc/self/status").read_text().split("CapBnd:")[1].split()[0], 16)
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # the unit's SystemCallFilter (tests/lib/sandbox.py)
    # the seed's controller: bridge, gateway, every rule (nova-api-* included)
    br100 = controller.ctl.run(["ip", "-4", "-o", "addr", "show", "br100"]).stdout
    assert "inet 10.0.0.1/24 brd 10.0.0.255" in br100
    assert controller.iptables("-S") == _seed("controller-iptables-filter.txt")
    assert controller.iptables("-t", "nat", "-S") == _seed("controller-iptables-nat.txt")
    # dnsmasq started by it, dropped to nobody, leases to a real client
    pid = controller.dnsmasq_pid()
    assert pid is not None
    transport, api = _rpc(controller.vhost)
    try:
        inst = instances.create_instance(
            controller.db, display_name="cirros", hostname="cirros", host="compute-1", vif_type="tap"
        )
        assert api.allocate_for_instance(instance_uuid=inst.uuid, mac=MAC)["address"] == "10.0.0.2"
        wait_for(lambda: "10.0.0.2" in (controller.state / "networks" / "nova-br100.conf").read_text(), "hostsfile")
        assert "lease of 10.0.0.2 obtained" in controller.dhcp()
        wait_for(lambda: controller.fixed("10.0.0.2").leased, "the lease, through novanet-dhcpbridge")
    finally:
        transport.cleanup()
    # a rule deleted by hand comes back, the nova-api one too
    controller.ctl.run(["iptables", "-F", "nova-api-INPUT"])
    wait_for(lambda: controller.iptables("-S") == _seed("controller-iptables-filter.txt"), "the repair", 10)


def test_one_line_per_event(controller):
    """Bridge steps and iptables changes were logged twice (by the applier and its caller)."""
    log = controller.log.read_text()
    # (logger, message) of every line: "... INFO novanet.linux.bridge: create bridge br100 ..."
    records = [
        (line.split(": ", 1)[0].split()[-1], line.split(": ", 1)[1])
        for line in log.splitlines() if ": " in line
    ]
    for needle in ("create bridge br100", "attach eth2 to br100", "10.0.0.1/24 brd"):
        assert sum(needle in message for _, message in records) == 1, (needle, log)
    synced = [(name, m) for name, m in records if m.startswith("iptables full sync: ")]
    assert synced, log
    for name, message in synced:
        change = message.split(": ", 1)[1]
        assert not [m for other, m in records if other != name and change in m], (change, log)


def test_metrics_and_health(controller):
    status, body = controller.http("/healthz")
    assert status == 200 and body.startswith("ok\n"), body
    assert "rpc: ok" in body
    status, text = controller.http("/metrics")
    assert status == 200
    assert 'novanet_fixed_ips{bridge="br100",network="10.0.0.0/24",state="total"} 256.0' in text
    assert 'novanet_fixed_ips{bridge="br100",network="10.0.0.0/24",state="reserved"} 3.0' in text
    assert re.search(r'novanet_dnsmasq_starts_total\{bridge="br100"\} [1-9]', text), text
    assert re.search(r'novanet_iptables_restore_seconds_count\{table="filter"\} [1-9]', text)
    # the test before allocated one address and the guest leased it
    assert 'novanet_fixed_ips{bridge="br100",network="10.0.0.0/24",state="leased"} 1.0' in text
    assert 'novanet_instances{host="compute-1"} 1.0' in text
    assert re.search(
        r'novanet_rpc_request_duration_seconds_count\{method="allocate_for_instance",outcome="ok"\} 1', text
    )
    assert re.search(r'novanet_dhcp_lease_events_total\{action="add"\} [1-9]', text), text
    assert status == 200 and controller.http("/nothing")[0] == 404


def test_sighup_reloads_and_never_exits(controller):
    log_before = controller.log.read_text()
    original = controller.flagfile.read_text()
    try:
        controller.flagfile.write_text(
            original.replace("--report_interval=1\n", "--report_interval=2\n")
            + "--debug=true\n--dhcp_lease_time=3600\n"
        )
        controller.proc.send_signal(signal.SIGHUP)
        assert controller.notify.wait_for("RELOADING")["RELOADING"] == "1"
        assert controller.notify.wait_for("READY")["READY"] == "1"
        wait_for(lambda: "SIGHUP: re-read" in controller.log.read_text(), "the reload's log line")
        new = controller.log.read_text()[len(log_before):]
        assert "applied: report_interval 1 -> 2, debug False -> True" in new or (
            "applied: debug False -> True, report_interval 1 -> 2" in new
        ), new
        assert "only taken into account after a restart: dhcp_lease_time 86400 -> 3600" in new
        # debug is on: the commands of the repair this provokes are logged
        controller.ctl.run(["iptables", "-F", "nova-api-INPUT"])
        wait_for(lambda: " DEBUG " in controller.log.read_text()[len(log_before):], "a DEBUG line")
        # a broken file changes nothing and stops nothing
        controller.flagfile.write_text(original + "--dhcp_lease_time=soon\n")
        controller.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration not reloaded" in controller.log.read_text(), "the refusal")
        assert "dhcp_lease_time" in controller.log.read_text().split("configuration not reloaded")[-1].splitlines()[0]
        assert controller.proc.poll() is None
        assert controller.notify.wait_for("WATCHDOG", timeout=10)
    finally:
        controller.flagfile.write_text(original)
        controller.proc.send_signal(signal.SIGHUP)
    assert controller.proc.poll() is None


def test_sigterm_says_stopping(controller):
    assert controller.stop() == 0
    assert any(m.get("STOPPING") == "1" for m in controller.notify.messages) or controller.notify.wait_for("STOPPING", 5)
    controller.start()
    assert controller.notify.wait_for("READY")["READY"] == "1"
