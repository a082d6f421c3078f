"""The pure functions of the applier: (desired, view[, dump]) -> (plan, view), and learning."""

from __future__ import annotations

import pytest

from novanet.linux.iptables.names import Naming
from novanet.linux.iptables.parse import TableDump
from novanet.linux.iptables.plan import MAX_BATCH, HandleBatch, deleted_indexes, plan_changes
from novanet.linux.iptables.sync import plan_sync
from novanet.linux.iptables.view import (
    Changes,
    Desired,
    KernelView,
    RuleHandle,
    adopt_handles,
    learn_handles,
    learn_spellings,
)

NAMING = Naming("nova", "compute")
LOCAL = "nova-compute-local"


def inst(i: int) -> str:
    return f"nova-compute-inst-{i}"


def jump(i: int) -> str:
    return f"-d 10.0.{i // 250}.{i % 250 + 2}/32 -j {inst(i)}"


def compute_view(n: int, handles: bool = True) -> KernelView:
    """A view of a host with n instances; handle of rule k of chain c: 1000*c + k."""
    chains = {LOCAL: tuple(jump(i) for i in range(n))}
    chains.update({inst(i): ("-j DROP",) for i in range(n)})
    known = {
        chain: tuple(1000 * c + k for k in range(len(rules)))
        for c, (chain, rules) in enumerate(chains.items())
    }
    return KernelView(chains=chains, synced=True, token=7, handles=known if handles else {})


def changes(chains: dict[str, tuple[str, ...] | None], shared: bool = False) -> Changes:
    return Changes("filter", chains, shared)


# -- the change path ------------------------------------------------------------------


def test_removing_an_instance_with_known_handles_is_a_handle_batch() -> None:
    view = compute_view(100)
    local = view.chains[LOCAL]
    plan, new = plan_changes(
        changes({LOCAL: local[:50] + local[51:], inst(50): None}), view, NAMING
    )
    assert plan.by_handle == HandleBatch(
        flush=(inst(50),), rules=((LOCAL, view.handles[LOCAL][50]),), delete=(inst(50),)
    )
    assert plan.render() == "*filter\nCOMMIT\n"  # nothing for iptables-restore
    assert inst(50) not in new.chains and inst(50) not in new.handles
    assert new.chains[LOCAL] == local[:50] + local[51:]
    assert new.handles[LOCAL] == view.handles[LOCAL][:50] + view.handles[LOCAL][51:]
    assert view.chains[LOCAL] == local  # the old view is a value: unchanged


def test_several_deletions_anywhere_in_a_chain_are_one_batch() -> None:
    view = compute_view(100)
    local = view.chains[LOCAL]
    wanted = tuple(rule for k, rule in enumerate(local) if k not in (3, 60, 99))
    plan, new = plan_changes(changes({LOCAL: wanted}), view, NAMING)
    assert plan.by_handle is not None
    assert [h for _, h in plan.by_handle.rules] == [view.handles[LOCAL][k] for k in (3, 60, 99)]
    assert len(new.handles[LOCAL]) == 97


def test_a_big_deletion_is_restore_text() -> None:
    view = compute_view(300)
    plan, _ = plan_changes(changes({inst(i): None for i in range(MAX_BATCH)}), view, NAMING)
    assert plan.by_handle is None and len(plan.delete) == MAX_BATCH


def test_without_handles_a_removal_is_restore_text_and_asks_for_them() -> None:
    view = compute_view(100, handles=False)
    local = view.chains[LOCAL]
    plan, new = plan_changes(
        changes({LOCAL: local[:50] + local[51:], inst(50): None}), view, NAMING
    )
    assert plan.by_handle is None
    assert plan.wants_handles == [LOCAL]
    assert plan.render().splitlines() == [
        "*filter",
        f":{inst(50)} - [0:0]",
        f"-D {LOCAL} {jump(50)}",
        f"-X {inst(50)}",
        "COMMIT",
    ]
    assert LOCAL not in new.handles


def test_an_addition_is_appends_and_records_what_to_learn() -> None:
    view = compute_view(100)
    local = view.chains[LOCAL]
    plan, new = plan_changes(
        changes({inst(100): ("-j DROP",), LOCAL: local + (jump(100),)}), view, NAMING
    )
    assert plan.by_handle is None and plan.wants_handles == []
    assert plan.render().splitlines() == [
        "*filter",
        f":{inst(100)} - [0:0]",
        f"-A {inst(100)} -j DROP",
        f"-A {LOCAL} {jump(100)}",
        "COMMIT",
    ]
    assert plan.appends == {
        inst(100): ((), ("-j DROP",)),
        LOCAL: (view.handles[LOCAL], (jump(100),)),
    }
    # Until the kernel says which handles it gave, the touched chains have none.
    assert LOCAL not in new.handles and inst(100) not in new.handles
    learned = learn_handles(
        new,
        plan.appends,
        [RuleHandle(inst(100), 90, None), RuleHandle(LOCAL, 91, inst(100))],
    )
    assert learned.handles[LOCAL] == view.handles[LOCAL] + (91,)
    assert learned.handles[inst(100)] == (90,)


def test_a_mixed_change_is_one_restore_editing_only_what_changed() -> None:
    view = compute_view(100)
    local = view.chains[LOCAL]
    wanted = local[1:40] + local[41:] + (jump(100),)
    plan, _ = plan_changes(changes({LOCAL: wanted, inst(100): (), inst(0): None}), view, NAMING)
    assert plan.by_handle is None and plan.wants_handles == []
    assert [op for op in plan.rule_ops if LOCAL in op.split()[1]] == [
        f"-D {LOCAL} {jump(40)}",
        f"-D {LOCAL} {jump(0)}",
        f"-A {LOCAL} {jump(100)}",
    ]


def test_learned_spellings_are_what_gets_written() -> None:
    view = KernelView(
        chains={"nova-compute-x": ()}, synced=True, spellings={"-m foo --bar 1": "-m foo --bar 0x1"}
    )
    plan, new = plan_changes(changes({"nova-compute-x": ("-m foo --bar 1",)}), view, NAMING)
    assert plan.rule_ops == ["-A nova-compute-x -m foo --bar 0x1"]
    assert new.chains["nova-compute-x"] == ("-m foo --bar 0x1",)


def test_a_jump_to_an_undeclared_chain_of_ours_is_refused() -> None:
    view = compute_view(3)
    with pytest.raises(ValueError, match="nova-compute-inst-77"):
        plan_changes(
            changes({LOCAL: view.chains[LOCAL] + ("-j nova-compute-inst-77",)}), view, NAMING
        )


@pytest.mark.parametrize(
    ("old", "new", "gone"),
    [
        ("abcde", "abde", [2]),
        ("abcde", "bcd", [0, 4]),
        ("abcbd", "abd", [2, 3]),  # duplicates: the first fit
        ("abcde", "abxde", None),
        ("abc", "abc", None),
        ("aaaa", "aa", [2, 3]),
    ],
)
def test_deleted_indexes(old: str, new: str, gone: list[int] | None) -> None:
    assert deleted_indexes(tuple(old), tuple(new)) == gone


# -- the sync path ------------------------------------------------------------------


def dump_of(chains: dict[str, tuple[str, ...]]) -> TableDump:
    dump = TableDump("filter", {c: [] for c in ("INPUT", "FORWARD", "OUTPUT")})
    dump.chains.update({chain: list(rules) for chain, rules in chains.items()})
    return dump


def desired_of(chains: dict[str, tuple[str, ...]]) -> Desired:
    return Desired("filter", chains, {"INPUT": (), "FORWARD": (), "OUTPUT": ()})


def test_sync_of_a_matching_kernel_writes_nothing_and_verifies() -> None:
    wanted = {LOCAL: (jump(1),), inst(1): ("-j DROP",)}
    plan, view = plan_sync(desired_of(wanted), KernelView(), dump_of(wanted), NAMING, True)
    assert plan.empty()
    assert view.synced and view.token is None  # the manager settles the token
    assert view.chains == wanted
    assert view.verified == {jump(1), "-j DROP"}


def test_sync_rewrites_tampered_chains_and_keeps_only_valid_handles() -> None:
    wanted = {LOCAL: (jump(1), jump(2)), inst(1): ("-j DROP",), inst(2): ("-j DROP",)}
    known = KernelView(
        chains=wanted, synced=True, handles={LOCAL: (5, 6), inst(1): (3,), inst(2): (4,)}
    )
    kernel = {**wanted, inst(2): ()}
    plan, view = plan_sync(desired_of(wanted), known, dump_of(kernel), NAMING, True)
    assert plan.written == [inst(2)]
    assert view.handles == {LOCAL: (5, 6), inst(1): (3,)}
    assert plan.appends == {inst(2): ((), ("-j DROP",))}


def test_sync_deletes_stale_chains_only_once_the_model_is_complete() -> None:
    wanted = {LOCAL: ()}
    kernel = {LOCAL: (), inst(7): ()}
    plan, _ = plan_sync(desired_of(wanted), KernelView(), dump_of(kernel), NAMING, False)
    assert plan.delete == []
    plan, _ = plan_sync(desired_of(wanted), KernelView(), dump_of(kernel), NAMING, True)
    assert plan.delete == [inst(7)]


def test_verified_texts_and_spellings_are_bounded_by_the_model() -> None:
    old = KernelView(
        verified=frozenset({jump(1), jump(2), "-j DROP"}),
        spellings={"-m foo --bar 1": "-m foo --bar 0x1", "-m gone": "-m gone --x"},
    )
    wanted = {LOCAL: (jump(2),), "nova-compute-x": ("-m foo --bar 1",)}
    kernel = {LOCAL: (jump(2),), "nova-compute-x": ("-m foo --bar 0x1",)}
    _, view = plan_sync(desired_of(wanted), old, dump_of(kernel), NAMING, True)
    assert view.spellings == {"-m foo --bar 1": "-m foo --bar 0x1"}
    assert view.verified == {jump(2), "-m foo --bar 0x1"}


# -- learning ------------------------------------------------------------------


def test_spellings_are_learned_position_by_position() -> None:
    desired = desired_of({"nova-compute-x": ("-j ACCEPT", "-m foo --bar 1")})
    view = KernelView(chains={"nova-compute-x": ("-j ACCEPT", "-m foo --bar 1")}, synced=True)
    new, learned = learn_spellings(
        desired, view, {"nova-compute-x": ["-j ACCEPT", "-m foo --bar 0x1"]}
    )
    assert new.spellings == {"-m foo --bar 1": "-m foo --bar 0x1"}
    assert new.chains["nova-compute-x"] == ("-j ACCEPT", "-m foo --bar 0x1")
    assert len(learned) == 1
    # A chain of another length is drift, not spelling: nothing learned.
    other, learned = learn_spellings(desired, view, {"nova-compute-x": ["-m foo --bar 0x1"]})
    assert other.spellings == {} and learned == []


def test_handles_reported_for_other_rules_are_not_taken() -> None:
    view = KernelView(chains={LOCAL: (jump(1), jump(2))}, synced=True, handles={})
    appends = {LOCAL: ((10,), (jump(2),))}
    wrong_target = [RuleHandle(LOCAL, 11, inst(3))]
    assert LOCAL not in learn_handles(view, appends, wrong_target).handles
    too_many = [RuleHandle(LOCAL, 11, inst(2)), RuleHandle(LOCAL, 12, inst(2))]
    assert LOCAL not in learn_handles(view, appends, too_many).handles
    assert LOCAL not in learn_handles(view, appends, None).handles
    right = [RuleHandle(LOCAL, 11, inst(2))]
    assert learn_handles(view, appends, right).handles[LOCAL] == (10, 11)


def test_dumped_handles_are_adopted_only_if_the_chain_matches() -> None:
    view = KernelView(chains={LOCAL: (jump(1), "-j ACCEPT")}, synced=True)
    dumped = [RuleHandle(LOCAL, 4, inst(1)), RuleHandle(LOCAL, 9, None)]
    assert adopt_handles(view, LOCAL, dumped).handles == {LOCAL: (4, 9)}
    assert adopt_handles(view, LOCAL, dumped[:1]).handles == {}
    assert adopt_handles(view, LOCAL, [dumped[1], dumped[0]]).handles == {}


def test_a_view_is_current_at_its_token_or_without_a_probe() -> None:
    view = KernelView(synced=True, token=5)
    assert view.current(5) and view.current(None) and not view.current(6)
    assert not view.replace(synced=False).current(5)
