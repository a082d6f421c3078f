"""iptables_top_regex / iptables_bottom_regex on the real kernel (iptables-nft and legacy).

nova: linux_net.py IptablesManager._modify_rules (bug 1116562): rules of
other programs matching the top expression stay above nova's, those
matching the bottom one below. novanet never moves other programs' rules;
its own go below the last top match.
"""

from __future__ import annotations

import pytest

from novanet.linux.iptables.declare import declare
from novanet.linux.iptables.manager import IptablesManager
from novanet.linux.iptables.runner import IptablesRunner
from novanet.network import rules
from novanet.network.manager import CONTROLLER_TABLES
from tests.lib import netns as netns_lib

pytestmark = pytest.mark.root


class Net:
    bridge, cidr = "br100", "10.0.0.0/24"


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_top_and_bottom_regex(netns: netns_lib.Namespace, backend: str) -> None:
    def ipt(*args: str) -> None:
        netns.run([f"iptables-{backend}", "-w", *args])

    ipt("-N", "fail2ban-ssh")
    ipt("-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
    ipt("-A", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "fail2ban-ssh")
    ipt("-A", "INPUT", "-j", "DROP")
    mgr = IptablesManager(
        "network",
        IptablesRunner(backend, netns=netns.name, tables=CONTROLLER_TABLES),
        tables=CONTROLLER_TABLES,
        top_regex=r"-j fail2ban",
        bottom_regex=r"^-A INPUT -j DROP$",
    )
    declare(
        mgr.ipv4,
        rules.controller_rules(
            [Net()], metadata_host="10.0.0.1", metadata_port=8775, routing_source_ip="10.0.0.1"
        ),
    )
    mgr.full_sync()
    listing = netns.run([f"iptables-{backend}", "-S", "INPUT"]).stdout.splitlines()
    assert listing == [
        "-P INPUT ACCEPT",
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 22 -j fail2ban-ssh",
        "-A INPUT -j nova-network-INPUT",
        "-A INPUT -j DROP",
    ]
    assert mgr.check_and_repair(force=True) == []
