"""The dry-run drift of the ipset and nftables managers: named, and nothing written."""

from __future__ import annotations

import re

from novanet.compute.antispoof import MACS, TABLE, port_elements
from novanet.linux.fakes.ipset import FakeIpset
from novanet.linux.fakes.nftables import FakeNftKernel
from novanet.linux.ipset import IpsetManager
from novanet.linux.iptables.manager import drift_item
from novanet.linux.nftables.table import NftTable

A = port_elements("vnet0", "fa:16:3e:00:00:01", "10.0.0.2")


def test_ipset_drift_names_missing_and_extra_members_and_writes_nothing():
    fake = FakeIpset()
    sets = IpsetManager(fake, re.compile("^nova-compute-group-[0-9]+$"))
    wanted = {"nova-compute-group-1": frozenset({"10.0.0.2", "10.0.0.3"}),
              "nova-compute-group-2": frozenset()}  # fmt: skip
    sets.ensure(wanted)
    assert sets.drift(wanted) == []
    fake.restore("del nova-compute-group-1 10.0.0.3\nadd nova-compute-group-1 10.0.0.9\n")
    fake.restore("destroy nova-compute-group-2\n")
    restores = len(fake.restores)
    assert sets.drift(wanted) == [
        "ipset nova-compute-group-1 lacks 10.0.0.3",
        "ipset nova-compute-group-1 holds 10.0.0.9, which is not a member",
        "ipset nova-compute-group-2 is missing",
    ]
    assert len(fake.restores) == restores  # a dry run
    sets.check(wanted)
    assert sets.drift(wanted) == []


def test_nft_drift_names_elements_and_a_missing_table_and_writes_nothing():
    kernel = FakeNftKernel(TABLE)
    table = NftTable(TABLE, kernel)
    assert table.drift() == []  # nothing declared whole yet: nothing is known stale
    table.replace({"vnet0": A})
    assert table.drift() == []
    kernel.delete_element(MACS.name, MACS.encode("vnet0", "fa:16:3e:00:00:01"))
    kernel.add_element(MACS.name, MACS.encode("vnet0", "aa:bb:cc:dd:ee:ff"))
    assert table.drift() == [
        'table bridge novanet lacks vif_macs { "vnet0" . fa:16:3e:00:00:01 }',
        'table bridge novanet holds stale vif_macs { "vnet0" . aa:bb:cc:dd:ee:ff }',
    ]
    assert kernel.keys(MACS.name) == {MACS.encode("vnet0", "aa:bb:cc:dd:ee:ff")}
    kernel.flush_rules()
    assert table.drift() == ["table bridge novanet: its rules or sets were changed"]
    kernel.drop_table()
    assert table.drift() == ["table bridge novanet is missing"]
    table.check_and_repair()
    assert table.drift() == []


def test_iptables_drift_lines_become_object_and_problem():
    assert drift_item("filter: rewrote chain nova-compute-inst-1 (0 rules in the kernel, 6 wanted)") == (
        "iptables filter nova-compute-inst-1",
        "not as novanet declared it: the repair would rewrite chain nova-compute-inst-1 "
        "(0 rules in the kernel, 6 wanted)",
    )
    assert drift_item("nat: deleted stale chain nova-network-x")[0] == "iptables nat nova-network-x"
    assert drift_item("filter: put our rules of FORWARD in place (1 deleted, 1 inserted)") == (
        "iptables filter FORWARD",
        "not as novanet declared it: the repair would put our rules of FORWARD in place "
        "(1 deleted, 1 inserted)",
    )
