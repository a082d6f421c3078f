"""NftTable against the stateful fake kernel: declared elements end up in the table, and stay."""

from __future__ import annotations

import pytest

from novanet.compute.antispoof import IPS, MACS, PORTS, TABLE, port_elements
from novanet.exception import ProcessExecutionError
from novanet.linux.fakes.nftables import FakeNftKernel
from novanet.linux.nftables.table import NftTable

A = port_elements("vnet0", "fa:16:3e:00:00:01", "10.0.0.2")
B = port_elements("vnet1", "fa:16:3e:00:00:02", "10.0.0.3")


@pytest.fixture
def kernel() -> FakeNftKernel:
    return FakeNftKernel(TABLE)


def ports(kernel: FakeNftKernel) -> set[str]:
    return {PORTS.decode(key)[0] for key in kernel.keys(PORTS.name)}


def test_first_declaration_writes_the_whole_table(kernel: FakeNftKernel) -> None:
    table = NftTable(TABLE, kernel)
    report = table.update({"vnet0": A})
    assert ports(kernel) == {"vnet0"}
    assert kernel.keys(MACS.name) == {MACS.encode("vnet0", "fa:16:3e:00:00:01")}
    assert len(kernel.scripts) == 1 and report == [
        "table bridge novanet written whole (it was missing) with 4 element(s)"
    ]


def test_later_changes_touch_only_their_elements(kernel: FakeNftKernel) -> None:
    table = NftTable(TABLE, kernel)
    table.replace({"vnet0": A})
    table.update({"vnet1": B})
    table.update({"vnet0": None})
    assert ports(kernel) == {"vnet1"}
    assert kernel.keys(IPS.name) == {IPS.encode("vnet1", "10.0.0.3")}
    assert len(kernel.scripts) == 1  # no rewrite: element batches only


def test_a_port_given_to_another_instance_loses_the_old_elements(kernel: FakeNftKernel) -> None:
    table = NftTable(TABLE, kernel)
    table.replace({"vnet0": A})
    other = port_elements("vnet0", "fa:16:3e:00:00:09", "10.0.0.9")
    table.update({"vnet0": other})
    assert kernel.keys(MACS.name) == {MACS.encode("vnet0", "fa:16:3e:00:00:09")}
    assert kernel.keys(IPS.name) == {IPS.encode("vnet0", "10.0.0.9")}


def test_unknown_elements_are_kept_until_the_first_replace(kernel: FakeNftKernel) -> None:
    # A previous run left vnet1's elements: during the first resync the
    # agent declares ports one by one, and vnet1 may simply not be declared yet.
    NftTable(TABLE, kernel).replace({"vnet0": A, "vnet1": B})
    table = NftTable(TABLE, kernel)  # the agent restarted
    table.update({"vnet0": A})
    assert ports(kernel) == {"vnet0", "vnet1"}
    assert table.check_and_repair() == []  # nothing is stale before replace()
    table.replace({"vnet0": A})
    assert ports(kernel) == {"vnet0"}


def test_a_restart_rewrites_the_table_once_keeping_every_port(kernel: FakeNftKernel) -> None:
    NftTable(TABLE, kernel).replace({"vnet0": A, "vnet1": B})
    table = NftTable(TABLE, kernel)
    table.update({"vnet0": A})
    # The new process cannot know whether the chains were edited while it
    # was away: it writes the table whole, in one transaction, with vnet1 kept.
    assert len(kernel.scripts) == 2
    assert '"vnet1" . fa:16:3e:00:00:02' in kernel.scripts[1]
    table.replace({"vnet0": A, "vnet1": B})
    assert len(kernel.scripts) == 2


def test_flushed_rules_are_written_again(kernel: FakeNftKernel) -> None:
    table = NftTable(TABLE, kernel)
    table.replace({"vnet0": A, "vnet1": B})
    kernel.flush_rules()
    report = table.check_and_repair()
    assert report == [
        "table bridge novanet written whole (its rules or sets were changed) with 8 element(s)"
    ]
    assert ports(kernel) == {"vnet0", "vnet1"}
    assert table.check_and_repair() == []


def test_a_deleted_table_comes_back(kernel: FakeNftKernel) -> None:
    table = NftTable(TABLE, kernel)
    table.replace({"vnet0": A})
    kernel.drop_table()
    assert table.check_and_repair()[0].endswith("(it was missing) with 4 element(s)")
    assert ports(kernel) == {"vnet0"}


def test_elements_deleted_or_added_by_hand_are_repaired(kernel: FakeNftKernel) -> None:
    table = NftTable(TABLE, kernel)
    table.replace({"vnet0": A})
    kernel.delete_element(MACS.name, MACS.encode("vnet0", "fa:16:3e:00:00:01"))
    kernel.add_element(MACS.name, MACS.encode("vnet0", "aa:bb:cc:dd:ee:ff"))
    report = table.check_and_repair()
    assert report == [
        'table bridge novanet: removed vif_macs { "vnet0" . aa:bb:cc:dd:ee:ff }',
        'table bridge novanet: added vif_macs { "vnet0" . fa:16:3e:00:00:01 }',
    ]
    assert kernel.keys(MACS.name) == {MACS.encode("vnet0", "fa:16:3e:00:00:01")}
    assert len(kernel.scripts) == 1


def test_a_quiet_check_reads_nothing(kernel: FakeNftKernel) -> None:
    table = NftTable(TABLE, kernel)
    table.replace({"vnet0": A})
    table.update({"vnet1": B})
    reads = kernel.reads
    assert table.check_and_repair() == []
    assert kernel.reads == reads  # our own commits: the generation says nothing else happened
    kernel.foreign_commit()
    assert table.check_and_repair() == []
    assert kernel.reads == reads + 1  # somebody committed: one look, nothing to repair
    assert table.check_and_repair() == [] and kernel.reads == reads + 1


def test_a_refused_change_falls_back_to_reading(kernel: FakeNftKernel) -> None:
    table = NftTable(TABLE, kernel)
    table.replace({"vnet0": A})
    # Removed by hand: deleting it again would be refused (ENOENT).
    kernel.delete_element(IPS.name, IPS.encode("vnet0", "10.0.0.2"))
    table.update({"vnet0": None, "vnet1": B})
    assert ports(kernel) == {"vnet1"} and kernel.keys(IPS.name) == {IPS.encode("vnet1", "10.0.0.3")}


def test_an_update_re_adds_what_it_wants_even_when_it_thinks_it_is_there(kernel) -> None:
    table = NftTable(TABLE, kernel)
    table.replace({"vnet0": A})
    kernel.delete_element(MACS.name, MACS.encode("vnet0", "fa:16:3e:00:00:01"))
    table.update({"vnet0": A})  # the same port again (a re-plug)
    assert kernel.keys(MACS.name) == {MACS.encode("vnet0", "fa:16:3e:00:00:01")}


def test_a_failed_rewrite_raises_and_is_retried(kernel: FakeNftKernel) -> None:
    table = NftTable(TABLE, kernel)
    kernel.fail_scripts = True
    with pytest.raises(ProcessExecutionError):
        table.replace({"vnet0": A})
    kernel.fail_scripts = False
    assert table.check_and_repair()[0].startswith("table bridge novanet written whole")
    assert ports(kernel) == {"vnet0"}


def test_remove_deletes_the_table(kernel: FakeNftKernel) -> None:
    table = NftTable(TABLE, kernel)
    table.replace({"vnet0": A})
    assert table.remove() is True
    assert kernel.structure_id is None and table.remove() is False
