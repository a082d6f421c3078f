"""dnsmasq's lease events: the lease database ``init`` reports, hostile events on the socket."""

from __future__ import annotations

import calendar
import datetime
import json
import logging
import socket

import pytest

from novanet.cmd import dhcpbridge
from novanet.db.models import FIXED_IPS, utcnow
from novanet.network import leases
from novanet.network.lease_socket import LeaseEventServer
from tests.unit.test_dhcpbridge import _row, setup  # noqa: F401 - the shared fixture

DAY = 86400


def _age(db, address: str, seconds: int) -> None:
    with db.transaction() as conn:
        conn.execute(
            FIXED_IPS.update().where(FIXED_IPS.c.address == address)
            .values(updated_at=utcnow() - datetime.timedelta(seconds=seconds))
        )


def _expiries(db, network_id: int, now: datetime.datetime) -> dict[str, int]:
    lines = leases.lease_lines(db, network_id, DAY, now=now).splitlines()
    return {line.split()[2]: int(line.split()[0]) - calendar.timegm(now.utctimetuple()) for line in lines}


def test_init_reports_a_renewed_lease_as_valid_for_a_lease_time_from_now(setup):  # noqa: F811
    """The guest renews (``old``, not recorded): its lease must not look expired after a day."""
    db, net, inst, alloc, env, _ = setup
    from novanet.ipam import pool

    assert pool.lease_fixed_ip(db, alloc.address, alloc.mac)
    _age(db, alloc.address, 2 * DAY)  # the `add` was two lease times ago
    now = utcnow()
    assert _expiries(db, net.id, now) == {alloc.address: DAY}
    # once deallocated (instance deleted, dnsmasq's `del` not back yet) the lease runs out
    pool.deallocate_for_instance(db, inst.uuid)
    _age(db, alloc.address, 3600)
    assert _expiries(db, net.id, now) == {alloc.address: DAY - 3600}


@pytest.mark.parametrize("network_id", [2**31, 10**30, -1, 0, 10**400])
def test_out_of_range_network_id_is_refused_in_one_log_line(setup, tmp_path, caplog, network_id):  # noqa: F811
    db, *_ = setup
    server = LeaseEventServer(str(tmp_path / "s.sock"), lambda e: leases.handle(db, 60, e))
    server.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="novanet"):
            s = socket.socket(socket.AF_UNIX)
            s.connect(server.path)
            event = {"action": "add", "network_id": network_id, "mac": "fa:16:3e:2c:e8:ec", "address": "10.0.0.2"}
            s.sendall(json.dumps(event).encode()[:4000] + b"\n")
            reply = json.loads(s.makefile().readline())
            s.close()
    finally:
        server.stop()
    assert reply["ok"] is False and reply["code"] == 2
    records = [r for r in caplog.records if r.name.startswith("novanet")]
    assert len(records) == 1 and records[0].levelname == "WARNING"
    assert records[0].exc_info is None and "refused lease event" in records[0].getMessage()
    assert not _row(db, "10.0.0.2").leased


@pytest.mark.parametrize("address", ["10.0.0.999", "x" * 5000, 7])
def test_bad_address_refused(setup, address):  # noqa: F811
    db, net, *_ = setup
    reply = leases.handle(db, 60, {"action": "add", "network_id": net.id, "mac": "fa:16:3e:2c:e8:ec", "address": address})
    assert (reply["ok"], reply["code"]) == (False, 2)


@pytest.mark.parametrize("raw", ["2147483648", "9" * 5000, "١"])
def test_dhcpbridge_refuses_a_network_id_no_network_can_have(setup, capsys, raw):  # noqa: F811
    *_, env, _ = setup
    out = __import__("io").StringIO()
    assert dhcpbridge.run(["init"], {**env, "NOVANET_NETWORK_ID": raw}, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NOVANET_NETWORK_ID" in err and len(err) < 200
