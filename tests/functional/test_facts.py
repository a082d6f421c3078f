"""facts.gather in a throwaway namespace: the real kernel's values come back as they are."""

from __future__ import annotations

import json
import sys

import pytest

pytestmark = pytest.mark.root


def test_gather_reads_the_namespaces_kernel(netns, tmp_path):
    for cmd in (
        ["ip", "link", "add", "br100", "type", "bridge"],
        ["ip", "link", "add", "eth2", "type", "veth", "peer", "name", "peer2"],
        ["ip", "link", "set", "eth2", "master", "br100"],
        ["ip", "link", "set", "eth2", "up", "promisc", "on"],
        ["ip", "link", "set", "peer2", "master", "br100"],
        ["ip", "link", "set", "br100", "up"],
        ["ip", "addr", "add", "10.0.0.1/24", "brd", "10.0.0.255", "dev", "br100"],
        ["ip", "route", "add", "default", "via", "10.0.0.254"],
        ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ["iptables", "-N", "nova-network-snat", "-t", "nat"],
        ["iptables", "-t", "nat", "-A", "nova-network-snat", "-s", "10.0.0.0/24", "-j", "SNAT",
         "--to-source", "192.168.56.200"],
    ):  # fmt: skip
        netns.run(cmd)
    flags = tmp_path / "nova.conf"
    flags.write_text(f"--host=ctl\n--flat_network_bridge=br100\n--state_path={tmp_path}\n")
    out = netns.run(
        [sys.executable, "-m", "novanet.explain.facts", "network", "--flagfile", str(flags)]
    ).stdout
    facts = json.loads(out)
    links = {li["name"]: li for li in facts["links"]}
    assert links["br100"]["kind"] == "bridge" and links["br100"]["up"]
    assert links["br100"]["addresses"] == ["10.0.0.1/24"]
    assert links["eth2"]["master"] == "br100" and links["eth2"]["kind"] == "veth"
    assert links["eth2"]["promisc"]  # asked for, as the seed's "ifconfig eth2 up promisc"
    assert not links["peer2"]["promisc"]  # only the bridge's own promiscuity
    assert {"dst": "0.0.0.0/0", "gateway": "10.0.0.254", "dev": "br100", "src": None} in (
        facts["routes"]
    )
    assert facts["sysctl"]["net.ipv4.ip_forward"] == "1"
    assert "-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 192.168.56.200" in (
        facts["iptables"]["nat"]
    )
    assert facts["dnsmasq"] == {"running": False, "pid": None, "argv": []}
    assert facts["host"] == "ctl" and facts["errors"] == []
