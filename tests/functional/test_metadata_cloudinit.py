"""cloud-init's own readers against novanet-metadata, reached as guests reach it.

Debian's cloud-init package, unpacked (tools/fetch-cloud-init.sh), runs in
the instance's namespace: its EC2 reader, its OpenStack reader and its
network_data.json conversion (tests/lib/cloudinit_probe.py). The controller
namespace runs the real novanet-metadata with ``metadata_host = 127.0.0.1``
and novanet-network's nat rules, so 169.254.169.254:80 reaches it through
nova's ``REDIRECT --to-ports`` (a DNAT to loopback could not: the kernel
drops packets from outside to 127.0.0.0/8).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from novanet.linux.iptables.declare import declare
from novanet.linux.iptables.manager import IptablesManager
from novanet.linux.iptables.runner import IptablesRunner
from novanet.metadata.rules import metadata_rules
from novanet.network import rules
from novanet.network.manager import CONTROLLER_TABLES
from tests.functional.test_metadata import Lab
from tests.lib.paths import ROOT, world_readable_dir
from tests.unit.metadata.fixtures import KEY, USER_DATA

pytestmark = pytest.mark.root

REDIRECT = "-A nova-network-PREROUTING -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8775"
LOCAL_ACCEPT = "-A nova-api-INPUT -p tcp -m tcp --dport 8775 -m addrtype --dst-type LOCAL -j ACCEPT"


class Net:
    bridge = "v-ctl"
    cidr = "10.0.0.0/24"


@pytest.fixture(scope="module")
def cloud_init() -> str:
    """Debian's cloud-init on disk (downloaded once into .cache; fails, never skips)."""
    result = subprocess.run(
        ["bash", "tools/fetch-cloud-init.sh"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"cannot fetch cloud-init: {result.stderr}"
    site = ROOT / result.stdout.strip().splitlines()[-1]
    assert (site / "cloudinit" / "sources" / "helpers" / "openstack.py").exists()
    return str(site)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    # novanet-metadata runs as its own unprivileged user: its files must be
    # reachable by it (pytest's tmp_path is 0700).
    made = Lab(world_readable_dir("cloudinit"))
    try:
        vendor = made.tmp / "vendor.json"
        vendor.write_text(json.dumps({"cloud": "novanet"}))
        made.proc = made.start(
            made.write_conf(metadata_host="127.0.0.1", vendordata_jsonfile_path=vendor)
        )
        made.wait_serving(made.proc)
        network = IptablesManager(
            "network", IptablesRunner("auto", netns=made.ctl.name), tables=CONTROLLER_TABLES
        )
        declare(
            network.ipv4,
            rules.controller_rules(
                [Net()], metadata_host="127.0.0.1", metadata_port=8775, routing_source_ip="10.0.0.1"
            ),
        )
        network.full_sync()
        # the metadata service's accept (binary api), as novanet-network installs it
        api = IptablesManager("api", IptablesRunner("auto", netns=made.ctl.name))
        declare(api.ipv4, metadata_rules(metadata_host="127.0.0.1", metadata_port=8775))
        api.full_sync()
        yield made
    finally:
        made.close()


def test_rules_for_a_loopback_metadata_host(lab: Lab) -> None:
    # nova: test_metadata_forward_localhost, test_metadata_accept_localhost
    assert REDIRECT in lab.ctl.run(["iptables", "-t", "nat", "-S"]).stdout.splitlines()
    assert LOCAL_ACCEPT in lab.ctl.run(["iptables", "-S"]).stdout.splitlines()
    got = lab.wget("http://169.254.169.254/latest/meta-data/instance-id")
    assert (got.returncode, got.stdout) == (0, "i-00000001")


def test_cloud_init_reads_everything(lab: Lab, cloud_init: str) -> None:
    result = lab.cli.run(
        [sys.executable, "-m", "tests.lib.cloudinit_probe", cloud_init, "http://169.254.169.254",
         "fa:16:3e:2c:e8:ec"],
        cwd=str(ROOT),
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout)

    ec2 = got["ec2_metadata"]  # what DataSourceEc2 crawls
    assert ec2["instance-id"] == "i-00000001" and ec2["local-ipv4"] == "10.0.0.2"
    assert ec2["hostname"] == "cirros.novalocal" and ec2["ami-id"] == "ami-00000000"
    assert ec2["reservation-id"].startswith("r-") and ec2["instance-type"] == "m1.tiny"
    assert ec2["security-groups"] == "default"
    assert ec2["block-device-mapping"] == {"ami": "vda", "root": "/dev/vda"}
    assert ec2["placement"] == {"availability-zone": "nova"}
    assert ec2["public-keys"] == {"alice@laptop": KEY}
    assert got["ec2_userdata"] == USER_DATA.decode()

    assert got["openstack_version"] == "2016-10-06"  # the newest both know
    md = got["metadata"]
    assert (md["uuid"], md["name"], md["hostname"]) == (lab.instance.uuid, "cirros", "cirros.novalocal")
    assert md["public_keys"] == {"alice@laptop": KEY}
    assert md["instance-id"] == lab.instance.uuid  # cloud-init's KEY_COPIES
    assert got["userdata"] == USER_DATA.decode()
    assert got["vendordata"] == {"cloud": "novanet"}
    assert got["ec2_via_openstack"]["instance-id"] == "i-00000001"

    # network_data.json -> cloud-init's network config: static, no DHCP
    (iface,) = got["network_config"]["config"][:1]
    assert (iface["type"], iface["name"], iface["mac_address"]) == ("physical", "eth0", "fa:16:3e:2c:e8:ec")
    (subnet,) = iface["subnets"]
    assert (subnet["type"], subnet["address"], subnet["netmask"]) == ("static", "10.0.0.2", "255.255.255.0")
    assert subnet["routes"] == [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}]
    assert {"type": "nameserver", "address": "10.0.0.1"} in got["network_config"]["config"]
    interfaces = got["interfaces"]
    assert "iface eth0 inet static" in interfaces and "dhcp" not in interfaces
    assert "address 10.0.0.2/24" in interfaces
    assert "route add default gw 10.0.0.1" in interfaces or "gateway 10.0.0.1" in interfaces


def test_instances_own_view_only(lab: Lab, tmp_path: Path) -> None:
    # the REDIRECT keeps the source address: another address of the guest is nobody
    got = lab.probe("get", "169.254.169.254", "80", "/latest/meta-data/instance-id", "--bind", "10.0.0.77")
    assert got == {"status": 404, "body": "404 Not Found\n"}
