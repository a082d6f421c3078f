"""The fast path's bookkeeping: what goes into a hostsdir file, when to compact."""

from __future__ import annotations

import os

from novanet.dhcp import hostsdir
from novanet.dhcp.hostsdir import LoadedHosts, Update, apply, file_text, plan
from novanet.dhcp.hostsfile import select_hosts
from novanet.dhcp.models import DhcpHost


def entries(*specs):
    return {e.mac: e for e in select_hosts(DhcpHost(m, n, a) for m, n, a in specs)}


A = ("fa:16:3e:00:00:01", "a", "10.0.0.2")
B = ("fa:16:3e:00:00:02", "b", "10.0.0.3")
C = ("fa:16:3e:00:00:03", "c", "10.0.0.4")
D_ON_B_ADDRESS = ("fa:16:3e:00:00:04", "d", "10.0.0.3")


def run(loaded, desired, forget=(), now=1.0, interval=300.0, max_files=10) -> Update:
    # Every MAC either side knows counts as changed: the plan must not care.
    changed = set(desired) | set(loaded.active) | set(loaded.stale) | set(forget)
    return plan(
        loaded, desired, changed, forget, now, compact_interval=interval, max_files=max_files
    )


def test_only_changed_macs_are_looked_at():
    loaded = LoadedHosts.fresh(entries(A).values(), 0.0)
    desired = entries(A, B)
    kw = {"compact_interval": 300.0, "max_files": 10}
    assert plan(loaded, desired, set(), (), 1.0, **kw) == Update()
    assert plan(loaded, desired, {B[0]}, (), 1.0, **kw).add == (desired[B[0]],)


def test_addition_is_one_file_with_the_new_line():
    loaded = LoadedHosts.fresh(entries(A).values(), 0.0)
    update = run(loaded, entries(A, B))
    assert update.compact is None
    assert file_text(update, "novalocal") == "fa:16:3e:00:00:02,b.novalocal,10.0.0.3\n"
    apply(loaded, update)
    assert set(loaded.active) == {A[0], B[0]} and loaded.files == 1
    assert run(loaded, entries(A, B)) == Update()  # nothing left to do


def test_removal_only_marks_stale():
    loaded = LoadedHosts.fresh(entries(A, B).values(), 0.0)
    update = run(loaded, entries(A))
    assert update == Update(removed=(B[0],))
    apply(loaded, update)
    assert set(loaded.stale) == {B[0]}


def test_forget_writes_an_ignore_line():
    loaded = LoadedHosts.fresh(entries(A, B).values(), 0.0)
    update = run(loaded, entries(A), forget={B[0]})
    assert update.compact is None
    assert file_text(update, "novalocal") == "fa:16:3e:00:00:02,ignore\n"
    apply(loaded, update)
    assert loaded.ignored == {B[0]}
    # Forgetting it again writes nothing.
    assert not run(loaded, entries(A), forget={B[0]}).writes_file


def test_forget_of_a_host_still_wanted_is_not_ignored():
    loaded = LoadedHosts.fresh(entries(A).values(), 0.0)
    assert run(loaded, entries(A), forget={A[0]}).ignore == ()


def test_reusing_an_address_of_a_stale_host_compacts():
    loaded = LoadedHosts.fresh(entries(A, B).values(), 0.0)
    apply(loaded, run(loaded, entries(A)))
    update = run(loaded, entries(A, D_ON_B_ADDRESS))
    assert update.compact and "10.0.0.3" in update.compact


def test_changed_host_compacts():
    loaded = LoadedHosts.fresh(entries(A).values(), 0.0)
    moved = (A[0], "a", "10.0.0.9")
    assert run(loaded, entries(moved)).compact


def test_stale_host_back_unchanged_needs_nothing():
    loaded = LoadedHosts.fresh(entries(A, B).values(), 0.0)
    apply(loaded, run(loaded, entries(A)))
    update = run(loaded, entries(A, B))
    assert update == Update(revive=(B[0],))
    apply(loaded, update)
    assert set(loaded.active) == {A[0], B[0]} and not loaded.stale


def test_ignored_host_back_compacts():
    loaded = LoadedHosts.fresh(entries(A, B).values(), 0.0)
    apply(loaded, run(loaded, entries(A), forget={B[0]}))
    assert run(loaded, entries(A, B)).compact


def test_compaction_when_stale_hosts_are_older_than_the_interval():
    loaded = LoadedHosts.fresh(entries(A, B).values(), 0.0)
    apply(loaded, run(loaded, entries(A), now=10.0))
    assert run(loaded, entries(A, C), now=200.0).compact is None
    assert run(loaded, entries(A, C), now=301.0).compact
    # No stale host: no compaction however old.
    fresh = LoadedHosts.fresh(entries(A).values(), 0.0)
    assert run(fresh, entries(A, C), now=10_000.0).compact is None


def test_compaction_when_the_directory_is_full():
    loaded = LoadedHosts.fresh([], 0.0)
    loaded.files = 10
    assert run(loaded, entries(A), max_files=10).compact


def test_files_helpers(tmp_path):
    directory = str(tmp_path / "nova-br100.d")
    hostsdir.ensure_dir(directory)
    hostsdir.write_file(directory, 7, "x\n")
    hostsdir.write_file(directory, 12, "y\n")
    assert sorted(os.listdir(directory)) == ["0000000007", "0000000012"]
    assert hostsdir.last_seq(directory) == 12
    hostsdir.clear_dir(directory)
    assert os.listdir(directory) == []
    hostsdir.remove_dir(directory)
    assert not os.path.exists(directory)
    assert hostsdir.last_seq(directory) == 0
