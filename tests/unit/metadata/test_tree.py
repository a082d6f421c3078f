"""The metadata tree and the path checks, as pure functions."""

from __future__ import annotations

import json

import pytest

from novanet.metadata import tree
from novanet.metadata.tree import InstanceMetadata, Reply
from tests.unit.metadata.fixtures import KEY, USER_DATA

PLAIN = InstanceMetadata(
    id=1, uuid="0d3c1b6e-0000-4000-8000-000000000001", name="cirros", hostname="cirros",
    fixed_ip="10.0.0.2",
)
FULL = InstanceMetadata(
    id=0x2A, uuid="0d3c1b6e-0000-4000-8000-00000000002a", name="My Web Server",
    hostname="my-web-server", fixed_ip="10.0.0.7", user_data=USER_DATA, public_key=KEY,
)


def get(md: InstanceMetadata, path: str, domain: str = "novalocal") -> Reply:
    segments = tree.split_path(path)
    assert not isinstance(segments, Reply), segments
    return tree.resolve(segments, md, domain)


def text(md: InstanceMetadata, path: str, domain: str = "novalocal") -> str:
    reply = get(md, path, domain)
    assert reply.status == 200, (path, reply)
    assert reply.content_type == tree.TEXT
    return reply.body.decode()


def test_top_level_listings() -> None:
    # nova: base.py VERSIONS / OPENSTACK_VERSIONS (test_metadata.py test_root)
    assert text(PLAIN, "/").splitlines()[-2:] == ["2009-04-04", "latest"]
    assert text(PLAIN, "/2009-04-04/") == "meta-data/"
    assert text(FULL, "/latest/") == "meta-data/\nuser-data"
    assert text(PLAIN, "/openstack").splitlines()[-2:] == ["2016-10-06", "latest"]
    assert text(FULL, "/openstack/2012-08-10") == "meta_data.json\nuser_data"


def test_meta_data_listing_without_key() -> None:
    expected = (
        "ami-id\nami-launch-index\nami-manifest-path\nblock-device-mapping/\nhostname\n"
        "instance-action\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\n"
        "placement/\npublic-hostname\npublic-ipv4\nreservation-id\nsecurity-groups"
    )
    assert text(PLAIN, "/2009-04-04/meta-data/") == expected
    assert text(PLAIN, "/latest/meta-data") == expected


def test_meta_data_values() -> None:
    assert text(PLAIN, "/2009-04-04/meta-data/instance-id") == "i-00000001"
    assert text(FULL, "/latest/meta-data/instance-id") == "i-0000002a"
    assert text(FULL, "/latest/meta-data/instance-id/") == "i-0000002a"  # nova normalised too
    assert text(FULL, "/latest/meta-data/local-ipv4") == "10.0.0.7"
    assert text(FULL, "/latest/meta-data/hostname") == "my-web-server.novalocal"
    assert text(FULL, "/latest/meta-data/local-hostname") == "my-web-server.novalocal"
    assert text(FULL, "/latest/meta-data/placement/") == "availability-zone"
    assert text(FULL, "/latest/meta-data/placement/availability-zone") == "nova"
    assert text(FULL, "/latest/meta-data/public-ipv4") == ""


def test_hostname_without_domain() -> None:
    assert text(PLAIN, "/latest/meta-data/hostname", domain="") == "cirros"
    body = json.loads(get(PLAIN, "/openstack/latest/meta_data.json", domain="").body)
    assert body["hostname"] == "cirros"


def test_public_keys() -> None:
    assert "public-keys/" in text(FULL, "/latest/meta-data/").splitlines()
    assert text(FULL, "/latest/meta-data/public-keys/") == "0=alice@laptop"
    assert text(FULL, "/latest/meta-data/public-keys/0") == "openssh-key"
    assert text(FULL, "/2009-04-04/meta-data/public-keys/0/openssh-key") == KEY
    assert get(PLAIN, "/latest/meta-data/public-keys/").status == 404
    assert get(PLAIN, "/latest/meta-data/public-keys/0/openssh-key").status == 404


@pytest.mark.parametrize(
    ("key", "name"),
    [
        (KEY, "alice@laptop"),
        ("ssh-rsa AAAAB3NzaC1yc2E", "default"),
        ("ssh-rsa AAAAB3NzaC1yc2E two words", "two"),
        ("ssh-rsa AAAAB3NzaC1yc2E =weird/comment", "default"),
    ],
)
def test_key_name(key: str, name: str) -> None:
    assert tree.key_name(key) == name


def test_user_data() -> None:
    assert get(FULL, "/latest/user-data").body == USER_DATA
    assert get(FULL, "/openstack/latest/user_data").body == USER_DATA
    assert get(PLAIN, "/latest/user-data").status == 404
    assert get(PLAIN, "/2009-04-04/user-data").status == 404
    assert get(PLAIN, "/openstack/latest/user_data").status == 404
    empty = InstanceMetadata(**{**PLAIN.__dict__, "user_data": b""})
    reply = get(empty, "/latest/user-data")
    assert (reply.status, reply.body) == (200, b"")


def test_openstack_meta_data_json() -> None:
    reply = get(FULL, "/openstack/latest/meta_data.json")
    assert (reply.status, reply.content_type) == (200, "application/json")
    body = json.loads(reply.body)
    assert len(body.pop("random_seed")) == 684  # 512 bytes, base64 (nova: GRIZZLY and later)
    assert body == {
        "uuid": FULL.uuid,
        "name": "My Web Server",
        "hostname": "my-web-server.novalocal",
        "launch_index": 0,
        "availability_zone": "nova",
        "public_keys": {"alice@laptop": KEY},
        "keys": [{"name": "alice@laptop", "type": "ssh", "data": KEY}],
        "project_id": None,
        "devices": [],
    }
    plain = json.loads(get(PLAIN, "/openstack/2012-08-10/meta_data.json").body)
    assert "public_keys" not in plain and plain["name"] == "cirros"


@pytest.mark.parametrize(
    "path",
    [
        "/2009-04-04/meta-data/nothing",
        "/2009-04-04/meta-data/instance-id/more",
        "/2009-04-04/meta-data/placement/availability-zone/x",
        "/0.9/meta-data/instance-id",
        "/2099-01-01/meta-data/",
        "/nothing",
        "/openstack/2099-01-01/meta_data.json",
        "/openstack/latest/meta_data.json/x",
        "/openstack/2012-08-10/password",
        "/openstack/2013-04-04/vendor_data.json",
        "/openstack/2015-10-15/vendor_data2.json",
        "/openstack/2013-10-17/network_data.json",
        "/ec2/latest/meta-data/",
        "/latest/meta-data/instance-id%3F",
    ],
)
def test_unknown_paths_are_404(path: str) -> None:
    assert get(FULL, path).status == 404


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/latest/../latest/meta-data/instance-id", 404),
        ("/latest/meta-data/./instance-id", 404),
        ("/../../etc/passwd", 404),
        ("/latest/%2e%2e/%2E%2E/etc/passwd", 404),
        ("//latest/meta-data/instance-id", 404),
        ("/latest//meta-data/instance-id", 404),
        ("/latest/meta-data/instance-id//", 404),
        ("/latest/meta-data%2finstance-id", 400),
        ("/latest/meta-data/instance-id%00", 400),
        ("/latest/meta-data/instance-id\x00", 400),
        ("/latest/meta-data/\x7f", 400),
        ("/latest/meta-data/%7f", 400),
        ("/latest/meta-data/%ff", 400),
        ("/latest/meta-data/ü", 400),
        ("/latest/meta-data/%zz", 400),
        ("/latest/meta-data/%2", 400),
        ("/latest/meta-data/..\\..\\etc", 400),
        ("/latest/meta data", 400),
        ("latest/meta-data/", 400),
        ("http://169.254.169.254/latest/meta-data/", 400),
        ("", 400),
    ],
)
def test_traversal_and_malformed_paths_are_refused(path: str, status: int) -> None:
    reply = tree.split_path(path)
    assert isinstance(reply, Reply)
    assert reply.status == status
    assert reply.body == f"{status} {tree.REASONS[status]}\n".encode()


def test_percent_escapes_of_plain_characters_are_decoded() -> None:
    assert tree.split_path("/latest/meta-data/instance%2Did") == [
        "latest", "meta-data", "instance-id"
    ]
    assert tree.split_path("/") == []


def test_binary_user_data_is_served_as_it_is() -> None:
    import gzip

    blob = gzip.compress(b"#cloud-config\npackages: [htop]\n") + b"\xff\x00\x80"
    md = InstanceMetadata(**{**PLAIN.__dict__, "user_data": blob})
    for path in ("/latest/user-data", "/2009-04-04/user-data", "/openstack/latest/user_data"):
        reply = get(md, path)
        assert (reply.status, reply.body) == (200, blob)
        assert reply.content_type == "application/octet-stream"
    assert get(FULL, "/latest/user-data").content_type == "text/plain; charset=utf-8"


def test_public_ipv4_is_the_first_floating_ip(db):
    # nova's get_ec2_metadata: the first floating IP, "" without one (above)
    from novanet.db import floating
    from novanet.metadata.lookup import find_by_address
    from tests.unit.metadata.fixtures import add_instance

    made = add_instance(db, "web")
    floating.create_range(db, "192.168.56.224/29", "nova", "eth1")
    floating.associate(db, "192.168.56.227", made.uuid, "ctl")
    floating.associate(db, "192.168.56.225", made.uuid, "ctl")
    md = find_by_address(db, made.address)
    assert md is not None and md.floating_ips == ("192.168.56.227", "192.168.56.225")
    assert text(md, "/latest/meta-data/public-ipv4") == "192.168.56.227"
    floating.disassociate(db, "192.168.56.227")
    md = find_by_address(db, made.address)
    assert md is not None and text(md, "/latest/meta-data/public-ipv4") == "192.168.56.225"
