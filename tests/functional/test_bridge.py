"""ensure_bridge / ensure_gateway on a real kernel, inside throwaway namespaces.

novanet runs in a subprocess entered into the test namespace with
``nsenter --net`` (network namespace only, so /run/netns stays the host's);
the checks use ``ip netns exec`` from the test, as an operator would.
eth2 is a veth standing in for the flat interface (there is no dummy link
type on these kernels).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from novanet.linux.bridge import BridgeManager
from novanet.linux.fakes.netlink import FakeIpLib, FakeSysctl
from novanet.linux.netlink import PROTO_KERNEL, AddressInfo, RouteInfo
from tests.lib.netns import Namespace

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
ROOT_NETNS_INODE = os.stat("/proc/self/ns/net").st_ino

SETUP = """
from novanet.linux.bridge import BridgeManager
from novanet.linux.ip_lib import IpLib
from novanet.linux.sysctl import Sysctl
manager = BridgeManager(IpLib(), LOCK_DIR, Sysctl())
"""


def novanet_in(ns: Namespace, code: str, lock_dir: Path, timeout: float = 60) -> Any:
    """Run ``code`` with novanet inside ``ns``; it leaves its answer in ``result``."""
    return json.loads(_run(_popen(ns, code, lock_dir), timeout))


def _popen(ns: Namespace, code: str, lock_dir: Path) -> subprocess.Popen[str]:
    program = (
        "import json, os\n"
        # Never touch the host: refuse to run in the test runner's namespace.
        f"assert os.stat('/proc/self/ns/net').st_ino != {ROOT_NETNS_INODE}\n"
        f"LOCK_DIR = {str(lock_dir)!r}\n"
        f"result = None\n{SETUP}\n{code}\n"
        "print(json.dumps(result, default=str))\n"
    )
    return subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{ns.name}", sys.executable, "-c", program],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(proc: subprocess.Popen[str], timeout: float) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"novanet failed in the namespace:\n{err}"
    return out.strip().splitlines()[-1]


def flat_interface(ns: Namespace, *, with_config: bool = True) -> None:
    ns.run(["ip", "link", "add", "eth2", "type", "veth", "peer", "name", "eth2p"])
    ns.run(["ip", "link", "set", "eth2", "up"])
    ns.run(["ip", "link", "set", "eth2p", "up"])
    if with_config:
        ns.run(["ip", "addr", "add", "10.0.0.5/24", "brd", "+", "dev", "eth2"])
        ns.run(["ip", "addr", "add", "172.16.0.5/16", "dev", "eth2"])
        ns.run(["ip", "route", "add", "default", "via", "10.0.0.254", "dev", "eth2"])
        ns.run(["ip", "route", "add", "10.50.0.0/16", "via", "172.16.0.1", "metric", "50"])


def inet_lines(ns: Namespace, dev: str) -> list[str]:
    out = ns.run(["ip", "-4", "addr", "show", dev]).stdout
    return [line.strip() for line in out.splitlines() if line.strip().startswith("inet ")]


def kernel_state(ns: Namespace) -> dict[str, Any]:
    """What novanet controls, without what the kernel changes by itself.

    Carrier, operstate and bridge timers move on their own, and IPv6
    link-local routes appear when a link comes up: none of it is novanet's.
    """
    links = []
    for line in ns.run(["ip", "-o", "link", "show"]).stdout.splitlines():
        flags = re.search(r"<([^>]*)>", line)
        up = flags is not None and "UP" in flags.group(1).split(",")
        master = re.search(r" master (\S+)", line)
        mac = re.search(r"link/\S+ (\S+)", line)
        links.append(
            (line.split(":")[1].strip(), up, master and master.group(1), mac and mac.group(1))
        )
    return {
        "links": links,
        "addrs": ns.run(["ip", "-o", "-4", "addr", "show"]).stdout,
        "routes": ns.run(["ip", "-4", "route", "show", "table", "all"]).stdout,
        "bridge": [
            sys_value(ns, f"/sys/class/net/br100/bridge/{key}")
            for key in ("stp_state", "forward_delay")
        ],
    }


def sys_value(ns: Namespace, path: str) -> str:
    return ns.run(["cat", path]).stdout.strip()


def test_controller_bridge_gateway_first(netns: Namespace, tmp_path: Path) -> None:
    flat_interface(netns)
    result = novanet_in(
        netns,
        "result = [str(s) for s in manager.setup_controller('br100', 'eth2', '10.0.0.1/24', "
        "'10.0.0.255')]",
        tmp_path,
    )
    assert "create bridge br100 (forward delay 0, stp off)" in result

    assert inet_lines(netns, "br100") == [
        "inet 10.0.0.1/24 brd 10.0.0.255 scope global br100",
        "inet 172.16.0.5/16 scope global br100",
        "inet 10.0.0.5/24 brd 10.0.0.255 scope global secondary br100",
    ]
    assert inet_lines(netns, "eth2") == []
    assert "master br100" in netns.run(["ip", "link", "show", "eth2"]).stdout
    routes = [line.strip() for line in netns.run(["ip", "route", "show"]).stdout.splitlines()]
    assert "default via 10.0.0.254 dev br100" in routes
    assert "10.50.0.0/16 via 172.16.0.1 dev br100 metric 50" in routes
    assert "10.0.0.0/24 dev br100 proto kernel scope link src 10.0.0.1" in routes
    assert sys_value(netns, "/sys/class/net/br100/bridge/stp_state") == "0"
    assert sys_value(netns, "/sys/class/net/br100/bridge/forward_delay") == "0"
    assert sys_value(netns, "/proc/sys/net/ipv4/ip_forward") == "1"

    before = kernel_state(netns)
    again = novanet_in(
        netns,
        "result = [str(s) for s in manager.setup_controller('br100', 'eth2', '10.0.0.1/24', "
        "'10.0.0.255')]",
        tmp_path,
    )
    assert again == []
    assert kernel_state(netns) == before


def test_existing_bridge_with_other_first_address(netns: Namespace, tmp_path: Path) -> None:
    flat_interface(netns, with_config=False)
    netns.run(["ip", "link", "add", "br100", "type", "bridge", "stp_state", "1"])
    netns.run(["ip", "link", "set", "br100", "up"])
    netns.run(["ip", "addr", "add", "192.168.9.1/24", "dev", "br100"])
    netns.run(["ip", "addr", "add", "10.0.0.1/16", "dev", "br100"])
    netns.run(["ip", "route", "add", "default", "via", "192.168.9.254", "dev", "br100"])
    novanet_in(netns, "manager.setup_controller('br100', 'eth2', '10.0.0.1/24')", tmp_path)
    assert inet_lines(netns, "br100") == [
        "inet 10.0.0.1/24 brd 10.0.0.255 scope global br100",
        "inet 192.168.9.1/24 scope global br100",
    ]
    assert "default via 192.168.9.254 dev br100" in netns.run(["ip", "route"]).stdout
    assert sys_value(netns, "/sys/class/net/br100/bridge/stp_state") == "0"


def test_compute_bridge_has_no_address(netns: Namespace, tmp_path: Path) -> None:
    flat_interface(netns, with_config=False)
    netns.run(["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"])
    novanet_in(netns, "manager.setup_compute('br100', 'eth2')", tmp_path)
    assert inet_lines(netns, "br100") == []
    assert "master br100" in netns.run(["ip", "link", "show", "eth2"]).stdout
    assert sys_value(netns, "/proc/sys/net/bridge/bridge-nf-call-iptables") == "1"
    assert sys_value(netns, "/proc/sys/net/ipv4/ip_forward") == "0"


def test_two_processes_at_once_agree(netns: Namespace, tmp_path: Path) -> None:
    # Each round reorders the bridge's addresses (under the lock, as another
    # novanet would) so that every ensure call has to rebuild the address
    # list; without the lock the two rebuilds interleave and fail.
    flat_interface(netns)
    code = (
        "from novanet.linux.netlink import AddressInfo, PROTO_KERNEL\n"
        "ip = manager.ip\n"
        "def reorder():\n"
        "    with manager.locks.lock('bridge-br100'):\n"
        "        routes = [r for r in ip.routes('br100') if r.proto != PROTO_KERNEL]\n"
        "        for route in routes:\n"
        "            ip.delete_route(route)\n"
        "        for addr in reversed(ip.addresses('br100')):\n"
        "            ip.delete_address('br100', addr)\n"
        "        for cidr in ('172.16.0.5/16', '10.0.0.5/24', '10.0.0.1/24'):\n"
        "            ip.add_address('br100', AddressInfo.parse(cidr, '10.0.0.255' if\n"
        "                           cidr.startswith('10.') else None))\n"
        "        for route in routes:\n"
        "            ip.add_route(route)\n"
        "for _ in range(10):\n"
        "    manager.setup_controller('br100', 'eth2', '10.0.0.1/24', '10.0.0.255')\n"
        "    reorder()\n"
        "manager.setup_controller('br100', 'eth2', '10.0.0.1/24', '10.0.0.255')\n"
    )
    procs = [_popen(netns, code, tmp_path) for _ in range(2)]
    for proc in procs:
        _run(proc, 120)
    assert inet_lines(netns, "br100") == [
        "inet 10.0.0.1/24 brd 10.0.0.255 scope global br100",
        "inet 172.16.0.5/16 scope global br100",
        "inet 10.0.0.5/24 brd 10.0.0.255 scope global secondary br100",
    ]
    routes = netns.run(["ip", "route", "show"]).stdout
    assert "default via 10.0.0.254 dev br100" in routes
    assert "10.50.0.0/16 via 172.16.0.1 dev br100 metric 50" in routes


def test_fake_kernel_matches_real_kernel(netns: Namespace, tmp_path: Path) -> None:
    """The same starting point and calls give the same addresses and routes."""
    flat_interface(netns)
    netns.run(["ip", "addr", "add", "10.0.0.6/24", "brd", "+", "dev", "eth2"])
    real = novanet_in(
        netns,
        "manager.ensure_bridge('br100', 'eth2')\n"
        "moved = [str(a) for a in manager.ip.addresses('br100')]\n"
        "manager.ensure_gateway('br100', '10.0.0.1/24')\n"
        "result = {'moved': moved,\n"
        "          'final': [str(a) for a in manager.ip.addresses('br100')],\n"
        "          'routes': sorted(str(r) for r in manager.ip.routes('br100'))}",
        tmp_path,
    )
    fake = FakeIpLib()
    fake.add_link("eth2", up=True)
    for cidr, brd in (("10.0.0.5/24", "10.0.0.255"), ("172.16.0.5/16", None)):
        fake.add_address("eth2", AddressInfo.parse(cidr, brd))
    fake.add_route(RouteInfo.parse("default", "eth2", "10.0.0.254"))
    fake.add_route(RouteInfo.parse("10.50.0.0/16", "eth2", "172.16.0.1", metric=50))
    fake.add_address("eth2", AddressInfo.parse("10.0.0.6/24", "10.0.0.255"))
    manager = BridgeManager(fake, str(tmp_path / "fake"), FakeSysctl())
    manager.ensure_bridge("br100", "eth2")
    moved = [str(a) for a in fake.addresses("br100")]
    manager.ensure_gateway("br100", "10.0.0.1/24")
    assert real == {
        "moved": moved,
        "final": [str(a) for a in fake.addresses("br100")],
        "routes": sorted(str(r) for r in fake.routes("br100")),
    }
    assert all(r.proto == PROTO_KERNEL or r.device == "br100" for r in fake.routes("br100"))


DELETE_AND_REPAIR = """
manager.setup_controller('br100', 'eth2', '10.0.0.1/24', '10.0.0.255')
ip = manager.ip
ip.create_tap('vnet0', mac='fe:16:3e:00:00:01', bridge='br100')
index = ip.link('vnet0').index
ip.delete_link('br100')  # what `ip link del br100` does to the ports
ports = {n: (ip.link(n).master, ip.link(n).up) for n in ('eth2', 'vnet0')}
steps = [str(s) for s in manager.setup_controller('br100', 'eth2', '10.0.0.1/24', '10.0.0.255')]
ip.set_master('vnet0', 'br100')
result = {'ports': ports, 'steps': steps, 'same': ip.link('vnet0').index == index,
          'final': [str(a) for a in ip.addresses('br100')],
          'masters': [ip.link(n).master for n in ('eth2', 'vnet0')]}
"""


def test_a_deleted_bridge_on_the_fake_and_the_real_kernel(netns: Namespace, tmp_path: Path) -> None:
    """Deleting a bridge leaves its ports up without a master; the repair is one plan."""
    flat_interface(netns, with_config=False)
    real = novanet_in(netns, DELETE_AND_REPAIR, tmp_path)
    fake = FakeIpLib()
    fake.add_link("eth2", up=True)
    scope: dict[str, Any] = {
        "manager": BridgeManager(fake, str(tmp_path / "fake"), FakeSysctl()),
        "result": None,
    }
    exec(DELETE_AND_REPAIR, scope)  # noqa: S102 - the same code on the fake
    assert json.loads(json.dumps(scope["result"], default=str)) == real
    assert real["ports"] == {"eth2": [None, True], "vnet0": [None, True]}
    assert real["same"] and real["masters"] == ["br100", "br100"]
    assert real["final"] == ["10.0.0.1/24 brd 10.0.0.255"]
