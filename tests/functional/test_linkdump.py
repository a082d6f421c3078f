"""The lean link dump (novanet.linux.linkdump) against pyroute2's full decoding, on a real kernel.

Both read the same namespace holding every kind of device novanet meets:
lo, a bridge with ports, a veth whose peer is in another namespace (its
link-netnsid), a tap on the bridge, a tun, devices up and down, a MAC set by
hand and a promiscuous NIC. The lean dump must give exactly the LinkInfo
values pyroute2's decoding gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from novanet.linux.linkdump import dump_links
from tests.lib.netns import Namespace

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
ROOT_NETNS_INODE = os.stat("/proc/self/ns/net").st_ino

COMPARE = f"""
import dataclasses, json, os
assert os.stat('/proc/self/ns/net').st_ino != {ROOT_NETNS_INODE}
from pyroute2 import IPRoute
from novanet.linux import rtnl
from novanet.linux.linkdump import dump_links
with IPRoute() as ipr:
    msgs = list(ipr.link("dump"))
    names = {{m["index"]: m.get("ifname") for m in msgs}}
    full = [dataclasses.asdict(rtnl.link_info(m, names)) for m in msgs]
lean = [dataclasses.asdict(link) for link in dump_links()]
print(json.dumps({{"full": full, "lean": lean}}))
"""


def test_the_lean_dump_reads_what_pyroute2_decodes(netns_factory) -> None:
    host: Namespace = netns_factory("ld")
    peer: Namespace = netns_factory("lp")
    host.run(["ip", "link", "add", "br100", "type", "bridge"])
    host.run(["ip", "link", "set", "br100", "up"])
    host.run(["ip", "link", "add", "eth2", "type", "veth", "peer", "name", "eth0", "netns", peer.name])
    host.run(["ip", "link", "set", "eth2", "master", "br100", "up", "promisc", "on"])
    host.run(["ip", "link", "add", "vnet0", "type", "veth", "peer", "name", "tvnet0"])
    host.run(["ip", "link", "set", "vnet0", "address", "fe:16:3e:2c:e8:ec", "mtu", "1400"])
    host.run(["ip", "tuntap", "add", "vnet1", "mode", "tap"])
    host.run(["ip", "link", "set", "vnet1", "master", "br100", "up"])
    host.run(["ip", "tuntap", "add", "tun0", "mode", "tun"])
    proc = subprocess.run(
        ["nsenter", f"--net=/run/netns/{host.name}", sys.executable, "-c", COMPARE],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["lean"] == seen["full"]
    by_name = {link["name"]: link for link in seen["lean"]}
    assert by_name["vnet1"]["kind"] == "tap" and by_name["vnet1"]["master"] == "br100"
    assert by_name["tun0"]["kind"] == "tun"
    assert by_name["eth2"]["link_netnsid"] is not None and by_name["eth2"]["promisc"]
    assert by_name["vnet0"]["mac"] == "fe:16:3e:2c:e8:ec" and by_name["vnet0"]["mtu"] == 1400
    # The same from outside, through a socket made inside the namespace.
    outside = [link.name for link in dump_links(host.name)]
    assert outside == [link["name"] for link in seen["full"]]
