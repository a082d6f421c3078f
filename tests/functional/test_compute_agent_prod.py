"""novanet-compute as systemd runs it: the unit's one capability, notify, SIGHUP, request ids.

The agent runs in the compute namespace of test_compute_agent (the test
plays the controller over the real RabbitMQ) as root bounded to exactly the
capabilities of systemd/novanet-compute.service, with no_new_privs, its
system-call filter and MemoryDenyWriteExecute (tests/lib/sandbox.py), and
NOTIFY_SOCKET pointing at a real unix datagram socket of this test. Its
instances are tap VIFs (what that unit is for).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from novanet.rpc import context
from tests.functional.test_compute_agent import BIN, Host, iname, instance
from tests.lib.broker import transport
from tests.lib.paths import ROOT, world_readable_dir
from tests.lib.units import NotifySocket, sandboxed
from tests.lib.wait import wait_for

pytestmark = [pytest.mark.root, pytest.mark.rabbit]

UNIT = "novanet-compute.service"


class SystemdHost(Host):
    def __init__(self, workdir: Path, vhost, made_transport) -> None:
        super().__init__(workdir, vhost, made_transport)
        self.notify = NotifySocket(workdir / "notify.sock")

    def start(self, allow_same_net: bool = True, timeout: float = 40) -> None:
        conf = self.write_conf(allow_same_net)
        env = dict(os.environ, NOTIFY_SOCKET=str(self.notify.path), WATCHDOG_USEC="2000000")
        mark = self.log.read_text().count("serving RPC") if self.log.exists() else 0
        self.proc = self.cmp.popen_shared(
            [*sandboxed(UNIT), str(BIN / "novanet-compute"), "--flagfile", str(conf)],
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT, env=env, cwd=str(ROOT),  # noqa: SIM115
        )
        try:
            wait_for(lambda: self.log.read_text().count("serving RPC") > mark, "the agent to serve RPC", timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log:\n{self.log.read_text()[-3000:]}") from None

    def destroy(self) -> None:
        super().destroy()
        self.notify.close()


@pytest.fixture(scope="module")
def host(vhost):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    made_transport = transport(vhost)
    workdir = world_readable_dir("cmpsd")
    made = SystemdHost(workdir, vhost, made_transport)
    try:
        made.controller.instances = [instance(1, vif_type="tap")]
        made.start()
        yield made
    finally:
        made.destroy()
        made_transport.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def test_it_does_its_job_with_only_the_units_capabilities(host):
    assert host.notify.wait_for("READY")["READY"] == "1"
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{host.proc.pid}/status").read_text().splitlines()
    )
    assert int(status["CapBnd"], 16) == 1 << 12  # CAP_NET_ADMIN alone
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # the unit's SystemCallFilter (tests/lib/sandbox.py)
    # the instance the controller listed: a tap on br100 and its chain
    assert "master br100" in host.cmp.run(["ip", "-o", "link", "show", "vnet0"]).stdout
    assert "tun" in host.cmp.run(["ip", "-d", "link", "show", "vnet0"]).stdout
    rules = host.cmp.run(["iptables", "-S"]).stdout.splitlines()
    assert "-A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-1" in rules
    # plug and unplug over RPC, with the caller's request id in the agent's log
    vm = instance(2, vif_type="tap")
    with context.bound() as request_id:
        assert host.compute.setup_instance(vm) == {"devname": "vnet1"}
    line = next(x for x in host.log.read_text().splitlines() if f"plugged {iname(2)}" in x)
    assert f"[{request_id}]" in line
    assert "-A nova-compute-local -d 10.0.0.3/32 -j nova-compute-inst-2" in host.cmp.run(["iptables", "-S"]).stdout
    # its anti-spoofing filter too: nft and nfnetlink work within the same bounds
    macs = host.cmp.run(["nft", "list", "set", "bridge", "novanet", "vif_macs"]).stdout
    assert f'"vnet0" . {instance(1).mac}' in macs and f'"vnet1" . {vm.mac}' in macs
    host.compute.teardown_instance(vm)
    assert "inst-2" not in host.cmp.run(["iptables", "-S"]).stdout
    # a flushed chain is repaired
    host.cmp.run(["iptables", "-F", "nova-compute-inst-1"])
    wait_for(lambda: "-j nova-compute-sg-fallback" in host.cmp.run(["iptables", "-S", "nova-compute-inst-1"]).stdout,
             "the repair", 10)
    host.cmp.run(["nft", "flush", "table", "bridge", "novanet"])
    wait_for(lambda: "jump vif" in host.cmp.run(["nft", "list", "table", "bridge", "novanet"]).stdout,
             "the anti-spoofing repair", 10)
    wait_for(lambda: host.controller.heartbeats > 0, "a heartbeat")


def test_sighup_does_not_stop_it(host):
    """It used to exit silently on SIGHUP (Python's default action)."""
    before = host.log.read_text()
    for _ in range(3):
        host.proc.send_signal(signal.SIGHUP)
        assert host.notify.wait_for("RELOADING")["RELOADING"] == "1"
        assert host.notify.wait_for("READY")["READY"] == "1"
    wait_for(lambda: host.log.read_text().count("SIGHUP: re-read") >= 3 + before.count("SIGHUP: re-read"),
             "three reloads")
    assert "nothing changed" in host.log.read_text()[len(before):]
    assert host.proc.poll() is None
    heartbeats = host.controller.heartbeats
    wait_for(lambda: host.controller.heartbeats > heartbeats, "heartbeats after the reloads")
    assert host.notify.wait_for("WATCHDOG", timeout=10)["WATCHDOG"] == "1"
