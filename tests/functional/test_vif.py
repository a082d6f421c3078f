"""tap and netns VIFs on a real kernel, inside a throwaway host namespace.

The compute host is a test namespace (entered with ``nsenter --net`` so
that the instance namespaces novanet creates land in the host's /run/netns,
where the test can see them). Instance namespace names are global: they get
the test run's prefix and are removed after the test, also on failure.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lib import netns as netns_lib
from tests.lib.netns import Namespace

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
ROOT_NETNS_INODE = os.stat("/proc/self/ns/net").st_ino
MAC = "fa:16:3e:2c:e8:ec"
MAC2 = "fa:16:3e:00:00:02"
_NAMES = itertools.count()


def novanet_in(ns: Namespace, code: str, lock_dir: Path) -> Any:
    """Run ``code`` inside ``ns`` with ``vifs`` and ``ip`` ready; returns ``result``."""
    program = (
        "import json, os\n"
        f"assert os.stat('/proc/self/ns/net').st_ino != {ROOT_NETNS_INODE}\n"
        "from novanet.linux.devices import VifDevices\n"
        "from novanet.linux.ip_lib import IpLib\n"
        "ip = IpLib()\n"
        f"vifs = VifDevices(ip, {str(lock_dir)!r})\n"
        f"result = None\n{code}\n"
        "print(json.dumps(result, default=str))\n"
    )
    proc = subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns.name}", sys.executable, "-c", program],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"novanet failed in the namespace:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def host(netns: Namespace) -> Namespace:
    """A compute host: br100 up (10.0.0.1/24 for the ping) and its own eth0."""
    netns.run(["ip", "link", "add", "br100", "type", "bridge", "forward_delay", "0"])
    netns.run(["ip", "link", "set", "br100", "up"])
    netns.run(["ip", "addr", "add", "10.0.0.1/24", "dev", "br100"])
    netns.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"])
    return netns


@pytest.fixture
def instance_ns() -> Iterator[str]:
    name = f"{netns_lib.PREFIX}i{next(_NAMES)}"
    try:
        yield name
    finally:
        netns_lib.Namespace(name).destroy()


def link_line(ns: Namespace, dev: str) -> str:
    return ns.run(["ip", "-d", "-o", "link", "show", dev]).stdout


def link_summary(ns: Namespace) -> list[tuple[str, bool, str | None, str | None]]:
    """Name, UP flag, master and MAC of each link (carrier and operstate move by themselves)."""
    links = []
    for line in ns.run(["ip", "-o", "link", "show"]).stdout.splitlines():
        flags = re.search(r"<([^>]*)>", line)
        master = re.search(r" master (\S+)", line)
        mac = re.search(r"link/\S+ (\S+)", line)
        links.append(
            (
                line.split(":")[1].strip(),
                flags is not None and "UP" in flags.group(1).split(","),
                master.group(1) if master else None,
                mac.group(1) if mac else None,
            )
        )
    return links


def netns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_tap_plug_and_unplug(host: Namespace, tmp_path: Path) -> None:
    assert novanet_in(host, f"result = vifs.plug('tap', {MAC!r}, 'br100')", tmp_path) == "vnet0"
    line = link_line(host, "vnet0")
    assert "tun type tap" in line
    assert "link/ether fe:16:3e:2c:e8:ec" in line
    assert "master br100" in line
    assert ",UP" in line or "<UP" in line
    assert "persist" in host.run(["ip", "tuntap", "show"]).stdout
    novanet_in(host, "vifs.unplug('vnet0')", tmp_path)
    assert "vnet0" not in host.run(["ip", "-o", "link"]).stdout


def test_netns_plug_and_unplug(host: Namespace, instance_ns: str, tmp_path: Path) -> None:
    name = novanet_in(
        host, f"result = vifs.plug('netns', {MAC!r}, 'br100', {instance_ns!r})", tmp_path
    )
    assert name == "vnet0"
    line = link_line(host, "vnet0")
    assert "veth" in line and "link/ether fe:16:3e:2c:e8:ec" in line and "master br100" in line
    assert instance_ns in netns_names()
    guest = Namespace(instance_ns)
    eth0 = guest.run(["ip", "-o", "link", "show", "eth0"]).stdout
    assert f"link/ether {MAC}" in eth0 and "state UP" in eth0
    assert "LOOPBACK,UP" in guest.run(["ip", "-o", "link", "show", "lo"]).stdout
    # the host's own eth0 is still there, untouched
    assert "eth0@eth0p" in host.run(["ip", "-o", "link", "show", "eth0"]).stdout
    assert host.run(["ip", "-o", "link", "show"]).stdout.count("tvnet") == 0
    # the guest reaches the bridge's address through the pair
    guest.run(["ip", "addr", "add", "10.0.0.2/24", "dev", "eth0"])
    guest.run(["busybox", "ping", "-c", "1", "-W", "2", "10.0.0.1"])

    novanet_in(host, f"vifs.unplug('vnet0', {instance_ns!r})", tmp_path)
    assert "vnet0" not in host.run(["ip", "-o", "link"]).stdout
    assert instance_ns not in netns_names()
    assert not os.path.exists(f"/run/netns/{instance_ns}")


def test_plug_twice_changes_nothing_and_list_finds_both(
    host: Namespace, instance_ns: str, tmp_path: Path
) -> None:
    code = (
        f"names = [vifs.plug_tap({MAC!r}, 'br100'),\n"
        f"         vifs.plug_netns({MAC2!r}, 'br100', {instance_ns!r})]\n"
        "result = names\n"
    )
    assert novanet_in(host, code, tmp_path) == ["vnet0", "vnet1"]
    before = (link_summary(host), link_summary(Namespace(instance_ns)))
    assert novanet_in(host, code, tmp_path) == ["vnet0", "vnet1"]
    after = (link_summary(host), link_summary(Namespace(instance_ns)))
    assert after == before
    listed = novanet_in(
        host, "result = [[v.name, v.vif_type, v.mac, v.bridge] for v in vifs.list()]", tmp_path
    )
    assert listed == [
        ["vnet0", "tap", "fe:16:3e:2c:e8:ec", "br100"],
        ["vnet1", "netns", "fe:16:3e:00:00:02", "br100"],
    ]


def test_a_full_bridge_is_named_and_leaves_no_half_made_tap(host: Namespace, tmp_path: Path) -> None:
    """A Linux bridge takes 1023 ports (BR_MAX_PORTS - 1): the 1024th plug fails clearly.

    The tap is persistent, so a tap created but not attached would outlive
    the failed plug; none may be left behind.
    """
    # eth0 is not on br100: fill it with 1023 ports of our own
    batch = "".join(
        f"link add f{i} type veth peer name g{i}\nlink set f{i} master br100\n" for i in range(1023)
    )
    host.run(["ip", "-batch", "-"], input=batch, timeout=300)
    code = (
        "try:\n"
        f"    vifs.plug('tap', {MAC!r}, 'br100')\n"
        "    result = 'plugged'\n"
        "except Exception as exc:\n"
        "    result = [type(exc).__name__, str(exc)]\n"
    )
    kind, message = novanet_in(host, code, tmp_path)
    assert kind == "NetlinkError"
    assert "bridge is full" in message and "1023 ports" in message, message
    assert "vnet" not in host.run(["ip", "-o", "link"]).stdout
    # and an unknown bridge: the tap is not left behind either
    kind, message = novanet_in(host, code.replace("'br100'", "'br999'"), tmp_path)
    assert kind == "LinkNotFound" and "br999" in message, message
    assert "vnet" not in host.run(["ip", "-o", "link"]).stdout
