"""novanet-compute's anti-spoofing table, with the real program (vif_antispoof).

The host of tests/functional/test_compute_agent.py (the agent in a namespace
like the seed's compute-1, a fake controller on the real RabbitMQ, the VM
network peer ``lan`` holding 10.0.0.1); forged frames come from the
instance's own namespace, and a watcher on ``lan`` reports what arrived.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.test_compute_agent import Host, iname, instance
from tests.lib import frames as fr
from tests.lib.broker import transport
from tests.lib.paths import world_readable_dir
from tests.lib.wait import wait_for

pytestmark = [pytest.mark.root, pytest.mark.rabbit]

MAC, IP = "fa:16:3e:00:00:01", "10.0.0.2"  # instance(1)
LAN_MAC = "02:00:00:00:00:01"


class AntispoofHost(Host):
    extra = ""

    def write_conf(self, allow_same_net: bool = True) -> Path:
        conf = super().write_conf(allow_same_net)
        conf.write_text(conf.read_text() + self.extra)
        return conf


@pytest.fixture(scope="module")
def host(vhost: object) -> Iterator[AntispoofHost]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    made_transport = transport(vhost)
    workdir = world_readable_dir("cmp")
    made = AntispoofHost(workdir, vhost, made_transport)
    try:
        made.lan.run(["ip", "link", "set", "eth0", "address", LAN_MAC])
        made.controller.instances = [instance(1)]
        made.start()
        made.in_instance(iname(1), ["ip", "addr", "add", f"{IP}/24", "dev", "eth0"], check=True)
        yield made
    finally:
        made.destroy()
        made_transport.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


def table(host: Host) -> str:
    result = host.cmp.run(["nft", "list", "table", "bridge", "novanet"], check=False)
    return result.stdout if result.returncode == 0 else ""


def forged_ip(n: int) -> bytes:
    return fr.ether(LAN_MAC, MAC, fr.ETH_P_IP, fr.icmp_echo("10.0.0.77", "10.0.0.1", 7, n))


def arrived(host: Host, forged: list[bytes], tag: str) -> list[bytes]:
    """The forged frames sent from instance 1 that reached ``lan`` (the marker ends the burst)."""
    watcher = fr.Watcher(host.lan.name, "eth0")
    try:
        fr.send(iname(1), "eth0", [*forged, fr.marker(MAC, IP, tag)])
        got = watcher.until(tag)
    finally:
        watcher.close()
    assert got is not None, "the instance's honest frame never arrived"
    return [frame for frame in forged if fr.contains(got, frame[14:])]


def test_the_instances_port_is_filtered(host: AntispoofHost) -> None:
    listing = table(host)
    assert 'elements = { "vnet0" }' in listing
    assert f'"vnet0" . {MAC}' in listing and f'"vnet0" . {IP}' in listing
    assert arrived(host, [forged_ip(1)], "start") == []
    assert host.ping_from_lan(IP)  # and the honest instance answers


def test_setup_and_teardown_over_rpc_add_and_remove_the_ports_filter(host: AntispoofHost) -> None:
    vm = instance(2, vif_type="tap")
    assert host.compute.setup_instance(vm) == {"devname": "vnet1"}
    listing = table(host)
    assert f'"vnet1" . {vm.mac}' in listing and f'"vnet1" . {vm.address}' in listing
    host.compute.teardown_instance(vm)
    assert "vnet1" not in table(host)


def test_a_flushed_table_comes_back_within_the_check_interval(host: AntispoofHost) -> None:
    host.cmp.run(["nft", "flush", "table", "bridge", "novanet"])
    wait_for(lambda: "iifname @vif_ports jump vif" in table(host), "the rules back", 15)
    said = "anti-spoofing repair: table bridge novanet written whole (its rules or sets were"
    wait_for(lambda: said in host.log.read_text(), "the repair in the log", 5)
    host.cmp.run(["nft", "delete", "table", "bridge", "novanet"])
    wait_for(lambda: f'"vnet0" . {MAC}' in table(host), "the table back", 15)
    assert arrived(host, [forged_ip(2)], "repaired") == []


def test_a_restart_keeps_filtering_the_whole_time(host: AntispoofHost) -> None:
    stop = threading.Event()
    answered = {"sent": 0, "ok": 0}
    watcher = fr.Watcher(host.lan.name, "eth0")
    seen: list[list[bytes] | None] = []

    def flood() -> None:
        while not stop.is_set():
            fr.send(iname(1), "eth0", [forged_ip(3)] * 50)

    def probe() -> None:
        while not stop.is_set():
            answered["sent"] += 1
            answered["ok"] += host.ping_from_lan(IP)

    # The watcher reads all along (the pings would fill its socket otherwise).
    threads = [threading.Thread(target=flood), threading.Thread(target=probe)]
    reader = threading.Thread(target=lambda: seen.append(watcher.until("restart", 120)))
    for thread in [*threads, reader]:
        thread.start()
    try:
        assert host.stop() == 0
        assert 'elements = { "vnet0" }' in table(host)  # SIGTERM leaves the table in place
        host.start()
        sent = answered["sent"]
        wait_for(lambda: answered["sent"] >= sent + 2, "two more probes after the restart", 30)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        fr.send(iname(1), "eth0", [fr.marker(MAC, IP, "restart")])
        reader.join()
        watcher.close()
    assert seen[0] is not None, "the instance's honest frame never arrived"
    leaked = [frame for frame in seen[0] if forged_ip(3)[14:] in frame]
    assert leaked == [], f"{len(leaked)} forged frames got through during the restart"
    assert answered["ok"] == answered["sent"], answered


def test_vif_antispoof_false_turns_it_off_with_a_warning(host: AntispoofHost) -> None:
    host.stop()
    host.extra = "--vif_antispoof=false\n"
    try:
        host.start()
        assert table(host) == ""
        assert "vif_antispoof is off: guests on this host can send with any" in host.log.read_text()
        assert arrived(host, [forged_ip(4)], "off") != []  # nothing stops them now
    finally:
        host.stop()
        host.extra = ""
        host.start()
    assert arrived(host, [forged_ip(5)], "on") == []
