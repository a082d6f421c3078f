"""Concurrency proof: 8 processes drain one pool at once; no address twice."""

from __future__ import annotations

import multiprocessing
import uuid

from novanet.db.api import Database
from novanet.exception import NoMoreFixedIps
from novanet.ipam import networks, plan, pool, queries

WORKERS = 8


def _drain(url: str, network_id: int, start: multiprocessing.synchronize.Barrier, out) -> None:  # type: ignore[name-defined]
    db = Database(url)
    got: list[tuple[str, str]] = []
    error = ""
    # Every worker imported and connected before any allocates: otherwise the
    # first one up (spawned processes take about a second) drains the pool
    # alone on a loaded machine.
    db.engine.connect().close()
    start.wait()
    try:
        while True:
            instance_uuid = str(uuid.uuid4())
            a = pool.allocate_for_instance(db, network_id=network_id, instance_uuid=instance_uuid)
            got.append((a.address, instance_uuid))
    except NoMoreFixedIps as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        error = f"UNEXPECTED {type(exc).__name__}: {exc}"
    out.put((got, error))
    db.dispose()


def test_eight_processes_never_share_an_address(db, backend):
    (net,) = networks.create_networks(
        db, plan.plan_networks(label="n", fixed_range_v4="10.0.0.0/24", bridge="br100")
    )
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(WORKERS)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_drain, args=(backend.url, net.id, start, out)) for _ in range(WORKERS)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    addresses = [addr for got, _ in results for addr, _ in got]
    errors = [err for _, err in results]
    assert all(e == "no more fixed IPs in network 10.0.0.0/24" for e in errors), errors
    assert len(addresses) == len(set(addresses)) == 253
    # and the database agrees with what each worker was told
    rows = {r.address: r.instance_uuid for r in queries.list_fixed_ips(db) if r.instance_uuid}
    told = {addr: inst for got, _ in results for addr, inst in got}
    assert rows == told
    # more than one worker got addresses: it really was concurrent
    assert sum(1 for got, _ in results if got) > 1
