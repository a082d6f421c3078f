"""Planning restore text: in-place edits, canonical order in shared chains."""

from __future__ import annotations

from novanet.linux.fakes.iptables import FakeIptables
from novanet.linux.iptables.names import Naming
from novanet.linux.iptables.parse import parse_save
from novanet.linux.iptables.plan import SMALL_CHAIN, Plan, diff_ops
from novanet.linux.iptables.sync import plan_sync
from novanet.linux.iptables.view import Desired, KernelView

NAMING = Naming("nova", "api")
BUILTINS = ("INPUT", "FORWARD", "OUTPUT")


def apply_to(lines: list[str], chain: str, ops: list[str]) -> list[str]:
    """Run edit lines through the fake and return the chain's rules."""
    fake = FakeIptables()
    fake.run(f"-N {chain}")
    for rule in lines:
        fake.run(f"-A {chain} {rule}")
    fake.restore("filter", "*filter\n" + "\n".join(ops) + "\nCOMMIT\n")
    return fake.chain(chain) or []


def rules(n: int) -> list[str]:
    return [f"-d 10.0.{i // 250}.{i % 250 + 1}/32 -j ACCEPT" for i in range(n)]


def test_append_is_plain_appends_even_for_small_chains() -> None:
    assert diff_ops("c", ["-j A"], ["-j A", "-j B"]) == ["-A c -j B"]


def test_small_chain_changes_are_rewrites() -> None:
    assert diff_ops("c", ["-j A", "-j B"], ["-j B"]) is None


def test_one_change_in_a_big_chain_is_one_line() -> None:
    old = rules(SMALL_CHAIN * 3)
    for new in (old[:10] + old[11:], old[:10] + ["-j DROP"] + old[10:], old[1:]):
        ops = diff_ops("c", old, new)
        assert ops is not None and len(ops) == 1
        assert apply_to(old, "c", ops) == new


def test_duplicates_are_deleted_by_position() -> None:
    old = rules(100)
    old[50] = old[51]
    new = old[:50] + old[51:]
    ops = diff_ops("c", old, new)
    assert ops is not None
    assert apply_to(old, "c", ops) == new


def test_deletions_anywhere_plus_appends_are_edits() -> None:
    old = rules(100)
    old[70] = old[71]  # a duplicate
    new = old[:5] + old[6:70] + old[71:] + ["-j DROP", "-j RETURN"]
    ops = diff_ops("c", tuple(old), tuple(new))
    assert ops is not None and len(ops) == 4
    assert apply_to(old, "c", ops) == new


def test_many_changes_become_a_rewrite() -> None:
    old = rules(100)
    assert diff_ops("c", old, old[::-1]) is None


def sync(kernel: dict[str, list[str]], shared: dict[str, list[str]]) -> list[str]:
    """The FORWARD chain after planning api's rules against ``kernel``."""
    fake = FakeIptables()
    for chain in kernel:
        if chain not in BUILTINS:
            fake.run(f"-N {chain}")
    for chain, content in kernel.items():
        for rule in content:
            fake.run(f"-A {chain} {rule}")
    plan, _ = sync_plan(fake, shared, NAMING)
    if not plan.empty():
        fake.restore("filter", plan.render())
    return fake.chain("FORWARD") or []


def sync_plan(
    fake: FakeIptables, shared: dict[str, list[str]], naming: Naming
) -> tuple[Plan, KernelView]:
    # The binary's own chains the shared rules jump to (empty in the kernel too).
    owned = {
        target: ()
        for rules in shared.values()
        for rule in rules
        if (target := rule.split()[-1]) and naming.owns(target)
    }
    desired = Desired("filter", owned, {chain: tuple(rules) for chain, rules in shared.items()})
    dump = parse_save(fake.save("filter"), "filter")
    return plan_sync(desired, KernelView(), dump, naming, False)


def chains(*names: str) -> dict[str, list[str]]:
    return {name: [] for name in names}


def test_jumps_are_ranked_network_compute_api_others_and_before_foreign() -> None:
    kernel = chains(
        "nova-filter-top",
        "nova-zeta-FORWARD",
        "nova-beta-FORWARD",
        "nova-compute-FORWARD",
        "nova-network-FORWARD",
        "nova-api-FORWARD",
        "nova-postrouting-bottom",
        "docker",
    )
    kernel["FORWARD"] = [
        "-j docker",
        "-j nova-zeta-FORWARD",
        "-j nova-compute-FORWARD",
        "-j nova-beta-FORWARD",
        "-j nova-network-FORWARD",
        "-j nova-filter-top",
    ]
    kernel["FORWARD"] = sync(
        kernel, {"FORWARD": ["-j nova-api-FORWARD", "-j nova-postrouting-bottom"]}
    )
    assert kernel["FORWARD"] == [
        "-j nova-api-FORWARD",
        "-j nova-postrouting-bottom",
        "-j docker",
        "-j nova-zeta-FORWARD",
        "-j nova-compute-FORWARD",
        "-j nova-beta-FORWARD",
        "-j nova-network-FORWARD",
        "-j nova-filter-top",
    ]
    # Everyone repairing in turn ends in the canonical order.
    for binary in ("zeta", "compute", "beta", "network"):
        naming = Naming("nova", binary)
        fake = FakeIptables()
        for chain in kernel:
            if chain not in BUILTINS:
                fake.run(f"-N {chain}")
        for rule in kernel["FORWARD"]:
            fake.run(f"-A FORWARD {rule}")
        wanted = [f"-j nova-{binary}-FORWARD"]
        if binary == "network":
            wanted.append("-j nova-filter-top")
        plan, _ = sync_plan(fake, {"FORWARD": wanted}, naming)
        if not plan.empty():
            fake.restore("filter", plan.render())
        kernel["FORWARD"] = fake.chain("FORWARD") or []
    assert kernel["FORWARD"] == [
        "-j nova-filter-top",
        "-j nova-network-FORWARD",
        "-j nova-compute-FORWARD",
        "-j nova-api-FORWARD",
        "-j nova-beta-FORWARD",
        "-j nova-zeta-FORWARD",
        "-j nova-postrouting-bottom",
        "-j docker",
    ]


def test_only_misplaced_rules_of_ours_move() -> None:
    kernel = chains("nova-filter-top", "nova-network-FORWARD", "nova-api-FORWARD")
    kernel["FORWARD"] = ["-j nova-filter-top", "-j nova-network-FORWARD", "-j ACCEPT"]
    fake = FakeIptables()
    for chain in kernel:
        if chain not in BUILTINS:
            fake.run(f"-N {chain}")
    for rule in kernel["FORWARD"]:
        fake.run(f"-A FORWARD {rule}")
    plan, _ = sync_plan(fake, {"FORWARD": ["-j nova-filter-top", "-j nova-api-FORWARD"]}, NAMING)
    assert plan.shared_ops == ["-I FORWARD 3 -j nova-api-FORWARD"]


def test_render_orders_sections_so_every_line_is_valid() -> None:
    plan = Plan(
        "filter",
        create_shared=["s"],
        declare=["a"],
        shared_ops=["-I INPUT 1 -j a"],
        rule_ops=["-A a -j s"],
        delete=["old"],
    )
    assert plan.render().splitlines() == [
        "*filter",
        "-N s",
        ":a - [0:0]",
        "-I INPUT 1 -j a",
        "-A a -j s",
        "-X old",
        "COMMIT",
    ]
