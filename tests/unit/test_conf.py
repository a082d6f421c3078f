"""Configuration: nova flagfiles, INI files, legacy aliases, errors with file:line."""

from __future__ import annotations

import logging
import textwrap

import pytest

from novanet import conf as novanet_conf
from novanet.conf import loader, rpc
from tests.lib.paths import ROOT
from tests.lib.paths import SEED as SEED_DIR

SEED = str(SEED_DIR / "controller-nova.conf")
SEED_LINES = textwrap.dedent(
    """\
    --public_interface=eth1
    --fixed_range=10.0.0.0/24
    --flat_interface=eth2
    --flat_network_bridge=br100
    --network_manager=nova.network.manager.FlatDHCPManager
    """
)


def _load(tmp_path, text, name="nova.conf", kind="config"):
    path = tmp_path / name
    path.write_text(text)
    conf = novanet_conf.new_conf()
    loader.load(conf, [loader.Source(kind, str(path))])
    return conf


def test_seed_flagfile_lines(tmp_path):
    conf = _load(tmp_path, SEED_LINES)
    assert conf.public_interface == "eth1"
    assert conf.fixed_range == "10.0.0.0/24"
    assert conf.flat_interface == "eth2"
    assert conf.flat_network_bridge == "br100"
    assert conf.network_manager == "nova.network.manager.FlatDHCPManager"


def test_seed_file_from_the_article_directory():
    conf = novanet_conf.new_conf()
    loader.load(conf, [loader.Source("flag", SEED)])
    assert conf.flat_network_bridge == "br100"


def test_shipped_flatdhcp_config_loads():
    conf = novanet_conf.new_conf()
    loader.load(conf, [loader.Source("config", str(ROOT / "etc/nova.conf.flatdhcp"))])
    assert conf.my_ip == "192.168.56.200"
    assert conf.dmz_cidr == ["10.128.0.0/24"]
    assert rpc.legacy_transport_url(conf) == "rabbit://guest:guest@192.168.56.200:5672/"


def test_defaults_are_novas(tmp_path):
    conf = _load(tmp_path, "[DEFAULT]\n", name="empty.conf")
    expected = {
        "state_path": "/var/lib/novanet",
        "networks_path": "/var/lib/novanet/networks",
        "dhcp_lease_time": 86400,
        "dhcp_domain": "novalocal",
        "dnsmasq_config_file": "",
        "force_dhcp_release": True,
        "fixed_ip_disassociate_timeout": 600,
        "metadata_port": 8775,
        "allow_same_net_traffic": True,
        "iptables_drop_action": "DROP",
        "iptables_prefix": "nova",
        "instance_name_template": "instance-%08x",
        "report_interval": 10,
        "service_down_time": 60,
        "dmz_cidr": [],
    }
    assert {k: getattr(conf, k) for k in expected} == expected
    assert conf.routing_source_ip == conf.my_ip == conf.metadata_host
    assert conf.database.connection == "sqlite:////var/lib/novanet/novanet.sqlite"
    assert conf.dhcpbridge.endswith("/novanet-dhcpbridge")


def test_ini_file_and_interpolation(tmp_path):
    conf = _load(
        tmp_path,
        "[DEFAULT]\nstate_path = /srv/nn\nmy_ip = 192.168.56.200\ndmz_cidr = 10.128.0.0/24,10.129.0.0/24\n"
        "[database]\nconnection = mysql+pymysql://u:p@db/novanet\n",
        name="novanet.conf",
    )
    assert conf.networks_path == "/srv/nn/networks"
    assert conf.routing_source_ip == "192.168.56.200"
    assert conf.dmz_cidr == ["10.128.0.0/24", "10.129.0.0/24"]
    assert conf.database.connection == "mysql+pymysql://u:p@db/novanet"


def test_legacy_aliases(tmp_path):
    conf = _load(
        tmp_path,
        "--sql_connection=postgresql://nova@db/nova\n--rabbit_host=192.168.56.200\n"
        "--rabbit_userid=nova\n--rabbit_password=s3cr/t\n--rabbit_virtual_host=/nova\n"
        "--rabbit_port=5673\n",
    )
    assert conf.database.connection == "postgresql://nova@db/nova"
    assert rpc.legacy_transport_url(conf) == "rabbit://nova:s3cr%2Ft@192.168.56.200:5673/%2Fnova"
    ini = _load(tmp_path, "[DEFAULT]\nsql_connection = sqlite:////tmp/a.sqlite\n", name="x.ini")
    assert ini.database.connection == "sqlite:////tmp/a.sqlite"


def test_gflags_booleans(tmp_path):
    conf = _load(tmp_path, "--noforce_dhcp_release\n--allow_same_net_traffic\n")
    assert conf.force_dhcp_release is False and conf.allow_same_net_traffic is True
    conf = _load(tmp_path, "--allow_same_net_traffic=false\n", name="b.conf")
    assert conf.allow_same_net_traffic is False


def test_unknown_legacy_flags_warn_and_carry_on(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="novanet.conf.loader"):
        conf = _load(tmp_path, SEED_LINES + "--verbose\n--libvirt_type=qemu\n--ec2_dmz_host=1.2.3.4\n")
    assert conf.flat_interface == "eth2"
    text = caplog.text
    for name in ("verbose", "libvirt_type", "ec2_dmz_host"):
        assert name in text
    assert "nova.conf:6" in text


def test_later_files_win_and_order_is_kept(tmp_path):
    first = tmp_path / "a.conf"
    first.write_text("--flat_interface=eth2\n--public_interface=eth1\n")
    second = tmp_path / "b.ini"
    second.write_text("[DEFAULT]\nflat_interface = eth3\n")
    conf = novanet_conf.new_conf()
    loader.load(conf, [loader.Source("flag", str(first)), loader.Source("config", str(second))])
    assert (conf.flat_interface, conf.public_interface) == ("eth3", "eth1")


def test_nested_flagfile(tmp_path):
    (tmp_path / "inner.conf").write_text("--flat_interface=eth9\n")
    conf = _load(tmp_path, "--flagfile=inner.conf\n--public_interface=eth1\n")
    assert conf.flat_interface == "eth9"


@pytest.mark.parametrize(
    "line, option, value",
    [
        ("--dhcp_lease_time=soon", "dhcp_lease_time", "soon"),
        ("--dhcp_lease_time=60", "dhcp_lease_time", "60"),
        ("--fixed_range=10.0.0.0/33", "fixed_range", "10.0.0.0/33"),
        ("--fixed_range=10.0.0.1/24", "fixed_range", "10.0.0.1/24"),
        ("--dmz_cidr=10.128.0.0", "dmz_cidr", "10.128.0.0"),
        ("--network_manager=nova.network.manager.VlanManager", "network_manager", "VlanManager"),
        ("--force_dhcp_release=maybe", "force_dhcp_release", "maybe"),
        ("--my_ip=192.168.56", "my_ip", "192.168.56"),
        ("--metadata_port=99999", "metadata_port", "99999"),
    ],
)
def test_bad_value_names_option_value_and_line(tmp_path, line, option, value):
    with pytest.raises(loader.ConfigError) as err:
        _load(tmp_path, SEED_LINES + "\n# a comment\n" + line + "\n")
    message = str(err.value)
    assert option in message and value in message
    assert f"{tmp_path}/nova.conf:8" in message
    assert "\n" not in message


def test_bad_value_in_ini(tmp_path):
    with pytest.raises(loader.ConfigError, match=r"soon.*dhcp_lease_time.*x.ini:3"):
        _load(tmp_path, "[DEFAULT]\n# c\ndhcp_lease_time = soon\n", name="x.ini")
    with pytest.raises(loader.ConfigError, match="not supported"):
        _load(tmp_path, "[DEFAULT]\nnetwork_manager = nova.network.manager.FlatManager\n", name="y.ini")


@pytest.mark.parametrize(
    "text, message",
    [
        ("public_interface=eth1\n", "expected '--name=value'"),
        ("--flat_interface\n", "needs a value"),
        ("--flagfile=missing.conf\n", "does not exist"),
    ],
)
def test_malformed_flagfiles(tmp_path, text, message):
    with pytest.raises(loader.ConfigError, match=message):
        _load(tmp_path, "--public_interface=eth1\n" + text, kind="flag")


def test_missing_and_broken_files(tmp_path):
    conf = novanet_conf.new_conf()
    with pytest.raises(loader.ConfigError, match="does not exist"):
        loader.load(conf, [loader.Source("config", str(tmp_path / "nope.conf"))])
    with pytest.raises(loader.ConfigError, match="cannot parse"):
        _load(tmp_path, "[DEFAULT]\nthis line has no equals sign\n", name="bad.ini")


def test_flagfile_recognised_by_content():
    assert loader.is_flagfile(str(ROOT / "etc/nova.conf.flatdhcp"))
    assert not loader.is_flagfile(str(ROOT / "etc/novanet.conf.sample"))
