"""The metadata nova served, version by version (nova/tests/unit/test_metadata.py, newton)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from novanet.db import secgroups
from novanet.db.api import Database
from novanet.exception import UsageError
from novanet.metadata import daemon, tree
from novanet.metadata.lookup import find_by_address
from novanet.metadata.tree import InstanceMetadata, Reply
from tests.unit.metadata.fixtures import KEY, USER_DATA, add_instance

MD = InstanceMetadata(
    id=9, uuid="5b0c8a5e-0b1a-4c5e-9a36-1e0c0e9f0a09", name="cirros", hostname="cirros",
    fixed_ip="10.0.0.2", user_data=USER_DATA, public_key=KEY, mac="fa:16:3e:2c:e8:ec",
    vif_uuid="0f0e0d0c-0000-4000-8000-000000000001", devname="vnet0",
    network_uuid="11111111-2222-4333-8444-555555555555", netmask="255.255.255.0",
    gateway="10.0.0.1", dhcp_server="10.0.0.1",
)


def get(path: str, md: InstanceMetadata = MD, vendor: object = None) -> Reply:
    segments = tree.split_path(path)
    assert not isinstance(segments, Reply)
    return tree.resolve(segments, md, "novalocal", vendor)


def text(path: str, md: InstanceMetadata = MD) -> str:
    reply = get(path, md)
    assert reply.status == 200, (path, reply)
    return reply.body.decode()


def test_every_ec2_version_nova_served() -> None:
    # nova: base.py VERSIONS; test_metadata.py MetadataHandlerTestCase test_root
    assert text("/").splitlines() == [
        "1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15",
        "2008-02-01", "2008-09-01", "2009-04-04", "latest",
    ]
    for version in text("/").splitlines():
        assert text(f"/{version}/meta-data/instance-id") == "i-00000009"


@pytest.mark.parametrize(
    ("version", "added"),
    [
        # nova: base.py get_ec2_metadata, its _check_version steps
        ("1.0", set()),
        ("2007-01-19", {"local-hostname", "public-hostname", "public-ipv4"}),
        ("2007-08-29", {"instance-type"}),
        ("2007-12-15", {"block-device-mapping/"}),
        ("2008-02-01", {"placement/"}),
        ("2008-09-01", {"instance-action"}),
    ],
)
def test_keys_arrive_with_the_version_nova_added_them_in(version: str, added: set[str]) -> None:
    base = {
        "ami-id", "ami-launch-index", "ami-manifest-path", "hostname", "instance-id",
        "local-ipv4", "public-keys/", "reservation-id", "security-groups",
    }
    versions = tree.EC2_VERSIONS
    here = set(text(f"/{version}/meta-data/").splitlines())
    earlier = versions[versions.index(version) - 1] if version != "1.0" else None
    before = set(text(f"/{earlier}/meta-data/").splitlines()) if earlier else base
    assert here - before == added
    assert base <= here
    # public-keys/ lists "0=name" (nova's _name), so it shows without a slash
    assert text(f"/{version}/meta-data/public-keys/") == "0=alice@laptop"


def test_values_cloud_images_read() -> None:
    assert text("/latest/meta-data/ami-id") == "ami-00000000"
    assert text("/latest/meta-data/ami-manifest-path") == "FIXME"  # nova's own placeholder
    assert text("/latest/meta-data/instance-type") == "m1.tiny"
    assert text("/latest/meta-data/reservation-id") == "r-5b0c8a5e"
    # nova: test_metadata.py test_security_groups (one name per line)
    assert text("/latest/meta-data/security-groups") == "default"
    two = InstanceMetadata(**{**MD.__dict__, "security_groups": ("default", "web")})
    assert text("/latest/meta-data/security-groups", two) == "default\nweb"
    # nova: test_format_instance_mapping (a libvirt root disk /dev/vda, no volumes)
    assert text("/latest/meta-data/block-device-mapping/") == "ami\nroot"
    assert text("/latest/meta-data/block-device-mapping/ami") == "vda"
    assert text("/latest/meta-data/block-device-mapping/root") == "/dev/vda"
    assert text("/1.0/meta-data/local-ipv4") == "10.0.0.2"
    assert get("/1.0/meta-data/placement/availability-zone").status == 404


def test_openstack_versions_and_what_each_lists() -> None:
    assert text("/openstack").splitlines() == [
        "2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30", "2016-10-06",
        "latest",
    ]
    # nova: test_returns_apis_supported_in_{folsom,grizzly,havana,liberty}_version
    assert text("/openstack/2012-08-10").splitlines() == ["meta_data.json", "user_data"]
    assert text("/openstack/2013-04-04").splitlines() == ["meta_data.json", "user_data", "password"]
    assert text("/openstack/2013-10-17").splitlines()[-1] == "vendor_data.json"
    assert text("/openstack/2015-10-15").splitlines() == [
        "meta_data.json", "user_data", "password", "vendor_data.json", "network_data.json",
    ]
    assert text("/openstack/2016-10-06").splitlines()[-1] == "vendor_data2.json"
    assert text("/openstack/latest") == text("/openstack/2016-10-06")
    assert text("/openstack/latest/password") == ""


def test_meta_data_json_grows_with_the_version() -> None:
    # nova: test_random_seed (GRIZZLY), test_project_id (LIBERTY), test_empty_device_metadata
    old = json.loads(get("/openstack/2012-08-10/meta_data.json").body)
    assert not {"random_seed", "project_id", "devices"} & set(old)
    new = json.loads(get("/openstack/2016-10-06/meta_data.json").body)
    assert {"random_seed", "project_id", "devices"} <= set(new)
    assert new["devices"] == [] and new["uuid"] == MD.uuid
    assert json.loads(get("/openstack/2016-10-06/meta_data.json").body)["random_seed"] != (
        new["random_seed"]
    )


def test_network_data_json_is_the_instances_static_config() -> None:
    # nova: test_network_data_response; netutils.get_network_metadata's layout
    reply = get("/openstack/2015-10-15/network_data.json")
    assert reply.content_type == "application/json"
    assert json.loads(reply.body) == {
        "links": [
            {
                "id": "vnet0", "vif_id": MD.vif_uuid, "type": "bridge", "mtu": None,
                "ethernet_mac_address": "fa:16:3e:2c:e8:ec",
            }
        ],
        "networks": [
            {
                "id": "network0", "type": "ipv4", "link": "vnet0", "ip_address": "10.0.0.2",
                "netmask": "255.255.255.0", "network_id": MD.network_uuid,
                "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}],
            }
        ],
        "services": [{"type": "dns", "address": "10.0.0.1"}],
    }


def test_vendor_data() -> None:
    # nova: test_vendor_data_presence / test_vendor_data_response (StaticJSON)
    assert json.loads(get("/openstack/latest/vendor_data.json").body) == {}
    assert json.loads(get("/openstack/latest/vendor_data2.json").body) == {}
    vendor = {"cloud": "novanet", "ntp": ["10.0.0.1"]}
    assert json.loads(get("/openstack/latest/vendor_data.json", vendor=vendor).body) == vendor
    assert json.loads(get("/openstack/latest/vendor_data2.json", vendor=vendor).body) == {
        "static": vendor
    }


def test_vendordata_file_is_read_at_start_and_refused_when_broken(tmp_path: Path) -> None:
    good = tmp_path / "vendor.json"
    good.write_text('{"a": 1}')
    assert daemon.load_vendor_data(str(good)) == {"a": 1}
    assert daemon.load_vendor_data(None) == {}
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(UsageError, match="is not JSON"):
        daemon.load_vendor_data(str(bad))
    with pytest.raises(UsageError, match="No such file"):
        daemon.load_vendor_data(str(tmp_path / "missing.json"))


def test_lookup_fills_the_network_fields_and_the_security_group_seam(db: Database) -> None:
    made = add_instance(db, "cirros", mac="fa:16:3e:2c:e8:ec")
    md = find_by_address(db, made.address)
    assert md is not None
    assert (md.mac, md.netmask, md.gateway, md.dhcp_server) == (
        "fa:16:3e:2c:e8:ec", "255.255.255.0", "10.0.0.1", "10.0.0.1",
    )
    assert md.vif_uuid and md.network_uuid
    # made in "default", as novanet-network makes new instances
    assert md.security_groups == ("default",)
    secgroups.create_group(db, "web")
    secgroups.add_instance(db, made.uuid, "web")
    md = find_by_address(db, made.address)
    assert md is not None and md.security_groups == ("default", "web")
    assert text("/latest/meta-data/security-groups", md) == "default\nweb"


@pytest.mark.parametrize(
    ("host", "listen", "expected"),
    [
        ("192.168.56.200", None, "192.168.56.200"),  # the seed: listen on metadata_host
        ("127.0.0.1", None, "0.0.0.0"),  # REDIRECTed requests arrive on the bridge's address
        ("127.0.0.1", "10.0.0.1", "10.0.0.1"),  # an explicit non-loopback address is kept
    ],
)
def test_listen_address_follows_the_redirect(host: str, listen: str | None, expected: str) -> None:
    from novanet import conf as novanet_conf

    conf = novanet_conf.new_conf()
    conf([])
    conf.set_override("metadata_host", host)
    if listen:
        conf.set_override("metadata_listen", listen)
    assert daemon.listen_address(conf) == expected
