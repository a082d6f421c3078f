"""HostSet: incremental updates give the same hosts as the full rules."""

from __future__ import annotations

import ipaddress
import random

from novanet.dhcp import hostsfile
from novanet.dhcp.hostset import HostSet
from novanet.dhcp.hostsfile import select_hosts
from novanet.dhcp.models import DhcpHost

NET = ipaddress.IPv4Network("10.0.0.0/16")


def host(i: int, ip: int | None = None, name: str | None = None) -> DhcpHost:
    a = (i if ip is None else ip) + 2
    return DhcpHost(
        f"fa:16:3e:00:{i >> 8:02x}:{i & 255:02x}", name or f"vm{i}", f"10.0.{a >> 8}.{a & 255}"
    )


def full(rows):
    return {e.mac: e for e in select_hosts(rows, NET, on_reject=lambda h, why: None)}


def test_changes_are_reported_by_mac():
    hosts = HostSet(NET)
    rows = [host(i) for i in range(100)]
    assert hosts.update(rows) == {h.mac for h in rows}
    assert hosts.update(rows) == set()
    rows.append(host(100))
    assert hosts.update(rows) == {host(100).mac}
    rows.remove(host(3))
    assert hosts.update(rows) == {host(3).mac}
    rows[rows.index(host(5))] = host(5, name="renamed")
    assert hosts.update(rows) == {host(5).mac}
    assert hosts.entries == full(rows)


def test_only_new_rows_are_validated(monkeypatch):
    hosts = HostSet(NET)
    rows = [host(i) for i in range(1000)]
    hosts.update(rows)
    calls = []
    real = hostsfile.validate_host
    monkeypatch.setattr(
        "novanet.dhcp.hostset.validate_host", lambda *a: calls.append(a) or real(*a)
    )
    hosts.update(rows + [host(1000)])
    assert len(calls) == 1


def test_random_changes_match_the_full_rules():
    rng = random.Random(7)
    hosts = HostSet(NET)
    rows: list[DhcpHost] = []
    for step in range(400):
        action = rng.random()
        if action < 0.5 or not rows:
            i = rng.randrange(300)
            # Collisions on purpose: same MAC twice, same address twice, bad rows.
            ip = rng.randrange(300) if rng.random() < 0.1 else None
            row = host(i, ip)
            if rng.random() < 0.03:
                row = DhcpHost(row.mac + ",x", row.hostname, row.address)
            rows.append(row)
        elif action < 0.9:
            rows.pop(rng.randrange(len(rows)))
        else:
            rows[rng.randrange(len(rows))] = host(rng.randrange(300), name=f"n{step}")
        before = dict(hosts.entries)
        changed = hosts.update(rows)
        expected = full(rows)
        assert hosts.entries == expected, step
        assert changed == {
            m for m in before.keys() | expected.keys() if before.get(m) != expected.get(m)
        }, step
