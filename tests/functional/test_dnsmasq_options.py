"""nova's dnsmasq options on the wire: real dnsmasq 2.90, busybox udhcpc/nslookup, tcpdump.

Each test follows a nova unit test of test_linux_net.py (cited) but checks
what a guest receives, not the command line alone. Topology as in
test_dnsmasq_driver.py: ``srv`` holds br100 = 10.0.0.1/24 and dnsmasq,
``cli`` is the guest (eth0, busybox).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from pathlib import Path

import pytest

from novanet.dhcp.labels import dns_label
from novanet.dhcp.models import DhcpHost
from novanet.linux.iptables.declare import declare
from novanet.linux.iptables.manager import IptablesManager
from novanet.linux.iptables.runner import IptablesRunner
from novanet.network import rules
from novanet.network.manager import CONTROLLER_TABLES
from tests.functional.test_dnsmasq_driver import CIRROS, NET, Lab, build_topology, workdir  # noqa: F401

pytestmark = pytest.mark.root

ENV_SCRIPT = """#!/bin/sh
# udhcpc's script: keep what the lease said (bound/renew) for the test.
case "$1" in bound|renew) env | grep -E '^(ip|router|dns|hostname|domain|serverid)=' | sort > {out} ;; esac
exit 0
"""


@pytest.fixture
def lab(netns_factory, workdir):  # noqa: F811 - the fixture imported above
    srv, cli = netns_factory("srv"), netns_factory("cli")
    build_topology(srv, cli)
    yield Lab(srv, cli, workdir)


def lease(lab: Lab, mac: str) -> dict[str, str]:
    """DHCP in ``cli`` as ``mac``: the options udhcpc got ({} when none)."""
    out = lab.work / f"lease-{mac.replace(':', '')}"
    script = lab.work / "udhcpc-env"
    script.write_text(ENV_SCRIPT.format(out=out))
    script.chmod(0o755)
    lab.cli.run(["ip", "link", "set", "eth0", "address", mac])
    lab.cli.run(
        ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "3", "-T", "1", "-s", str(script)],
        check=False,
        timeout=20,
    )
    if not out.exists():
        return {}
    return dict(line.split("=", 1) for line in out.read_text().splitlines())


def cmdline(lab: Lab) -> list[str]:
    return Path(f"/proc/{lab.pid()}/cmdline").read_text().rstrip("\0").split("\0")


def test_empty_dhcp_domain(lab):
    # nova: test_dnsmasq_execute with dhcp_domain='' (no --domain) and _host_dhcp ("cirros.")
    lab.conf.set_override("dhcp_domain", "")
    lab.hosts = [CIRROS]
    lab.driver().enable(NET)
    assert not [a for a in cmdline(lab) if a.startswith("--domain")]
    assert lab.hostsfile.read_text() == "fa:16:3e:2c:e8:ec,cirros.,10.0.0.2\n"
    got = lease(lab, CIRROS.mac)
    assert got["ip"] == "10.0.0.2" and got["hostname"] == "cirros" and "domain" not in got


def test_dhcp_domain_reaches_the_guest(lab):
    lab.hosts = [CIRROS]
    lab.driver().enable(NET)
    got = lease(lab, CIRROS.mac)
    assert (got["hostname"], got["domain"]) == ("cirros", "novalocal")


@pytest.mark.parametrize("single", [False, True])
def test_use_single_default_gateway_gives_the_router_from_the_opts_file(lab, single):
    # nova: test_get_dhcp_opts_for_nw00 (NW-n,3,gateway) / ..._no_single_default_gateway.
    # A gateway other than the DHCP server shows which option the guest got:
    # without an opts line dnsmasq names itself as router.
    lab.conf.set_override("use_single_default_gateway", single)
    net = dataclasses.replace(NET, gateway="10.0.0.254")
    lab.hosts = [CIRROS]
    lab.driver().enable(net)
    got = lease(lab, CIRROS.mac)
    assert got["ip"] == "10.0.0.2"
    assert got["router"] == ("10.0.0.254" if single else "10.0.0.1")
    if single:
        assert lab.hostsfile.read_text().endswith(",net:NW-fa163e2ce8ec\n")
        assert (lab.networks / "nova-br100.opts").read_text() == "NW-fa163e2ce8ec,3,10.0.0.254\n"


def test_dns_server_is_where_dnsmasq_forwards(lab):
    # nova: test_dnsmasq_execute_dns_servers: --no-resolv --server=...; here an
    # upstream (a second dnsmasq on the server's loopback) answers the guest's query
    upstream_pid = lab.work / "upstream.pid"
    lab.srv.run(
        ["dnsmasq", "--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.53",
         "--conf-file=", f"--pid-file={upstream_pid}", "--address=/example.test/192.0.2.7"]
    )
    lab.conf.set_override("dns_server", ["127.0.0.53"])
    lab.hosts = [CIRROS]
    lab.driver().enable(NET)
    assert cmdline(lab)[-4:-2] == ["--no-resolv", "--server=127.0.0.53"]
    assert lease(lab, CIRROS.mac)["dns"] == "10.0.0.1"  # the guest asks dnsmasq ...
    lab.cli.run(["ip", "addr", "add", "10.0.0.2/24", "dev", "eth0"], check=False)
    answer = lab.cli.run(["busybox", "nslookup", "example.test", "10.0.0.1"], check=False)
    assert "192.0.2.7" in answer.stdout, answer.stdout + answer.stderr  # ... which asks upstream


def test_networks_sharing_a_bridge_are_served_by_one_dnsmasq(lab):
    # nova put `--num_networks 2` on one bridge (_do_create_networks); both get leases
    lab.srv.run(["ip", "addr", "add", "10.0.1.1/24", "brd", "10.0.1.255", "dev", "br100"])
    second = dataclasses.replace(
        NET, id=2, cidr="10.0.1.0/24", gateway="10.0.1.1", dhcp_server="10.0.1.1",
        dhcp_start="10.0.1.2", broadcast="10.0.1.255",
    )
    other = DhcpHost("fa:16:3e:00:01:02", "other", "10.0.1.2")
    lab.hosts = [CIRROS, other]
    lab.driver().enable(dataclasses.replace(NET, more=(second,)))
    assert lab.dnsmasq_pids() == [lab.pid()]
    first = lease(lab, CIRROS.mac)
    assert (first["ip"], first["router"], first["serverid"]) == ("10.0.0.2", "10.0.0.1", "10.0.0.1")
    got = lease(lab, other.mac)
    assert (got["ip"], got["router"], got["serverid"]) == ("10.0.1.2", "10.0.1.1", "10.0.1.1")


def test_a_long_name_reaches_the_guest_shortened_as_nova_did(lab):
    # nova: test_host_dhcp_truncated_hostname (LP #1238910: dnsmasq's 63 characters)
    name = dns_label("really_long_fake_instance02_to_test_hostname_truncation_when_too_long", "x")
    lab.hosts = [DhcpHost(CIRROS.mac, name, "10.0.0.2")]
    lab.driver().enable(NET)
    assert lease(lab, CIRROS.mac)["hostname"] == (
        "re-ng-fake-instance02-to-test-hostname-truncation-when-too-long"
    )


def _checksums(lab: Lab) -> list[str]:
    """Run DHCP once while tcpdump watches the guest's eth0; udp checksums of the replies."""
    dump = lab.work / "dump"
    with open(dump, "w") as out:
        tcpdump = lab.cli.popen(
            ["tcpdump", "-l", "-n", "-vv", "-i", "eth0", "udp", "dst", "port", "68"],
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)  # tcpdump opens its socket
            assert lease(lab, CIRROS.mac)["ip"] == "10.0.0.2"
            deadline = time.monotonic() + 5
            while len(re.findall(r"udp sum ok|bad udp cksum", dump.read_text())) < 2:
                assert time.monotonic() < deadline, dump.read_text()
                time.sleep(0.1)
        finally:
            tcpdump.terminate()
            tcpdump.wait()
    return re.findall(r"udp sum ok|bad udp cksum", dump.read_text())


@pytest.mark.parametrize("with_rule", [False, True])
def test_checksum_fill_gives_dhcp_replies_a_checksum(lab, with_rule):
    # nova: _add_dhcp_mangle_rule (LP #1029430, #1335193): dnsmasq's replies leave
    # the checksum to the NIC; over veth (and virtio/vhost-net) nobody fills it,
    # and a guest checking it (cirros' udhcpc of 2014, old dhclient) drops the reply.
    if with_rule:
        mgr = IptablesManager("network", IptablesRunner("auto", netns=lab.srv.name), tables=CONTROLLER_TABLES)
        wanted = rules.controller_rules(
            [NET], metadata_host="10.0.0.1", metadata_port=8775, routing_source_ip="10.0.0.1"
        )
        declare(mgr.ipv4, wanted)
        mgr.full_sync()
    lab.hosts = [CIRROS]
    lab.driver().enable(NET)
    sums = _checksums(lab)
    if with_rule:
        assert set(sums) == {"udp sum ok"}
    else:
        assert "bad udp cksum" in sums
