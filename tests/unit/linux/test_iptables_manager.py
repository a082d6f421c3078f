"""IptablesManager against the stateful fake: end states of the tables."""

from __future__ import annotations

import threading

import pytest

from novanet.linux.fakes.iptables import FakeIptables
from novanet.linux.iptables import (
    InvalidChainName,
    IptablesManager,
    IptablesRestoreError,
)
from novanet.linux.iptables.plan import HandleBatch
from tests.unit.linux.test_iptables_seed import (
    add_instance,
    controller,
    declare_compute,
    remove_instance,
    seed_listing,
)

COMPUTE_SEED = "compute-1-iptables-filter.txt"


def compute_host(fake: FakeIptables, instances: dict[int, str] | None = None) -> IptablesManager:
    mgr = IptablesManager("compute", fake)
    declare_compute(mgr, instances)
    mgr.full_sync()
    return mgr


def last_restore(fake: FakeIptables) -> list[str]:
    return fake.restores[-1][1].splitlines()


def test_adding_an_instance_touches_only_its_chain_and_one_jump() -> None:
    fake = FakeIptables()
    mgr = compute_host(fake)
    saves, restores = fake.saves, len(fake.restores)
    add_instance(mgr, 10, "10.0.0.3")
    mgr.apply()
    assert fake.saves == saves  # no iptables-save on the change path
    assert len(fake.restores) == restores + 1
    text = last_restore(fake)
    assert text[:2] == ["*filter", ":nova-compute-inst-10 - [0:0]"]
    assert text[-2:] == ["-A nova-compute-local -d 10.0.0.3/32 -j nova-compute-inst-10", "COMMIT"]
    assert all(line.startswith("-A nova-compute-inst-10 ") for line in text[2:-2])
    assert fake.chain("nova-compute-local") == [
        "-d 10.0.0.2/32 -j nova-compute-inst-9",
        "-d 10.0.0.3/32 -j nova-compute-inst-10",
    ]
    assert fake.chain("nova-compute-inst-10") == fake.chain("nova-compute-inst-9")


def test_removing_an_instance_from_a_big_local_chain_is_one_delete_by_handle() -> None:
    fake = FakeIptables()
    mgr = compute_host(fake, {i: f"10.0.{i // 250}.{i % 250 + 2}" for i in range(1, 101)})
    restores = len(fake.restores)
    saves = fake.saves
    jump = fake.rule_handles("filter", "nova-compute-local")[49]  # type: ignore[index]
    assert jump.target == "nova-compute-inst-50"
    remove_instance(mgr, 50)
    mgr.apply()
    assert (len(fake.restores), fake.saves) == (restores, saves)
    assert fake.deletions[-1] == (
        "filter",
        HandleBatch(
            flush=("nova-compute-inst-50",),
            rules=(("nova-compute-local", jump.handle),),
            delete=("nova-compute-inst-50",),
        ),
    )
    local = fake.chain("nova-compute-local")
    assert local is not None and len(local) == 99
    assert "-d 10.0.0.52/32 -j nova-compute-inst-50" not in local
    assert fake.chain("nova-compute-inst-50") is None
    assert mgr.check_and_repair(force=True) == []


def test_without_handles_removing_an_instance_is_one_delete_by_rule() -> None:
    fake = FakeIptables(handles=False)  # the legacy backend
    mgr = compute_host(fake, {i: f"10.0.{i // 250}.{i % 250 + 2}" for i in range(1, 101)})
    remove_instance(mgr, 50)
    mgr.apply()
    assert last_restore(fake) == [
        "*filter",
        ":nova-compute-inst-50 - [0:0]",
        "-D nova-compute-local -d 10.0.0.52/32 -j nova-compute-inst-50",
        "-X nova-compute-inst-50",
        "COMMIT",
    ]
    local = fake.chain("nova-compute-local")
    assert local is not None and len(local) == 99
    assert fake.chain("nova-compute-inst-50") is None


def test_handles_of_added_rules_are_learned_from_what_the_kernel_reports() -> None:
    fake = FakeIptables()
    mgr = compute_host(fake, {i: f"10.0.{i // 250}.{i % 250 + 2}" for i in range(1, 41)})
    add_instance(mgr, 200, "10.0.3.1")
    mgr.apply()
    dumps, restores = fake.dumps, len(fake.restores)
    remove_instance(mgr, 200)
    mgr.apply()
    assert (fake.dumps, len(fake.restores)) == (dumps, restores)  # no read at all
    assert fake.deletions[-1][1].delete == ("nova-compute-inst-200",)
    assert fake.chain("nova-compute-inst-200") is None
    assert len(fake.chain("nova-compute-local") or []) == 40


def test_full_sync_reads_the_handles_of_big_chains_its_restore_did_not_report() -> None:
    fake = FakeIptables()
    mgr = compute_host(fake, {i: f"10.0.{i // 250}.{i % 250 + 2}" for i in range(1, 101)})
    assert fake.dumps == 1  # nova-compute-local: 100 rules, too many to learn on the way
    assert len(mgr.view("filter").handles["nova-compute-local"]) == 100
    for inst_id in (10, 20):
        remove_instance(mgr, inst_id)
        mgr.apply()
    assert fake.dumps == 1
    assert len(fake.deletions) == 2 and fake.chain("nova-compute-inst-20") is None


def test_handles_unknown_after_a_sync_are_dumped_once() -> None:
    fake = FakeIptables()
    mgr = compute_host(fake, {i: f"10.0.{i // 250}.{i % 250 + 2}" for i in range(1, 41)})
    generation = fake.generation
    fake.run("-A INPUT -j ACCEPT")  # somebody else writes: our handles may be stale
    remove_instance(mgr, 10)
    mgr.apply()  # refused by handle, then read and converged through iptables-restore
    assert fake.chain("nova-compute-inst-10") is None
    for inst_id in (20, 30, 40):
        remove_instance(mgr, inst_id)
        mgr.apply()
    assert fake.dumps == 1
    assert [batch.delete for _, batch in fake.deletions] == [
        (f"nova-compute-inst-{i}",) for i in (10, 20, 30, 40)
    ]
    assert fake.generation == generation + 2 + 3  # the refused batch committed nothing
    local = fake.chain("nova-compute-local") or []
    assert len(local) == 36
    assert not any(f"inst-{i} " in r + " " for r in local for i in (10, 20, 30, 40))
    assert fake.chain("INPUT") == ["-j nova-compute-INPUT", "-j ACCEPT"]
    assert mgr.check_and_repair(force=True) == []


def test_handles_are_forgotten_when_somebody_else_wrote() -> None:
    fake = FakeIptables()
    mgr = compute_host(fake, {i: f"10.0.{i // 250}.{i % 250 + 2}" for i in range(1, 101)})
    before = fake.listing("filter")
    fake.recreate("filter")  # same rules, every handle renumbered
    assert fake.listing("filter") == before
    assert mgr.check_and_repair() == []  # read: nothing to repair
    remove_instance(mgr, 20)
    mgr.apply()
    local = fake.chain("nova-compute-local") or []
    assert len(local) == 99
    assert "-d 10.0.0.22/32 -j nova-compute-inst-20" not in local
    assert fake.chain("nova-compute-inst-20") is None
    assert mgr.check_and_repair(force=True) == []


def test_a_write_between_our_probe_and_our_deletion_is_refused_and_read() -> None:
    class Racing(FakeIptables):
        def delete_by_handle(self, table, batch, token):  # type: ignore[no-untyped-def]
            if not self.deletions:
                self.run("-A INPUT -i eth9 -j DROP")  # another program, just now,
                self.recreate("filter")  # and every handle changed
            return super().delete_by_handle(table, batch, token)

    fake = Racing()
    mgr = compute_host(fake, {i: f"10.0.{i // 250}.{i % 250 + 2}" for i in range(1, 101)})
    remove_instance(mgr, 50)
    report = mgr.apply()
    assert report  # done through a read and a restore instead
    assert fake.chain("nova-compute-inst-50") is None
    local = fake.chain("nova-compute-local") or []
    assert len(local) == 99 and "-d 10.0.0.52/32 -j nova-compute-inst-50" not in local
    assert fake.chain("INPUT") == ["-j nova-compute-INPUT", "-i eth9 -j DROP"]
    assert mgr.check_and_repair(force=True) == []


def test_removing_the_seed_instance_restores_an_empty_host() -> None:
    fake = FakeIptables()
    mgr = compute_host(fake)
    remove_instance(mgr, 9)
    mgr.apply()
    listing = fake.listing("filter")
    assert not any("inst-9" in line for line in listing)
    assert "-N nova-compute-local" in listing
    assert mgr.check_and_repair(force=True) == []


def test_defer_apply_batches_into_one_restore_per_table() -> None:
    fake = FakeIptables()
    mgr = compute_host(fake)
    before = len(fake.restores)
    with mgr.defer_apply():
        for i in range(10, 15):
            add_instance(mgr, i, f"10.0.0.{i}")
            mgr.apply()  # deferred
        assert len(fake.restores) == before
    assert len(fake.restores) == before + 1
    assert len(fake.chain("nova-compute-local") or []) == 6


def test_full_sync_deletes_stale_chains_and_duplicate_jumps_only_of_this_binary() -> None:
    fake = FakeIptables()
    old = compute_host(fake, {7: "10.0.0.9", 9: "10.0.0.2"})
    old.ipv4["filter"].add_chain("old")
    old.ipv4["filter"].add_rule("INPUT", "-j $old", wrap=False)
    old.apply()
    fake.run("-A FORWARD -j nova-filter-top")  # duplicate jump
    fake.run("-A nova-filter-top -j nova-compute-local")  # duplicate jump
    fake.run("-N nova-api-INPUT")  # another binary's chain
    fake.run("-A INPUT -j nova-api-INPUT")
    fake.run("-N foreign")  # another program's chain and rule
    fake.run("-A foreign -j ACCEPT")
    fake.run("-A FORWARD -j foreign")

    restarted = compute_host(fake)  # the agent now knows instance 9 only

    listing = fake.listing("filter")
    assert "-N nova-compute-inst-7" not in listing
    assert "-N nova-compute-old" not in listing
    assert listing.count("-A FORWARD -j nova-filter-top") == 1
    assert listing.count("-A nova-filter-top -j nova-compute-local") == 1
    assert "-A INPUT -j nova-api-INPUT" in listing
    assert "-A foreign -j ACCEPT" in listing
    foreign_free = [line for line in listing if "foreign" not in line and "nova-api" not in line]
    assert foreign_free == seed_listing(COMPUTE_SEED)
    assert fake.chain("FORWARD") == [
        "-j nova-filter-top",
        "-j nova-compute-FORWARD",
        "-j foreign",
    ]
    assert restarted.check_and_repair(force=True) == []


def test_apply_before_full_sync_leaves_stale_chains_alone() -> None:
    fake = FakeIptables()
    compute_host(fake, {7: "10.0.0.9"})
    mgr = IptablesManager("compute", fake)
    declare_compute(mgr)
    mgr.apply()
    assert fake.chain("nova-compute-inst-7") is not None
    mgr.full_sync()
    assert fake.chain("nova-compute-inst-7") is None
    assert fake.listing("filter") == seed_listing(COMPUTE_SEED)


def test_stale_chain_referenced_by_a_foreign_chain_is_kept() -> None:
    fake = FakeIptables()
    compute_host(fake, {7: "10.0.0.9"})
    fake.run("-N foreign")
    fake.run("-A foreign -j nova-compute-inst-7")
    mgr = compute_host(fake, {})
    assert fake.chain("nova-compute-inst-7") is not None
    assert fake.chain("foreign") == ["-j nova-compute-inst-7"]
    assert any(
        "kept stale chain nova-compute-inst-7" in line for line in mgr.check_and_repair(force=True)
    )


def test_foreign_rules_keep_their_order_after_ours() -> None:
    fake = FakeIptables()
    fake.run("-N docker")
    fake.run("-A FORWARD -j docker")
    fake.run("-A FORWARD -i eth9 -j DROP")
    fake.run("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT")
    mgr = compute_host(fake)
    assert fake.chain("FORWARD") == [
        "-j nova-filter-top",
        "-j nova-compute-FORWARD",
        "-j docker",
        "-i eth9 -j DROP",
    ]
    assert fake.chain("INPUT") == ["-j nova-compute-INPUT", "-p tcp -m tcp --dport 22 -j ACCEPT"]
    # Added later at the top by its owner: ours move back in front, theirs
    # keep their relative order.
    fake.run("-I FORWARD 1 -j ACCEPT")
    fake.run("-A FORWARD -o eth9 -j DROP")
    assert mgr.check_and_repair() != []
    assert fake.chain("FORWARD") == [
        "-j nova-filter-top",
        "-j nova-compute-FORWARD",
        "-j ACCEPT",
        "-j docker",
        "-i eth9 -j DROP",
        "-o eth9 -j DROP",
    ]


@pytest.mark.parametrize(
    "tamper",
    [
        ["-D nova-compute-inst-9 1"],
        ["-F nova-compute-inst-9"],
        ["-R nova-compute-inst-9 5 -s 0.0.0.0/0 -j ACCEPT"],
        ["-D nova-compute-local 1", "-F nova-compute-inst-9", "-X nova-compute-inst-9"],
        ["-F nova-filter-top"],
        ["-D FORWARD 1", "-D FORWARD 1"],
        ["-A OUTPUT -j nova-filter-top", "-I INPUT 1 -j nova-compute-INPUT"],
        ["-F"],
        ["-F", "-X"],
    ],
    ids=[
        "delete-rule",
        "flush-inst",
        "edit-rule",
        "delete-chain",
        "flush-top",
        "delete-jumps",
        "duplicate-jumps",
        "flush-all",
        "delete-all",
    ],
)
def test_check_and_repair_undoes_tampering(tamper: list[str]) -> None:
    fake = FakeIptables()
    mgr = compute_host(fake)
    assert mgr.check_and_repair() == []
    for command in tamper:
        fake.run(command)
    repaired = mgr.check_and_repair()
    assert repaired, "tampering went unnoticed"
    assert fake.listing("filter") == seed_listing(COMPUTE_SEED)
    saves = fake.saves
    assert mgr.check_and_repair() == []
    assert fake.saves == saves  # quiet again: the probe alone decides


def test_tampering_then_a_change_reads_before_writing() -> None:
    # Someone deleted the jump to inst-9; our memory says it is there. The
    # next change must not trust that memory.
    fake = FakeIptables()
    mgr = compute_host(fake, {i: f"10.0.0.{i}" for i in range(2, 60)})
    fake.run("-D nova-compute-local 1")
    add_instance(mgr, 60, "10.0.0.60")
    mgr.apply()
    local = fake.chain("nova-compute-local") or []
    assert local[0] == "-d 10.0.0.2/32 -j nova-compute-inst-2"
    assert len(local) == 59


def test_restart_converges_without_writing_or_duplicating() -> None:
    fake = FakeIptables()
    compute_host(fake, {9: "10.0.0.2", 10: "10.0.0.3"})
    before = fake.listing("filter"), fake.listing("nat")
    restores = len(fake.restores)
    mgr = compute_host(fake, {9: "10.0.0.2", 10: "10.0.0.3"})
    assert (fake.listing("filter"), fake.listing("nat")) == before
    assert len(fake.restores) == restores
    assert mgr.check_and_repair() == []


def test_restart_of_one_controller_daemon_keeps_the_other_ones_rules() -> None:
    fake = FakeIptables()
    network, api = controller(fake)
    network.full_sync()
    api.full_sync()
    network2, _ = controller(fake)
    network2.full_sync()
    assert fake.listing("filter") == seed_listing("controller-iptables-filter.txt")
    assert fake.listing("nat") == seed_listing("controller-iptables-nat.txt")


def test_failed_restore_names_the_rule_and_the_next_apply_repairs() -> None:
    fake = FakeIptables()
    mgr = compute_host(fake)
    filt = mgr.ipv4["filter"]
    add_instance(mgr, 10, "10.0.0.3")
    filt.add_rule("inst-10", "-j no-such-chain")
    with pytest.raises(IptablesRestoreError) as caught:
        mgr.apply()
    assert "-A nova-compute-inst-10 -j no-such-chain" in str(caught.value)
    assert caught.value.rule == "-A nova-compute-inst-10 -j no-such-chain"
    assert fake.chain("nova-compute-inst-10") is None  # nothing half-applied
    filt.remove_rule("inst-10", "-j no-such-chain")
    mgr.apply()
    assert fake.chain("nova-compute-inst-10") == fake.chain("nova-compute-inst-9")
    assert mgr.check_and_repair() == []


def test_jump_to_an_undeclared_chain_of_ours_is_refused_before_iptables() -> None:
    fake = FakeIptables()
    mgr = compute_host(fake)
    restores = len(fake.restores)
    mgr.ipv4["filter"].add_rule("local", "-d 10.0.0.7 -j $inst-77")
    with pytest.raises(ValueError, match="nova-compute-inst-77"):
        mgr.apply()
    assert len(fake.restores) == restores


def test_a_new_chain_jumping_to_an_undeclared_chain_of_ours_is_refused_before_iptables() -> None:
    fake = FakeIptables()
    mgr = compute_host(fake)
    restores = len(fake.restores)
    mgr.ipv4["filter"].add_chain("inst-5")
    mgr.ipv4["filter"].set_rules("inst-5", ["-j ACCEPT", "-j $inst-78"])
    with pytest.raises(ValueError, match="'-A nova-compute-inst-5 -j nova-compute-inst-78'"):
        mgr.apply()
    assert len(fake.restores) == restores


def test_chain_names_longer_than_iptables_allows_are_refused() -> None:
    mgr = IptablesManager("compute", FakeIptables())
    with pytest.raises(InvalidChainName, match="28"):
        mgr.ipv4["filter"].add_chain("inst-1234567890123456")


def test_spelling_iptables_prints_differently_is_learnt() -> None:
    class Respelling(FakeIptables):
        # A kernel that prints a rule in a form normalise.py cannot predict.
        def _command(self, work, table, line):  # type: ignore[no-untyped-def]
            line = line.replace("-m foo --bar 1", "-m foo --bar 0x1")
            super()._command(work, table, line)

    fake = Respelling()
    mgr = IptablesManager("compute", fake)
    declare_compute(mgr)
    mgr.ipv4["filter"].add_rule("provider", "-m foo --bar 1 -j ACCEPT")
    mgr.full_sync()
    # The table keeps the caller's rule; the manager's view knows the kernel's text.
    assert mgr.ipv4["filter"].rules("provider") == ["-m foo --bar 1 -j ACCEPT"]
    view = mgr.view("filter")
    assert view.chains["nova-compute-provider"] == ("-m foo --bar 0x1 -j ACCEPT",)
    assert view.spellings == {"-m foo --bar 1 -j ACCEPT": "-m foo --bar 0x1 -j ACCEPT"}
    restores = len(fake.restores)
    assert mgr.check_and_repair(force=True) == []
    assert len(fake.restores) == restores
    # Tampering rewrites the chain in the kernel's spelling, without a read-back.
    fake.run("-F nova-compute-provider")
    saves = fake.saves
    assert mgr.check_and_repair() != []
    assert fake.chain("nova-compute-provider") == ["-m foo --bar 0x1 -j ACCEPT"]
    assert fake.saves == saves + 2  # filter and nat read once, no read-back
    # The caller may keep using its own spelling; a rule gone from the model
    # takes its learned spelling with it at the next read.
    assert mgr.ipv4["filter"].remove_rule("provider", "-m foo --bar 1 -j ACCEPT")
    mgr.apply()
    assert fake.chain("nova-compute-provider") == []
    mgr.check_and_repair(force=True)
    assert mgr.view("filter").spellings == {}


def test_concurrent_changes_from_threads_all_land() -> None:
    fake = FakeIptables()
    mgr = compute_host(fake, {})

    def boot(first: int) -> None:
        for i in range(first, first + 20):
            add_instance(mgr, i, f"10.1.{i // 200}.{i % 200 + 1}")
            mgr.apply()

    threads = [threading.Thread(target=boot, args=(n * 100,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake.chain("nova-compute-local") or []) == 80
    assert mgr.check_and_repair(force=True) == []


def test_mangle_table_can_be_managed_too() -> None:
    fake = FakeIptables()
    mgr = IptablesManager("compute", fake, tables=("filter", "nat", "mangle"))
    mgr.ipv4["mangle"].add_rule("POSTROUTING", "-p udp --dport 68 -j CHECKSUM --checksum-fill")
    mgr.full_sync()
    assert fake.chain("POSTROUTING", "mangle") == ["-j nova-compute-POSTROUTING"]
    assert fake.chain("nova-compute-POSTROUTING", "mangle") == [
        "-p udp -m udp --dport 68 -j CHECKSUM --checksum-fill"
    ]


class InexactFake(FakeIptables):
    """Like the legacy probe: counts rules, so a same-size edit goes unseen."""

    def token(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(len(rules) for t in sorted(self.tables) for rules in self.tables[t].values())

    def own_commits(self, before: object, after: object, count: int) -> bool:
        return True

    def token_exact(self) -> bool:
        return False


def test_inexact_probe_is_backed_by_a_periodic_read() -> None:
    fake = InexactFake()
    mgr = IptablesManager("compute", fake, full_check_every=3)
    declare_compute(mgr)
    mgr.full_sync()
    fake.run("-R nova-compute-inst-9 5 -s 0.0.0.0/0 -j ACCEPT")
    assert mgr.check_and_repair() == []  # the probe cannot see it
    assert mgr.check_and_repair() == []
    assert mgr.check_and_repair() != []  # every third check reads anyway
    assert fake.listing("filter") == seed_listing(COMPUTE_SEED)
    fake.run("-D nova-compute-inst-9 1")  # a size change: seen at once
    assert mgr.check_and_repair() != []


def test_from_conf_uses_prefix_and_backend() -> None:
    from oslo_config import cfg

    from novanet.conf import firewall

    conf = cfg.ConfigOpts()
    firewall.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("iptables_prefix", "lab")
    fake = FakeIptables()
    mgr = IptablesManager.from_conf(conf, "compute", runner=fake)
    mgr.full_sync()
    assert "-A FORWARD -j lab-filter-top" in fake.listing("filter")
    assert "-N lab-compute-local" in fake.listing("filter")


def test_a_callers_pending_changes_are_applied_not_reported_as_repairs() -> None:
    fake = FakeIptables()
    mgr = compute_host(fake)
    mgr.ipv4["filter"].add_chain("inst-50")  # its rules come in the caller's next call
    assert mgr.check_and_repair() == []
    assert fake.chain("nova-compute-inst-50") == []
    fake.run("-F nova-compute-inst-9")
    mgr.ipv4["filter"].set_rules("inst-50", ["-j DROP"])
    assert mgr.check_and_repair() != []  # the tampering is still reported
    assert fake.chain("nova-compute-inst-50") == ["-j DROP"]
    assert len(fake.chain("nova-compute-inst-9") or []) == 6


def test_full_sync_survives_another_daemon_writing_in_between():
    """novanet-network and novanet-metadata start together and both create nova-filter-top."""
    from novanet.linux.fakes.iptables import FakeIptables
    from novanet.linux.iptables.manager import IptablesManager

    kernel = FakeIptables()
    other = IptablesManager("api", kernel)

    class Racing:
        """Lets the other daemon sync right after our first read of each table."""

        def __init__(self) -> None:
            self.raced: set[str] = set()

        def save(self, table: str) -> str:
            text = kernel.save(table)
            if table not in self.raced:
                self.raced.add(table)
                other.full_sync()
            return text

        def __getattr__(self, name: str):
            return getattr(kernel, name)

    ours = IptablesManager("network", Racing())
    ours.ipv4["filter"].add_rule("INPUT", "-i br100 -p udp -m udp --dport 67 -j ACCEPT")
    ours.full_sync()
    listing = kernel.listing("filter")
    assert listing.count("-N nova-filter-top") == 1
    assert "-A nova-filter-top -j nova-network-local" in listing
    assert "-A nova-filter-top -j nova-api-local" in listing
    assert listing.index("-A FORWARD -j nova-network-FORWARD") < listing.index("-A FORWARD -j nova-api-FORWARD")
