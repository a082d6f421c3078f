"""nova's dnsmasq options, against nova's own unit tests (nova/tests/unit/network/test_linux_net.py).

The seed's command line stays exactly the seed's while none of them is set
(test_argv.py); each option adds only what nova added.
"""

from __future__ import annotations

import dataclasses

import pytest

from novanet import conf as novanet_conf
from novanet.conf import loader
from novanet.dhcp import hostsdir, hostsfile
from novanet.dhcp.argv import build_command
from novanet.dhcp.models import DhcpHost
from tests.lib.dhcp import dhcp_network
from tests.lib.paths import SEED

SEED_NET = dhcp_network(dns1="8.8.4.4")
EXTRAS = ["--no-hosts", "--dhcp-authoritative"]


def seed_conf(**overrides):
    conf = novanet_conf.new_conf()
    conf.set_override("networks_path", "/var/lib/nova/networks")
    conf.set_override("dhcpbridge", "/usr/bin/nova-dhcpbridge")
    conf.set_override("dhcp_lease_time", 120)
    for name, value in overrides.items():
        conf.set_override(name, value)
    return conf


def argv(net=SEED_NET, **overrides) -> list[str]:
    return list(build_command(seed_conf(**overrides), net).argv)


SEED_ARGV = (SEED / "controller-dnsmasq-argv.txt").read_text().split()


def test_none_set_gives_the_seed_line():
    assert argv() == SEED_ARGV + EXTRAS


def test_dns_server():
    # nova: test_dnsmasq_execute_dns_servers
    got = argv(dns_server=["1.1.1.1", "2.2.2.2"])
    assert got == SEED_ARGV + EXTRAS + ["--no-resolv", "--server=1.1.1.1", "--server=2.2.2.2"]


def test_use_network_dns_servers():
    # nova: test_dnsmasq_execute_use_network_dns_servers
    got = argv(use_network_dns_servers=True)
    assert got == SEED_ARGV + EXTRAS + ["--no-resolv", "--server=8.8.4.4"]


def test_dns_server_then_the_networks_each_once():
    # nova: restart_dhcp appends dns1/dns2 to dns_server (it could name one twice)
    net = dataclasses.replace(SEED_NET, dns2="9.9.9.9")
    got = argv(net, dns_server=["8.8.4.4", "/corp.example/10.9.0.53"], use_network_dns_servers=True)
    assert got[len(SEED_ARGV) + 2 :] == [
        "--no-resolv", "--server=8.8.4.4", "--server=/corp.example/10.9.0.53", "--server=9.9.9.9",
    ]


@pytest.mark.parametrize("value", ["8.8.8", "dns.example.org", "1.1.1.1 2.2.2.2", "1.1.1.1#99999"])
def test_a_bad_dns_server_stops_the_program_at_start(tmp_path, value):
    path = tmp_path / "nova.conf"
    path.write_text(f"--dns_server=1.1.1.1\n--dns_server={value}\n")
    conf = novanet_conf.new_conf()
    with pytest.raises(loader.ConfigError, match=r"dns_server.*nova.conf:2"):
        loader.load(conf, [loader.Source("flag", str(path))])


def test_dns_server_from_a_flagfile_repeats(tmp_path):
    path = tmp_path / "nova.conf"
    path.write_text("--dns_server=1.1.1.1\n--dns_server=2.2.2.2#5353\n")
    conf = novanet_conf.new_conf()
    loader.load(conf, [loader.Source("flag", str(path))])
    assert conf.dns_server == ["1.1.1.1", "2.2.2.2#5353"]


def test_empty_dhcp_domain_is_nova_s():
    # nova: test_dnsmasq_execute (dhcp_domain '' then default): no --domain ...
    assert "--domain=novalocal" not in argv(dhcp_domain="")
    # ... and _host_dhcp's '%s,%s.%s,%s': "cirros." (dnsmasq serves "cirros": functional test)
    host = DhcpHost("fa:16:3e:2c:e8:ec", "cirros", "10.0.0.2")
    assert hostsfile.render([host], "") == "fa:16:3e:2c:e8:ec,cirros.,10.0.0.2\n"


def test_use_single_default_gateway_tags_hosts_and_reads_the_opts_file():
    # nova: test_get_dhcp_hosts_for_nw00 ("...,net:NW-0") and test_get_dhcp_opts_for_nw00
    # ("NW-0,3,192.168.0.1"): a tag per host, the router option per tag.
    got = argv(use_single_default_gateway=True)
    assert got == SEED_ARGV + EXTRAS + ["--dhcp-optsfile=/var/lib/nova/networks/nova-br100.opts"]
    entries = hostsfile.select_hosts(
        [DhcpHost("fa:16:3e:2c:e8:ec", "cirros", "10.0.0.2"), DhcpHost("fa:16:3e:00:00:03", "b", "10.0.0.3")]
    )
    assert hostsfile.hostsfile_text(entries, "novalocal", tagged=True) == (
        "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2,net:NW-fa163e2ce8ec\n"
        "fa:16:3e:00:00:03,b.novalocal,10.0.0.3,net:NW-fa163e000003\n"
    )
    assert hostsfile.opts_text(entries, "10.0.0.1") == (
        "NW-fa163e2ce8ec,3,10.0.0.1\nNW-fa163e000003,3,10.0.0.1\n"
    )
    update = hostsdir.plan(
        hostsdir.LoadedHosts.fresh([], 0.0),
        {e.mac: e for e in entries},
        {e.mac for e in entries},
        set(),
        0.0,
        compact_interval=60,
        max_files=10,
    )
    assert ",net:NW-fa163e2ce8ec" in hostsdir.file_text(update, "novalocal", tagged=True)


def test_networks_sharing_a_bridge_share_one_dnsmasq():
    # nova gave all networks of `network create --num_networks 2` one bridge
    # (manager.py _do_create_networks); novanet's one dnsmasq serves both.
    second = dhcp_network("10.0.1.0/24")
    shared = dataclasses.replace(SEED_NET, more=(second,))
    got = argv(shared)
    assert got == SEED_ARGV[:9] + ["--dhcp-lease-max=512"] + SEED_ARGV[10:] + EXTRAS + [
        "--listen-address=10.0.1.1",
        "--dhcp-range=10.0.1.2,static,120s",
    ]
