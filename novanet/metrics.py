"""Prometheus metrics of one daemon (``metrics_listen``; off by default).

Each daemon owns one :class:`Metrics` (its own registry: nothing global, two
daemons in one test process do not mix). What the hot paths (allocation,
lease events, iptables applies) pay is a counter increment or one
observation of a duration, about a microsecond (BENCHMARKS.md); everything
that needs a query - addresses per network, leases, instances per host - is
computed when Prometheus scrapes, by collectors registered with
:meth:`Metrics.add_collector`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from novanet import __version__
from novanet.linux.iptables.canary import NftGeneration
from novanet.linux.iptables.manager import IptablesManager
from novanet.linux.iptables.plan import HandleBatch
from novanet.linux.iptables.runner import Runner
from novanet.linux.iptables.view import RuleHandle

RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The registry and the metrics every daemon shares."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, program: str) -> None:
        # The *_created series (a timestamp per counter) double the output and
        # say nothing a restart counter would not.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        info = Gauge("novanet_build_info", "novanet's version", ["version", "program"], registry=r)
        info.labels(__version__, program).set(1)
        self.rpc_seconds = Histogram(
            "novanet_rpc_request_duration_seconds",
            "Time this daemon took to handle an RPC request, by method and outcome "
            "(ok, error: an error returned to the caller).",
            ["method", "outcome"],
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.iptables_restores = Summary(
            "novanet_iptables_restore_seconds",
            "iptables-restore runs (each an apply of changed chains) and their duration.",
            ["table"],
            registry=r,
        )
        self.iptables_checks = Summary(
            "novanet_iptables_check_seconds",
            "Drift checks of our chains (iptables_check_interval) and their duration.",
            registry=r,
        )
        self.iptables_repairs = Counter(
            "novanet_iptables_repairs",
            "Drift checks that found our chains changed by someone else and repaired them.",
            registry=r,
        )
        self.lease_events = Counter(
            "novanet_dhcp_lease_events",
            "Lease events from novanet-dhcpbridge (dnsmasq's add, del, init), by action.",
            ["action"],
            registry=r,
        )
        self.dnsmasq_restarts = Counter(
            "novanet_dnsmasq_dead_restarts",
            "dnsmasq processes found dead by the liveness check and started again.",
            registry=r,
        )

    def add_collector(self, collector: Any) -> None:
        """A scrape-time collector: an object with ``collect() -> Iterable[Metric]``."""
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def rpc_timer(self, method: str) -> _Timer:
        return _Timer(self.rpc_seconds, method)


class _Timer:
    """Times one RPC request; the outcome is known only at the end."""

    def __init__(self, histogram: Histogram, method: str) -> None:
        self._histogram = histogram
        self._method = method
        self._started = time.perf_counter()

    def done(self, outcome: str) -> None:
        elapsed = time.perf_counter() - self._started
        self._histogram.labels(self._method, outcome).observe(elapsed)


class MeteredRunner:
    """An iptables Runner that times every write (restores and deletions by handle)."""

    def __init__(self, runner: Runner, metrics: Metrics) -> None:
        self.runner = runner
        self.backend = runner.backend
        self._restores = metrics.iptables_restores

    def watch(self, tables: Sequence[str]) -> None:
        self.runner.watch(tables)

    def save(self, table: str) -> str:
        return self.runner.save(table)

    def restore(self, table: str, text: str, learn: bool = True) -> Sequence[RuleHandle] | None:
        with self._restores.labels(table).time():
            return self.runner.restore(table, text, learn)

    def token(self) -> Hashable | None:
        return self.runner.token()

    def own_commits(self, before: Hashable, after: Hashable, count: int) -> bool:
        return self.runner.own_commits(before, after, count)

    def token_exact(self) -> bool:
        return self.runner.token_exact()

    def handles(self) -> bool:
        return self.runner.handles()

    def rule_handles(self, table: str, chain: str) -> Sequence[RuleHandle] | None:
        return self.runner.rule_handles(table, chain)

    def delete_by_handle(self, table: str, batch: HandleBatch, token: Hashable) -> Hashable:
        with self._restores.labels(table).time():
            return self.runner.delete_by_handle(table, batch, token)

    def close(self) -> None:
        self.runner.close()


class MeteredIptablesManager(IptablesManager):
    """IptablesManager whose drift checks and repairs are counted (set ``metrics``)."""

    metrics: Metrics | None = None

    def check_and_repair(self, force: bool = False) -> list[str]:
        if self.metrics is None:
            return super().check_and_repair(force)
        with self.metrics.iptables_checks.time():
            repaired = super().check_and_repair(force)
        if repaired:
            self.metrics.iptables_repairs.inc()
        return repaired


def iptables_manager(
    conf: Any,
    binary: str,
    metrics: Metrics | None,
    tables: Sequence[str] = ("filter", "nat"),
    generation: NftGeneration | None = None,
) -> IptablesManager:
    """The daemon's IptablesManager, metered when metrics are on.

    :param generation: the nf_tables generation probe, when the daemon has
        another nf_tables writer (novanet-compute's anti-spoofing table)
    """
    from novanet.linux.iptables.runner import IptablesRunner

    plain = IptablesRunner(conf.iptables_backend, tables=tables, generation=generation)
    if metrics is None:
        return IptablesManager.from_conf(conf, binary, runner=plain, tables=tables)
    runner = MeteredRunner(plain, metrics)
    manager = MeteredIptablesManager.from_conf(conf, binary, runner=runner, tables=tables)
    assert isinstance(manager, MeteredIptablesManager)
    manager.metrics = metrics
    return manager


class FunctionCollector:
    """Adapts a function returning metric families to a registry collector."""

    def __init__(self, func: Callable[[], Iterable[Metric]]) -> None:
        self._func = func

    def collect(self) -> Iterator[Metric]:
        yield from self._func()

    def describe(self) -> list[Metric]:
        return []  # not described up front: the scrape must not run the query at register


def periodic_families(tasks: Iterable[Any]) -> Iterator[Metric]:
    """Runs, failures and last duration of each periodic task (read at scrape)."""
    runs = CounterMetricFamily(
        "novanet_periodic_task_runs", "Runs of a periodic task.", labels=["task"]
    )
    failures = CounterMetricFamily(
        "novanet_periodic_task_failures", "Runs of a periodic task that raised.", labels=["task"]
    )
    duration = GaugeMetricFamily(
        "novanet_periodic_task_last_duration_seconds",
        "Duration of the last run of a periodic task.",
        labels=["task"],
    )
    for task in tasks:
        runs.add_metric([task.name], task.runs)
        failures.add_metric([task.name], task.failures)
        duration.add_metric([task.name], task.last_duration)
    yield from (runs, failures, duration)
