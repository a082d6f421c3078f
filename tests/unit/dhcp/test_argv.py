"""dnsmasq's command line against the seed's listing."""

from __future__ import annotations

import dataclasses

import pytest

from novanet import conf as novanet_conf
from novanet.dhcp.argv import EXTRA_ARGUMENTS_DOC, build_command, network_files
from novanet.exception import UsageError
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


def seed_argv():
    return (SEED / "controller-dnsmasq-argv.txt").read_text().split()


def test_exactly_the_seeds_arguments_then_the_extras():
    command = build_command(seed_conf(), SEED_NET)
    assert list(command.argv) == seed_argv() + EXTRAS


def test_paths_follow_networks_path_and_dhcpbridge():
    conf = seed_conf(networks_path="/srv/nn", dhcpbridge="/opt/bin/novanet-dhcpbridge")
    argv = build_command(conf, SEED_NET).argv
    assert "--pid-file=/srv/nn/nova-br100.pid" in argv
    assert "--dhcp-hostsfile=/srv/nn/nova-br100.conf" in argv
    assert "--dhcp-script=/opt/bin/novanet-dhcpbridge" in argv
    files = network_files(conf, "br100")
    assert (files.pid_file, files.hostsfile, files.hostsdir) == (
        "/srv/nn/nova-br100.pid",
        "/srv/nn/nova-br100.conf",
        "/srv/nn/nova-br100.d",
    )


def test_lease_time_and_range():
    argv = build_command(seed_conf(dhcp_lease_time=86400), SEED_NET).argv
    assert "--dhcp-range=10.0.0.2,static,86400s" in argv


def test_empty_domain_leaves_the_argument_out():
    argv = build_command(seed_conf(dhcp_domain=""), SEED_NET).argv
    assert not [a for a in argv if a.startswith("--domain")]
    assert list(argv) == [a for a in seed_argv() if a != "--domain=novalocal"] + EXTRAS


@pytest.mark.parametrize("domain", ["a,b", "bad domain", "x\ny", "-x.org", "a..b"])
def test_bad_domain_is_a_config_error(domain):
    with pytest.raises(UsageError, match="dhcp_domain"):
        build_command(seed_conf(dhcp_domain=domain), SEED_NET)


def test_conf_file_value_kept():
    argv = build_command(seed_conf(dnsmasq_config_file="/etc/novanet/dnsmasq.conf"), SEED_NET).argv
    assert argv[3] == "--conf-file=/etc/novanet/dnsmasq.conf"


@pytest.mark.parametrize(
    ("cidr", "lease_max_opt", "expected"),
    [
        ("10.0.0.0/24", 0, 256),
        ("10.0.0.0/28", 0, 256),
        ("10.0.0.0/23", 0, 512),
        ("10.0.0.0/16", 0, 65536),
        ("10.0.0.0/16", 5000, 5000),
    ],
)
def test_lease_max(cidr, lease_max_opt, expected):
    net = dataclasses.replace(SEED_NET, cidr=cidr)
    argv = build_command(seed_conf(dhcp_lease_max=lease_max_opt), net).argv
    assert f"--dhcp-lease-max={expected}" in argv


def test_network_dns_servers_only_with_the_option():
    net = dataclasses.replace(SEED_NET, dns1="8.8.4.4", dns2="8.8.8.8")
    assert "--no-resolv" not in build_command(seed_conf(), net).argv
    argv = build_command(seed_conf(use_network_dns_servers=True), net).argv
    assert list(argv[len(seed_argv()) :]) == EXTRAS + [
        "--no-resolv",
        "--server=8.8.4.4",
        "--server=8.8.8.8",
    ]
    same = dataclasses.replace(SEED_NET, dns1="1.1.1.1", dns2="1.1.1.1")
    argv = build_command(seed_conf(use_network_dns_servers=True), same).argv
    assert [a for a in argv if a.startswith("--server")] == ["--server=1.1.1.1"]
    none = dataclasses.replace(SEED_NET, dns1=None, dns2=None)
    argv = build_command(seed_conf(use_network_dns_servers=True), none).argv
    assert "--no-resolv" not in argv


def test_hostsdir_mode_appends_one_argument():
    argv = build_command(seed_conf(), SEED_NET, hostsdir=True).argv
    assert list(argv) == seed_argv() + EXTRAS + [
        "--dhcp-hostsdir=/var/lib/nova/networks/nova-br100.d"
    ]


def test_extra_args_go_last():
    argv = build_command(seed_conf(), SEED_NET, extra_args=["--log-dhcp"]).argv
    assert argv[-1] == "--log-dhcp"


def test_script_environment():
    command = build_command(seed_conf(), SEED_NET)
    assert command.env == {"NOVANET_NETWORK_ID": "1"}
    conf = seed_conf(dhcpbridge_flagfile=["/etc/nova/nova.conf", "/etc/nova/extra.conf"])
    command = build_command(conf, SEED_NET, script_env={"NOVANET_NETWORK_ID": "7", "OTHER": "x"})
    assert command.env == {
        "NOVANET_NETWORK_ID": "7",
        "NOVANET_CONFIG_FILES": '[["config", "/etc/nova/nova.conf"], '
        '["config", "/etc/nova/extra.conf"]]',
        "OTHER": "x",
    }


@pytest.mark.parametrize("field", ["dhcp_server", "dhcp_start"])
def test_bad_addresses_refused(field):
    net = dataclasses.replace(SEED_NET, **{field: "10.0.0.1,tag:x"})
    with pytest.raises(UsageError):
        build_command(seed_conf(), net)


@pytest.mark.parametrize("bridge", ["", "../x", "a/b"])
def test_bad_bridge_names_refused(bridge):
    with pytest.raises(UsageError):
        network_files(seed_conf(), bridge)


def test_every_extra_argument_is_documented():
    conf = seed_conf(use_network_dns_servers=True)
    net = dataclasses.replace(SEED_NET, dns2="8.8.8.8")
    argv = build_command(conf, net, hostsdir=True).argv
    for arg in argv[len(seed_argv()) :]:
        assert arg.split("=")[0] in EXTRA_ARGUMENTS_DOC
