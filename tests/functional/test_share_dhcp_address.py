"""share_dhcp_address on a real bridge: the DHCP server address is cut off from the wire.

nova: linux_net.py isolate_dhcp_address (test_linux_net.py test_isolated_host).
``ctl`` holds br100 = 10.0.0.1/24 with two ports: ``eth2``, the wire to a
guest on another host (``far``), and ``vnet0``, a guest on this host
(``near``). With the rules, only ``near`` reaches 10.0.0.1, and DHCP is not
bridged between the wire and the local guests.
"""

from __future__ import annotations

import pytest

from novanet.linux import processutils
from novanet.linux.ebtables import Ebtables, dhcp_isolation_rules
from tests.lib.netns import veth_between

pytestmark = pytest.mark.root


@pytest.fixture
def hosts(netns_factory):
    ctl, far, near = netns_factory("ctl"), netns_factory("far"), netns_factory("near")
    ctl.run(["ip", "link", "add", "br100", "type", "bridge"])
    ctl.run(["ip", "addr", "add", "10.0.0.1/24", "dev", "br100"])
    ctl.run(["ip", "link", "set", "br100", "up"])
    veth_between(ctl, "eth2", far, "eth0")
    veth_between(ctl, "vnet0", near, "eth0")
    for port in ("eth2", "vnet0"):
        ctl.run(["ip", "link", "set", port, "master", "br100"])
    far.run(["ip", "addr", "add", "10.0.0.3/24", "dev", "eth0"])
    near.run(["ip", "addr", "add", "10.0.0.4/24", "dev", "eth0"])
    return ctl, far, near


def reaches(ns, address: str) -> bool:
    return ns.run(["ping", "-c", "1", "-W", "1", address], check=False).returncode == 0


def test_isolation_rules_cut_the_dhcp_address_off_the_wire(hosts):
    ctl, far, near = hosts
    assert reaches(far, "10.0.0.1") and reaches(near, "10.0.0.1")
    for ns in (far, near):
        ns.run(["ip", "neigh", "flush", "all"])

    def in_ctl(cmd, **kw):
        return processutils.execute(["ip", "netns", "exec", ctl.name, *cmd], **kw)

    isolation = dhcp_isolation_rules("eth2", "10.0.0.1")
    Ebtables(execute=in_ctl).ensure(isolation)
    Ebtables(execute=in_ctl).ensure(isolation)  # idempotent, as nova's -D then -I
    listing = ctl.run(["ebtables", "-t", "filter", "-L"]).stdout
    assert listing.count("-j DROP") == 4
    assert not reaches(far, "10.0.0.1")  # no ARP answer for the shared address
    assert reaches(near, "10.0.0.1")  # the local guest still has its gateway
    assert reaches(far, "10.0.0.4")  # everything else is bridged as before
    Ebtables(execute=in_ctl).remove(isolation)
    far.run(["ip", "neigh", "flush", "all"])
    assert reaches(far, "10.0.0.1")
