"""Shared fixtures: namespaces for root tests, database backends for DB tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lib import netns as netns_lib


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


@pytest.fixture
def netns() -> Iterator[netns_lib.Namespace]:
    """A fresh network namespace, removed after the test."""
    _require_root()
    ns = netns_lib.create()
    try:
        yield ns
    finally:
        ns.destroy()


@pytest.fixture
def netns_factory() -> Iterator[object]:
    """Call it to get more namespaces; all are removed after the test."""
    _require_root()
    made: list[netns_lib.Namespace] = []

    def make(tag: str = "") -> netns_lib.Namespace:
        ns = netns_lib.create(tag)
        made.append(ns)
        return ns

    try:
        yield make
    finally:
        for ns in reversed(made):
            ns.destroy()


LAB_TEST_BASE = "/run/novanet-lab-tests"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SKIPPED and session.exitstatus == 0:
        session.exitstatus = 1
    if os.geteuid() != 0:
        return
    from novanet.lab import lab as lab_mod

    for name in lab_mod.all_lab_names(LAB_TEST_BASE):
        if name.startswith(f"t{os.getpid()}-"):
            lab_mod.Lab(name, LAB_TEST_BASE).down()
    netns_lib.cleanup_leftovers()


@pytest.fixture(scope="session")
def vhost() -> Iterator[object]:
    """A RabbitMQ vhost private to this test run (deleted at the end)."""
    from tests.lib.broker import Vhost

    made = Vhost()
    try:
        yield made
    finally:
        made.delete()


# ./run test (and so CI) sets NOVANET_NO_SKIPS=1: a test that skips because
# root, a server or a program is missing must fail the run instead of
# letting it go green untested.
_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and os.environ.get("NOVANET_NO_SKIPS") == "1":
        _SKIPPED.append(report.nodeid)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int) -> None:
    if _SKIPPED:
        write = terminalreporter.write_line
        write(f"NOVANET_NO_SKIPS=1 and {len(_SKIPPED)} test(s) skipped: this run does not count")
        for nodeid in _SKIPPED[:20]:
            write(f"  skipped: {nodeid}")
