"""What novanet-network exports at scrape time: addresses, leases, instances, dnsmasq.

Read when Prometheus scrapes (two aggregate queries and the dnsmasq driver's
in-memory counters), never on the allocation or lease path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from novanet.db.api import Database
from novanet.db.models import FIXED_IPS, INSTANCES, NETWORKS, free_address
from novanet.dhcp.sync import DriverStats


def _sum_where(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def address_counts(db: Database) -> list[tuple[str, str, int, int, int, int, int]]:
    """Per network: (cidr, bridge, total, free, allocated, leased, reserved)."""
    query = (
        sa.select(
            NETWORKS.c.cidr,
            NETWORKS.c.bridge,
            sa.func.count(FIXED_IPS.c.id),
            _sum_where(free_address(FIXED_IPS)),
            _sum_where(FIXED_IPS.c.allocated.is_(True)),
            _sum_where(FIXED_IPS.c.leased.is_(True)),
            _sum_where(FIXED_IPS.c.reserved.is_(True)),
        )
        .join(FIXED_IPS, FIXED_IPS.c.network_id == NETWORKS.c.id)
        .group_by(NETWORKS.c.id, NETWORKS.c.cidr, NETWORKS.c.bridge)
        .order_by(NETWORKS.c.id)
    )
    with db.reader() as conn:
        rows = conn.execute(query).all()
    return [(r[0], r[1], *(int(v) for v in r[2:])) for r in rows]  # type: ignore[misc]


def instances_per_host(db: Database) -> dict[str, int]:
    query = (
        sa.select(INSTANCES.c.host, sa.func.count(INSTANCES.c.id))
        .where(INSTANCES.c.state.in_(("building", "active")))
        .group_by(INSTANCES.c.host)
    )
    with db.reader() as conn:
        return {str(host): int(count) for host, count in conn.execute(query).all()}


class NetworkCollector:
    """Scrape-time metrics of the controller.

    :param dnsmasq_stats: () -> {bridge: DriverStats} of the running networks
    """

    def __init__(self, db: Database, dnsmasq_stats: Callable[[], dict[str, DriverStats]]) -> None:
        self.db = db
        self.dnsmasq_stats = dnsmasq_stats

    def describe(self) -> list[Metric]:
        return []  # nothing is queried when the collector is registered

    def collect(self) -> Iterator[Metric]:
        labels = ["network", "bridge"]
        addresses = GaugeMetricFamily(
            "novanet_fixed_ips",
            "Fixed IPs per network and state: free (the pool may hand it out), allocated "
            "(bound to an instance), leased (dnsmasq reported the lease), reserved, total.",
            labels=[*labels, "state"],
        )
        for cidr, bridge, total, free, allocated, leased, reserved in address_counts(self.db):
            for state, value in (
                ("total", total),
                ("free", free),
                ("allocated", allocated),
                ("leased", leased),
                ("reserved", reserved),
            ):
                addresses.add_metric([cidr, bridge, state], value)
        yield addresses
        instances = GaugeMetricFamily(
            "novanet_instances", "Instances (building or active) per compute host.", labels=["host"]
        )
        for host, count in sorted(instances_per_host(self.db).items()):
            instances.add_metric([host], count)
        yield instances
        yield from dnsmasq_families(self.dnsmasq_stats())


def dnsmasq_families(stats: dict[str, DriverStats]) -> Iterator[Metric]:
    reloads = CounterMetricFamily(
        "novanet_dnsmasq_reloads",
        "SIGHUPs sent to dnsmasq to re-read its hosts (after coalescing).",
        labels=["bridge"],
    )
    starts = CounterMetricFamily(
        "novanet_dnsmasq_starts",
        "dnsmasq (re)starts: first start, changed arguments, or found dead.",
        labels=["bridge"],
    )
    for bridge, st in sorted(stats.items()):
        reloads.add_metric([bridge], st.hups)
        starts.add_metric([bridge], st.starts)
    yield reloads
    yield starts
