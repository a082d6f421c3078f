"""Deletion by nf_tables handle, concurrent writers, and the mangle/raw tables, on real iptables."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import pytest

from novanet.compute.dispatch import LocalJumps
from novanet.linux.iptables import IptablesManager, IptablesRunner
from novanet.linux.iptables.nftnl import StaleGeneration
from novanet.linux.iptables.plan import HandleBatch
from novanet.linux.iptables.view import RuleHandle
from tests.lib import netns as netns_lib
from tests.unit.linux.test_iptables_seed import (
    add_instance,
    declare_compute,
    instance_rules,
    remove_instance,
)

pytestmark = pytest.mark.root

INSTANCES = {i: f"10.0.{i // 250}.{i % 250 + 2}" for i in range(1, 41)}


class CountingRunner(IptablesRunner):
    """The real runner, counting what went to the kernel which way."""

    def __init__(self, ns: netns_lib.Namespace, backend: str) -> None:
        super().__init__(backend, netns=ns.name)
        self.ns = ns
        self.counts = {"restore": 0, "dump": 0, "delete": 0, "refused": 0}

    def restore(self, table: str, text: str, learn: bool = True) -> list[RuleHandle] | None:
        self.counts["restore"] += 1
        return super().restore(table, text, learn)

    def rule_handles(self, table: str, chain: str) -> list[RuleHandle] | None:
        self.counts["dump"] += 1
        return super().rule_handles(table, chain)

    def delete_by_handle(self, table: str, batch: HandleBatch, token: Hashable) -> Hashable:
        self.counts["delete"] += 1
        try:
            return super().delete_by_handle(table, batch, token)
        except StaleGeneration:
            self.counts["refused"] += 1
            raise


def listing(ns: netns_lib.Namespace, backend: str, table: str = "filter") -> list[str]:
    return ns.run([f"iptables-{backend}", "-t", table, "-S"]).stdout.splitlines()


def host(runner: CountingRunner, tables: Sequence[str] = ("filter", "nat")) -> IptablesManager:
    mgr = IptablesManager("compute", runner, tables=tables)
    declare_compute(mgr, INSTANCES)
    mgr.full_sync()
    return mgr


def expected_local(ids: Sequence[int]) -> list[str]:
    return [f"-A nova-compute-local -d {INSTANCES[i]}/32 -j nova-compute-inst-{i}" for i in ids]


def local_of(ns: netns_lib.Namespace, backend: str) -> list[str]:
    return [line for line in listing(ns, backend) if line.startswith("-A nova-compute-local ")]


def test_nft_removal_is_one_deletion_by_handle(netns: netns_lib.Namespace) -> None:
    runner = CountingRunner(netns, "nft")
    mgr = host(runner)
    assert runner.handles()
    add_instance(mgr, 77, "10.0.9.9")
    mgr.apply()
    runner.counts.update(restore=0, dump=0)
    remove_instance(mgr, 77)  # handle learned from the kernel's report of the add
    mgr.apply()
    assert runner.counts == {"restore": 0, "dump": 0, "delete": 1, "refused": 0}
    mgr.close()
    # A restarted agent finds everything in place: it writes nothing, so the
    # kernel reports no handle; it reads those of nova-compute-local once.
    runner = CountingRunner(netns, "nft")
    mgr = host(runner)
    assert runner.counts == {"restore": 0, "dump": 1, "delete": 0, "refused": 0}
    remove_instance(mgr, 20)
    mgr.apply()
    remove_instance(mgr, 30)
    mgr.apply()
    assert runner.counts == {"restore": 0, "dump": 1, "delete": 2, "refused": 0}
    rules = listing(netns, "nft")
    assert local_of(netns, "nft") == expected_local([i for i in INSTANCES if i not in (20, 30)])
    assert "-N nova-compute-inst-20" not in rules and "-N nova-compute-inst-77" not in rules
    assert mgr.check_and_repair(force=True) == []
    mgr.close()


def test_a_write_between_our_probe_and_our_deletion_is_refused_by_the_kernel(
    netns: netns_lib.Namespace,
) -> None:
    class Racing(CountingRunner):
        def delete_by_handle(self, table: str, batch: HandleBatch, token: Hashable) -> Hashable:
            if not self.counts["delete"]:
                self.ns.run(["iptables-nft", "-w", "-A", "INPUT", "-i", "eth9", "-j", "DROP"])
            return super().delete_by_handle(table, batch, token)

    runner = Racing(netns, "nft")
    mgr = host(runner)
    remove_instance(mgr, 10)
    assert mgr.apply()  # refused, then read and converged through iptables-restore
    assert runner.counts["refused"] == 1
    assert local_of(netns, "nft") == expected_local([i for i in INSTANCES if i != 10])
    assert [line for line in listing(netns, "nft") if line.startswith("-A INPUT")] == [
        "-A INPUT -j nova-compute-INPUT",
        "-A INPUT -i eth9 -j DROP",
    ]
    assert mgr.check_and_repair(force=True) == []
    mgr.close()


def test_handles_are_relearned_after_another_program_rewrote_our_chain(
    netns: netns_lib.Namespace,
) -> None:
    runner = CountingRunner(netns, "nft")
    mgr = host(runner)
    remove_instance(mgr, 5)
    mgr.apply()
    # Somebody deletes and re-adds our jumps: same text, new handles.
    again = ["*filter", ":nova-compute-local - [0:0]", *local_of(netns, "nft"), "COMMIT", ""]
    netns.run(["iptables-nft-restore", "-w", "--noflush"], input="\n".join(again))
    assert mgr.check_and_repair() == []  # same rules: nothing to repair
    remove_instance(mgr, 6)
    mgr.apply()
    assert local_of(netns, "nft") == expected_local([i for i in INSTANCES if i not in (5, 6)])
    assert mgr.check_and_repair(force=True) == []
    mgr.close()


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_mangle_and_raw_tables_are_managed_and_repaired(
    netns: netns_lib.Namespace, backend: str
) -> None:
    runner = CountingRunner(netns, backend)
    mgr = IptablesManager("network", runner, tables=("filter", "nat", "mangle", "raw"))
    mgr.ipv4["mangle"].add_rule(
        "POSTROUTING", "-o br100 -p udp --dport 68 -j CHECKSUM --checksum-fill"
    )
    mgr.ipv4["raw"].add_rule("PREROUTING", "-p udp -m udp --dport 4789 -j NOTRACK")
    mgr.full_sync()
    mangle = listing(netns, backend, "mangle")
    assert "-A POSTROUTING -j nova-network-POSTROUTING" in mangle
    assert (
        "-A nova-network-POSTROUTING -o br100 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill"
    ) in mangle
    assert "-A PREROUTING -j nova-network-PREROUTING" in listing(netns, backend, "raw")
    assert "-A nova-network-PREROUTING -p udp -m udp --dport 4789 -j NOTRACK" in listing(
        netns, backend, "raw"
    )
    assert mgr.check_and_repair() == []
    # The change probe watches mangle too (legacy: its shape changes).
    netns.run([f"iptables-{backend}", "-w", "-t", "mangle", "-F", "nova-network-POSTROUTING"])
    assert mgr.check_and_repair() != []
    assert (
        "-A nova-network-POSTROUTING -o br100 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill"
    ) in listing(netns, backend, "mangle")
    assert mgr.check_and_repair() == []
    mgr.close()


def bucketed_host(
    runner: CountingRunner, ids: Sequence[int], split_above: int = 20
) -> tuple[IptablesManager, LocalJumps]:
    """The compute host with the agent's layout of nova-compute-local (dispatch.py)."""
    mgr = IptablesManager("compute", runner)
    declare_compute(mgr, {})
    jumps = LocalJumps(mgr.ipv4["filter"], split_above)
    for i in ids:
        mgr.ipv4["filter"].add_chain(f"inst-{i}")
        mgr.ipv4["filter"].set_rules(f"inst-{i}", instance_rules())
        jumps.set(f"inst-{i}", INSTANCES[i])
    mgr.full_sync()
    return mgr, jumps


def buckets_of(ns: netns_lib.Namespace) -> dict[str, list[str]]:
    """nova-compute-local and its bucket chains as the kernel holds them."""
    chains: dict[str, list[str]] = {}
    for line in listing(ns, "nft"):
        words = line.split()
        if words[0] == "-A" and words[1].startswith(("nova-compute-local", "nova-compute-l-")):
            chains.setdefault(words[1], []).append(" ".join(words[2:]))
    return chains


def test_a_big_host_keeps_its_jumps_in_buckets_removed_by_handle(
    netns: netns_lib.Namespace,
) -> None:
    """Above the threshold: /26 buckets; removals by handle; an empty bucket goes; back to flat."""
    runner = CountingRunner(netns, "nft")
    mgr, jumps = bucketed_host(runner, list(INSTANCES))  # 10.0.0.3 .. 10.0.0.42: one bucket
    jumps.set("inst-41", "10.0.0.100")  # and a second /26
    mgr.ipv4["filter"].add_chain("inst-41")
    mgr.ipv4["filter"].set_rules("inst-41", instance_rules())
    mgr.apply()
    assert buckets_of(netns) == {
        "nova-compute-local": [
            "-d 10.0.0.0/26 -j nova-compute-l-0a000000",
            "-d 10.0.0.64/26 -j nova-compute-l-0a000040",
        ],
        "nova-compute-l-0a000000": [
            f"-d {INSTANCES[i]}/32 -j nova-compute-inst-{i}" for i in sorted(INSTANCES)
        ],
        "nova-compute-l-0a000040": ["-d 10.0.0.100/32 -j nova-compute-inst-41"],
    }
    runner.counts.update(restore=0, dump=0, delete=0)
    for i in (7, 41):  # one jump of a full bucket; the only one of the other
        jumps.remove(f"inst-{i}")
        mgr.ipv4["filter"].remove_chain(f"inst-{i}")
        mgr.apply()
    assert runner.counts["restore"] == 0 and runner.counts["delete"] == 2
    kernel = buckets_of(netns)
    assert kernel["nova-compute-local"] == ["-d 10.0.0.0/26 -j nova-compute-l-0a000000"]
    assert "nova-compute-l-0a000040" not in kernel
    assert "-N nova-compute-l-0a000040" not in listing(netns, "nft")
    assert len(kernel["nova-compute-l-0a000000"]) == 39
    assert mgr.check_and_repair(force=True) == []
    # Below half the threshold the jumps move back: the seed's nova-compute-local.
    left = [1, 2, 3, 4, 5, 6, 8, 9, 10]
    for i in INSTANCES:
        if i not in left and i != 7:
            jumps.remove(f"inst-{i}")
            mgr.ipv4["filter"].remove_chain(f"inst-{i}")
    mgr.apply()
    assert not jumps.split
    assert buckets_of(netns) == {"nova-compute-local": [e.split(" ", 2)[2] for e in expected_local(left)]}
    assert not [line for line in listing(netns, "nft") if "nova-compute-l-" in line]
    assert mgr.check_and_repair(force=True) == []
    mgr.close()


def test_a_restarted_big_host_writes_nothing_whatever_the_order(
    netns: netns_lib.Namespace,
) -> None:
    """Buckets are sorted by address: the kernel's state does not depend on the history."""
    runner = CountingRunner(netns, "nft")
    mgr, _ = bucketed_host(runner, list(INSTANCES))
    mgr.close()
    runner = CountingRunner(netns, "nft")
    mgr, jumps = bucketed_host(runner, sorted(INSTANCES, reverse=True))
    assert jumps.split
    assert runner.counts["restore"] == 0
    assert mgr.check_and_repair(force=True) == []
    mgr.close()
