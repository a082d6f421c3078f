"""/metrics and /healthz over HTTP; RPC latency by outcome; the controller's scrape-time numbers."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from novanet.exception import NotFound
from novanet.metrics import Metrics
from novanet.rpc import context
from novanet.rpc.dispatch import ServerEndpoint
from novanet.service import health
from novanet.service.httpd import StatusServer


def get(server: StatusServer, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{server.address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Endpoint:
    target = object()

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def create_instance(self, ctxt, **kw):  # type: ignore[no-untyped-def]
        self.seen.append(context.current())
        if kw.get("fail"):
            raise NotFound("no such thing")
        return {"ok": True}


def test_rpc_latency_by_outcome_and_the_callers_request_id() -> None:
    metrics = Metrics("novanet-test")
    inner = Endpoint()
    endpoint = ServerEndpoint(inner, metrics)
    rid = context.new_request_id()
    assert endpoint.create_instance({"request_id": rid}) == {"ok": True}
    with pytest.raises(NotFound):
        endpoint.create_instance({}, fail=True)
    assert inner.seen[0] == rid and inner.seen[1] not in (None, rid)  # a fresh one
    assert context.current() is None
    text = metrics.render().decode()
    assert 'novanet_rpc_request_duration_seconds_count{method="create_instance",outcome="ok"} 1.0' in text
    assert 'novanet_rpc_request_duration_seconds_count{method="create_instance",outcome="error"} 1.0' in text
    assert endpoint.target is inner.target
    with pytest.raises(AttributeError):
        endpoint._private  # noqa: B018


def test_metrics_and_healthz_over_http() -> None:
    metrics = Metrics("novanet-test")
    metrics.lease_events.labels("add").inc()
    checks = [health.Check("rpc", True, "serving")]
    server = StatusServer(("127.0.0.1", 0), metrics, lambda: health.collect(lambda: checks))
    server.start()
    try:
        status, text = get(server, "/metrics")
        assert status == 200
        assert 'novanet_build_info{program="novanet-test",version="' in text
        assert 'novanet_dhcp_lease_events_total{action="add"} 1.0' in text
        assert "_created" not in text
        assert get(server, "/healthz") == (200, "ok\nrpc: ok (serving)\n")
        checks[0] = health.Check("rpc", False, "not serving yet")
        assert get(server, "/healthz") == (503, "failing\nrpc: failing (not serving yet)\n")
        checks[0] = health.Check("task x", False, "stuck", fatal=True)
        assert get(server, "/healthz")[1].startswith("fatal\n")
        assert get(server, "/other")[0] == 404
    finally:
        server.stop()


def test_a_taken_port_is_one_line() -> None:
    first = StatusServer(("127.0.0.1", 0), None, lambda: health.collect())
    first.start()
    try:
        second = StatusServer(("127.0.0.1", first.address[1]), None, lambda: health.collect())
        with pytest.raises(Exception) as failed:
            second.start()
        assert str(failed.value).startswith(f"cannot serve metrics on 127.0.0.1:{first.address[1]}")
    finally:
        first.stop()


def test_the_controllers_numbers(tmp_path) -> None:
    from novanet.network.metrics import NetworkCollector, address_counts, instances_per_host
    from tests.unit.metadata.fixtures import add_instance, migrated_sqlite

    db = migrated_sqlite(tmp_path / "novanet.sqlite")
    try:
        add_instance(db, "a")
        add_instance(db, "b")
        assert address_counts(db) == [("10.0.0.0/24", "br100", 256, 251, 2, 0, 3)]
        assert sum(instances_per_host(db).values()) == 2
        metrics = Metrics("novanet-network")
        metrics.add_collector(NetworkCollector(db, lambda: {}))
        text = metrics.render().decode()
        assert 'novanet_fixed_ips{bridge="br100",network="10.0.0.0/24",state="free"} 251.0' in text
    finally:
        db.dispose()
