"""The netlink layer under eventlet monkey patching, as the daemons run it.

A subprocess started with ``ip netns exec`` calls green.monkey_patch(), keeps
a green thread ticking every 10 ms, and meanwhile ensures a bridge and plugs
and unplugs netns and tap VIFs from several green threads at once. It
reports what it saw and the longest gap between two ticks: a blocked hub
shows up as a long gap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lib import netns as netns_lib
from tests.lib.netns import Namespace

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
ROOT_NETNS_INODE = os.stat("/proc/self/ns/net").st_ino

PROGRAM = r"""
import json, os, sys, time
assert os.stat('/proc/self/ns/net').st_ino != int(sys.argv[1])
from novanet.service import green
green.monkey_patch()

import eventlet
from novanet.linux.bridge import BridgeManager
from novanet.linux.devices import VifDevices
from novanet.linux.ip_lib import IpLib
from novanet.linux.processutils import execute
from novanet.linux.sysctl import Sysctl

lock_dir, prefix = sys.argv[2], sys.argv[3]
gaps = []
running = True

def ticker():
    last = time.monotonic()
    while running:
        eventlet.sleep(0.01)
        now = time.monotonic()
        gaps.append(now - last)
        last = now

tick = eventlet.spawn(ticker)
ip = IpLib()
ip.create_veth('eth2', 'eth2p')
bridges = BridgeManager(ip, lock_dir, Sysctl())
vifs = VifDevices(ip, lock_dir)
seen = {}

def instance(n):
    mac = 'fa:16:3e:00:00:%02x' % n
    ns = '%si%d' % (prefix, n)
    rounds = []
    for _ in range(3):
        name = vifs.plug('netns', mac, 'br100', ns)
        guest = ip.link('eth0', ns)
        iproute2 = execute(['ip', 'netns', 'exec', ns, 'ip', '-o', 'link', 'show', 'eth0'])[0]
        host = ip.link(name)
        rounds.append([guest.mac, guest.up, mac in iproute2, host.mac, host.master])
        vifs.unplug(name, ns)
        rounds.append([ip.netns_exists(ns), os.path.exists('/run/netns/' + ns), ip.link(name)])
    tap = vifs.plug('tap', mac, 'br100')
    link = ip.link(tap)
    rounds.append([link.kind, link.mac, link.master, link.up])
    vifs.unplug(tap)
    rounds.append(ip.link(tap))
    return rounds

started = time.monotonic()
steps = [str(s) for s in bridges.setup_controller('br100', 'eth2', '10.0.0.1/24')]
workers = [eventlet.spawn(instance, n) for n in range(4)]
seen['instances'] = [w.wait() for w in workers]
seen['steps'] = steps
seen['addresses'] = [str(a) for a in ip.addresses('br100')]
seen['left'] = [link.name for link in ip.links('vnet')] + [link.name for link in ip.links('tvnet')]
seen['elapsed'] = time.monotonic() - started
running = False
tick.wait()
seen['max_gap'] = max(gaps)
seen['dnspython'] = 'dns' in sys.modules  # eventlet's green resolver is off
import socket
seen['resolved'] = socket.getaddrinfo('localhost', 5672)[0][4][1]
seen['ticks'] = len(gaps)
print(json.dumps(seen))
"""


def test_bridge_and_vifs_under_monkey_patching(netns: Namespace, tmp_path: Path) -> None:
    prefix = f"{netns_lib.PREFIX}g"
    names = [f"{prefix}i{n}" for n in range(4)]
    try:
        proc = netns.run(
            [sys.executable, "-c", PROGRAM, str(ROOT_NETNS_INODE), str(tmp_path), prefix],
            timeout=120,
            cwd=REPO,
        )
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    seen = json.loads(proc.stdout.strip().splitlines()[-1])

    assert seen["addresses"] == ["10.0.0.1/24 brd 10.0.0.255"]
    assert "create bridge br100 (forward delay 0, stp off)" in seen["steps"]
    for n, rounds in enumerate(seen["instances"]):
        mac = f"fa:16:3e:00:00:{n:02x}"
        plugged = [mac, True, True, "fe" + mac[2:], "br100"]
        unplugged = [False, False, None]
        assert rounds == [plugged, unplugged] * 3 + [
            ["tap", "fe" + mac[2:], "br100", True],
            None,
        ]
    assert seen["left"] == []
    # The C library's resolver: no dnspython in a daemon (7 MB), names still resolve.
    assert seen["dnspython"] is False
    assert seen["resolved"] == 5672
    assert not any(os.path.exists(f"/run/netns/{name}") for name in names)
    # The hub kept running: no gap between two 10 ms ticks came near 0.5 s.
    assert seen["max_gap"] < 0.5, seen
    assert seen["ticks"] > seen["elapsed"] / 0.5
