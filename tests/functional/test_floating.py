"""Floating IPs with the real novanet-network in namespaces: address, rules, GARP, conntrack.

The seed's controller (tests/functional/test_network_daemon.py's topology:
``ctl`` with eth1 192.168.56.200 towards the gateway ``gw`` 192.168.56.101,
eth2 towards the guest ``vm``); the guest holds 10.0.0.2 statically (the
DHCP path is tested elsewhere), its instance row is written directly, and
``novanet-manage floating associate`` asks the daemon over RabbitMQ. No
compute host filters here: what the groups allow is tests/e2e/test_floating.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from novanet.db import instances
from novanet.ipam import pool
from novanet.linux.conntrack import Conntrack
from tests.functional.test_network_daemon import MAC, Controller
from tests.lib.paths import world_readable_dir
from tests.lib.wait import wait_for

pytestmark = [pytest.mark.root, pytest.mark.rabbit]

FLOAT = "192.168.56.225"
PY = sys.executable
LISTEN = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(); print('ready', flush=True)\n"
    "c, peer = s.accept(); print(peer[0], flush=True); c.sendall(b'hello'); c.close()\n"
)
CONNECT = (
    "import socket,sys\n"
    "s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
    "print(s.recv(16).decode()); s.close()\n"
)
RULES = [
    f"-A nova-network-OUTPUT -d {FLOAT}/32 -j DNAT --to-destination 10.0.0.2",
    f"-A nova-network-PREROUTING -d {FLOAT}/32 -j DNAT --to-destination 10.0.0.2",
    f"-A nova-network-float-snat -s 10.0.0.2/32 -j SNAT --to-source {FLOAT}",
]


@pytest.fixture(scope="module")
def cloud(vhost):
    workdir = world_readable_dir("fip")
    made = Controller(workdir, vhost)
    try:
        with open(made.flagfile, "a") as flags:
            flags.write("--send_arp_for_ha=true\n--send_arp_for_ha_count=2\n")
        made.manage("floating", "create", "--ip_range", "192.168.56.224/28")
        inst = instances.create_instance(
            made.db, display_name="vm", hostname="vm", host="compute-1", vif_type="tap"
        )
        alloc = pool.allocate_for_instance(made.db, network_id=1, instance_uuid=inst.uuid, mac=MAC)
        assert alloc.address == "10.0.0.2"
        instances.update_instance(made.db, inst.id, state="active")
        made.vm.run(["ip", "addr", "add", "10.0.0.2/24", "dev", "eth0"])
        made.vm.run(["ip", "route", "add", "default", "via", "10.0.0.1"])
        made.start()
        yield made
    finally:
        made.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def floating_rules(cloud) -> list[str]:
    return sorted(line for line in cloud.iptables("-t", "nat", "-S") if FLOAT in line)


def eth1_addresses(cloud) -> list[str]:
    out = cloud.ctl.run(["ip", "-4", "-o", "addr", "show", "dev", "eth1"]).stdout
    return [line.split()[3] for line in out.splitlines()]


def tcp(client, server, address: str, port: int) -> str:
    """Connect from ``client`` to ``address:port``; the peer address ``server`` saw."""
    listener = server.popen([PY, "-c", LISTEN, str(port)], stdout=subprocess.PIPE)
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        out = client.run([PY, "-c", CONNECT, address, str(port)], timeout=20)
        assert out.stdout.strip() == "hello"
        return listener.stdout.readline().strip()
    finally:
        listener.kill()
        listener.wait()


def ping(ns, address: str) -> bool:
    return ns.run(["ping", "-c", "1", "-W", "1", address], check=False).returncode == 0


def test_association_maps_the_address_both_ways_and_disassociation_undoes_it(cloud):
    garp = cloud.gw.popen(
        ["timeout", "20", "tcpdump", "-l", "-c", "1", "-nn", "-i", "eth1", "arp"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    out = cloud.manage("floating", "associate", FLOAT, "vm")
    assert f"floating IP {FLOAT} associated with instance instance-00000001 (vm): 10.0.0.2" in out
    # in place when the command returns: no waiting
    assert f"{FLOAT}/32" in eth1_addresses(cloud)
    assert floating_rules(cloud) == RULES
    seen, _ = garp.communicate(timeout=30)
    assert f"Reply {FLOAT} is-at" in seen  # gratuitous ARP on the segment

    # outside -> floating address: the guest sees the true client address
    assert ping(cloud.gw, FLOAT)
    assert tcp(cloud.gw, cloud.vm, FLOAT, 8022) == "192.168.56.101"
    # the guest -> outside: it leaves with its floating address
    assert tcp(cloud.vm, cloud.gw, "192.168.56.101", 8023) == FLOAT
    # the controller itself reaches it (nova-network-OUTPUT)
    assert tcp(cloud.ctl, cloud.vm, FLOAT, 8024) in ("192.168.56.200", FLOAT, "10.0.0.1")
    ct = Conntrack(cloud.ctl.name)
    assert ct.count_mapping(FLOAT) >= 3

    cloud.manage("floating", "disassociate", FLOAT)
    assert floating_rules(cloud) == [] and f"{FLOAT}/32" not in eth1_addresses(cloud)
    assert ct.count_mapping(FLOAT) == 0
    assert not ping(cloud.gw, FLOAT)
    # the guest leaves through the fixed range's SNAT again
    assert tcp(cloud.vm, cloud.gw, "192.168.56.101", 8025) == "192.168.56.200"


def test_restart_adopts_and_hand_deletions_come_back(cloud):
    cloud.manage("floating", "associate", FLOAT, "vm")
    before = cloud.save()
    assert cloud.stop() == 0
    cloud.start()
    assert cloud.save() == before
    assert eth1_addresses(cloud).count(f"{FLOAT}/32") == 1

    cloud.ctl.run(["ip", "addr", "del", f"{FLOAT}/32", "dev", "eth1"])
    cloud.ctl.run(
        ["iptables", "-t", "nat", "-D", "nova-network-PREROUTING", "-d", f"{FLOAT}/32",
         "-j", "DNAT", "--to-destination", "10.0.0.2"]
    )
    wait_for(lambda: f"{FLOAT}/32" in eth1_addresses(cloud), "the address to come back", 20)
    wait_for(lambda: floating_rules(cloud) == RULES, "the DNAT rule to come back", 20)
    assert ping(cloud.gw, FLOAT)
    cloud.manage("floating", "disassociate", FLOAT)
    assert floating_rules(cloud) == []
