"""The WSGI application on a real (SQLite) database: who gets what."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from novanet.db import instances
from novanet.db.api import Database
from novanet.ipam import pool
from novanet.metadata.app import MetadataApp
from novanet.metadata.lookup import InstanceLookup, normalize_address
from tests.unit.metadata.fixtures import KEY, USER_DATA, add_instance

NOT_FOUND = b"404 Not Found\n"


class Response:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.code = int(status.split()[0])
        self.headers = dict(headers)
        self.body = body


def call(
    app: MetadataApp,
    path: str,
    remote: str,
    method: str = "GET",
    raw: bool = True,
    extra: dict[str, str] | None = None,
) -> Response:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "REMOTE_ADDR": remote, **(extra or {})}
    if raw:  # eventlet.wsgi gives the undecoded path
        environ["RAW_PATH_INFO"] = path
    else:  # other WSGI servers: only the decoded latin-1 PATH_INFO
        from urllib.parse import unquote

        environ["PATH_INFO"] = unquote(path, encoding="latin-1")
    got: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got.extend([status, headers])

    body = b"".join(app(environ, start_response))
    return Response(got[0], got[1], body)


@pytest.fixture
def app(db: Database) -> MetadataApp:
    return MetadataApp(InstanceLookup(db), dhcp_domain="novalocal")


def test_each_instance_gets_its_own_id(db: Database, app: MetadataApp) -> None:
    a = add_instance(db, "cirros", mac="fa:16:3e:2c:e8:ec")
    b = add_instance(db, "other", public_key=KEY, user_data=USER_DATA)
    assert (a.address, b.address) == ("10.0.0.2", "10.0.0.3")
    for made in (a, b):
        r = call(app, "/2009-04-04/meta-data/instance-id", made.address)
        assert (r.code, r.body) == (200, f"i-{made.id:08x}".encode())
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert r.headers["Content-Length"] == str(len(r.body))
        r = call(app, "/latest/meta-data/local-ipv4", made.address)
        assert r.body == made.address.encode()
    assert call(app, "/latest/meta-data/public-keys/0/openssh-key", b.address).body == KEY.encode()
    assert call(app, "/latest/meta-data/public-keys/", a.address).code == 404
    assert call(app, "/latest/user-data", b.address).body == USER_DATA
    assert call(app, "/latest/user-data", a.address).code == 404
    doc = json.loads(call(app, "/openstack/latest/meta_data.json", b.address).body)
    assert doc["uuid"] == b.uuid and doc["hostname"] == "other.novalocal"
    assert doc["public_keys"] == {"alice@laptop": KEY}


def test_unknown_source_learns_nothing(db: Database, app: MetadataApp) -> None:
    made = add_instance(db, "cirros", public_key=KEY, user_data=USER_DATA)
    for remote in ("10.0.0.9", "192.168.56.200", "127.0.0.1", "10.0.0.1", "", "garbage"):
        for path in ("/", "/latest/meta-data/instance-id", "/openstack/latest/meta_data.json",
                     "/latest/user-data", "/nothing"):
            r = call(app, path, remote)
            assert (r.code, r.body) == (404, NOT_FOUND), (remote, path)
    # the instance itself still gets everything
    assert call(app, "/latest/meta-data/instance-id", made.address).code == 200


def test_identity_comes_from_the_peer_address_only(db: Database, app: MetadataApp) -> None:
    victim = add_instance(db, "victim", public_key=KEY)
    attacker = add_instance(db, "attacker")
    spoof = {
        "HTTP_X_FORWARDED_FOR": victim.address,
        "HTTP_X_REAL_IP": victim.address,
        "HTTP_X_INSTANCE_ID": victim.uuid,
    }
    r = call(app, "/latest/meta-data/instance-id", attacker.address, extra=spoof)
    assert r.body == f"i-{attacker.id:08x}".encode()
    r = call(app, "/latest/meta-data/instance-id", "10.0.0.99", extra=spoof)
    assert (r.code, r.body) == (404, NOT_FOUND)


def test_ipv4_mapped_peer(db: Database, app: MetadataApp) -> None:
    made = add_instance(db, "cirros")
    r = call(app, "/latest/meta-data/instance-id", f"::ffff:{made.address}")
    assert r.body == f"i-{made.id:08x}".encode()
    assert normalize_address("::ffff:10.0.0.2") == "10.0.0.2"
    assert normalize_address("fe80::1%eth0") == "fe80::1"
    assert normalize_address("not an address") is None


def test_deleted_and_deallocated_instances_are_strangers(db: Database, app: MetadataApp) -> None:
    made = add_instance(db, "cirros")
    assert call(app, "/latest/meta-data/instance-id", made.address).code == 200
    pool.deallocate_for_instance(db, made.uuid)
    assert call(app, "/latest/meta-data/instance-id", made.address).code == 404
    again = add_instance(db, "second")
    assert call(app, "/latest/meta-data/instance-id", again.address).code == 200
    instances.delete_instance_row(db, again.id)
    assert call(app, "/latest/meta-data/instance-id", again.address).code == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "get"])
def test_only_get_and_head(db: Database, app: MetadataApp, method: str) -> None:
    made = add_instance(db, "cirros")
    r = call(app, "/latest/meta-data/instance-id", made.address, method=method)
    assert r.code == 405
    assert r.headers["Allow"] == "GET, HEAD"
    assert b"i-" not in r.body


def test_head_has_the_headers_of_get_and_no_body(db: Database, app: MetadataApp) -> None:
    made = add_instance(db, "cirros")
    r = call(app, "/latest/meta-data/instance-id", made.address, method="HEAD")
    assert (r.code, r.body, r.headers["Content-Length"]) == (200, b"", "10")


@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/latest/../latest/meta-data/instance-id", 404),
        ("/latest/%2e%2e/latest/meta-data/instance-id", 404),
        ("//latest/meta-data/instance-id", 404),
        ("/latest/meta-data/instance-id%00", 400),
        ("/latest/meta-data%2Finstance-id", 400),
    ],
)
def test_traversal_through_the_app(
    db: Database, app: MetadataApp, path: str, code: int, raw: bool
) -> None:
    made = add_instance(db, "cirros")
    r = call(app, path, made.address, raw=raw)
    if not raw and "%2F" in path:
        # A decoded PATH_INFO cannot tell %2F from /: the server decided.
        assert r.code == 200
        return
    assert r.code == code
    assert b"i-" not in r.body


def test_decoded_path_info_works_too(db: Database, app: MetadataApp) -> None:
    made = add_instance(db, "cirros")
    r = call(app, "/latest/meta-data/instance-id", made.address, raw=False)
    assert r.body == f"i-{made.id:08x}".encode()


def test_database_failure_is_a_bare_500(db: Database, app: MetadataApp) -> None:
    made = add_instance(db, "cirros")
    with db.transaction() as conn:
        conn.execute(text("ALTER TABLE instances RENAME TO gone"))
    r = call(app, "/latest/meta-data/instance-id", made.address)
    assert (r.code, r.body) == (500, b"500 Internal Server Error\n")


def test_cache_ttl_remembers_per_address(db: Database) -> None:
    now = [100.0]
    lookup = InstanceLookup(db, cache_ttl=1.0, clock=lambda: now[0])
    app = MetadataApp(lookup, dhcp_domain="novalocal")
    assert call(app, "/latest/meta-data/instance-id", "10.0.0.2").code == 404
    made = add_instance(db, "cirros")
    assert made.address == "10.0.0.2"
    # within the TTL the earlier answer ("nobody") stands ...
    now[0] += 0.5
    assert call(app, "/latest/meta-data/instance-id", "10.0.0.2").code == 404
    # ... and not a moment longer
    now[0] += 0.6
    assert call(app, "/latest/meta-data/instance-id", "10.0.0.2").code == 200
    instances.delete_instance_row(db, made.id)
    assert call(app, "/latest/meta-data/instance-id", "10.0.0.2").code == 200
    now[0] += 1.01
    assert call(app, "/latest/meta-data/instance-id", "10.0.0.2").code == 404


def test_no_cache_sees_changes_at_once(db: Database, app: MetadataApp) -> None:
    assert call(app, "/latest/meta-data/instance-id", "10.0.0.2").code == 404
    made = add_instance(db, "cirros")
    assert call(app, "/latest/meta-data/instance-id", made.address).code == 200
    instances.delete_instance_row(db, made.id)
    assert call(app, "/latest/meta-data/instance-id", made.address).code == 404


def test_binary_user_data_round_trips_through_the_database(db: Database, app: MetadataApp) -> None:
    blob = bytes(range(256)) * 3
    made = add_instance(db, "blob", user_data=blob)
    reply = call(app, "/latest/user-data", made.address)
    assert (reply.code, reply.body) == (200, blob)
    assert reply.headers["Content-Type"] == "application/octet-stream"
