"""Converge one table from an ``iptables-save`` dump: ``(desired, view, dump) -> (plan, view)``.

Used at start (full_sync), by the drift check, and whenever the change
probe says somebody else wrote. Rewrites or edits the owned chains that
differ, deletes stale chains of this binary (once the model is complete),
and places our rules in the shared chains at their canonical positions,
never moving or deleting anybody else's (see plan.py for the iptables
behaviours relied on).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from novanet.linux.iptables.names import BUILTIN_CHAINS, Naming, jump_target
from novanet.linux.iptables.parse import TableDump
from novanet.linux.iptables.plan import Plan, check_targets, rule_line, write_chain
from novanet.linux.iptables.view import Desired, KernelView, prune


def plan_sync(
    desired: Desired,
    view: KernelView,
    dump: TableDump,
    naming: Naming,
    remove_stale: bool,
) -> tuple[Plan, KernelView]:
    """From the kernel's state (``dump``) to ``desired``, touching only what differs.

    ``view`` supplies the learned spellings, the rules we placed in shared
    chains last time, and handles (the caller forgets them when somebody
    else wrote). The returned view is synced, its token not yet settled.
    """
    plan = Plan(desired.table)
    chains = {chain: view.spell(rules) for chain, rules in desired.chains.items()}
    shared = {chain: view.spell(rules) for chain, rules in desired.shared.items()}
    handles = {chain: h for chain, h in view.handles.items() if chain in chains}
    seen: set[str] = set()
    for chain in sorted(chains):
        kernel = dump.chains.get(chain)
        current = None if kernel is None else tuple(kernel)
        if current is not None:
            seen.update(current)
        if current != chains[chain]:
            known = handles.pop(chain, None)
            plan.report.append(write_chain(plan, chain, current, chains[chain], known))
    builtins = BUILTIN_CHAINS[desired.table]
    managed = set(builtins) | set(shared) | {naming.filter_top, naming.postrouting_bottom}
    if remove_stale:
        _plan_stale(plan, dump, chains, managed, naming)
    for chain in sorted(set(shared) | set(view.shared)):
        _plan_shared(
            plan,
            chain,
            dump.chains.get(chain),
            list(shared.get(chain, ())),
            list(view.shared.get(chain, ())),
            naming,
            chain in builtins,
            remove_stale,
        )
    if remove_stale:
        # Stale jumps of ours in managed shared chains we hold no rules in.
        for chain in sorted(managed - set(shared) - set(view.shared)):
            if chain in dump.chains:
                _plan_shared(plan, chain, dump.chains[chain], [], [], naming, True, True)
    check_targets(plan, chains, naming)
    texts = {rule for rules in desired.chains.values() for rule in rules}
    texts.update(rule for rules in desired.shared.values() for rule in rules)
    verified, spellings = prune(texts, view.verified | seen, view.spellings)
    new = KernelView(
        chains=chains,
        shared=shared,
        synced=True,
        verified=verified,
        spellings=spellings,
        handles=handles,
    )
    return plan, new


def _plan_stale(
    plan: Plan,
    dump: TableDump,
    model: Mapping[str, tuple[str, ...]],
    managed: Collection[str],
    naming: Naming,
) -> None:
    stale = {c for c in dump.chains if naming.owns(c) and c not in model}
    if not stale:
        return
    refs = dump.references()
    for chain in sorted(stale):
        blockers = [
            f"{ref} rule {index + 1}"
            for ref, index in refs.get(chain, ())
            if ref not in stale and ref not in model and ref not in managed
        ]
        if blockers:
            plan.report.append(
                f"kept stale chain {chain}: still referenced by {', '.join(blockers)}"
            )
            continue
        plan.declare.append(chain)
        plan.delete.append(chain)
        plan.report.append(f"deleted stale chain {chain}")


def _plan_shared(
    plan: Plan,
    chain: str,
    current: list[str] | None,
    desired: list[str],
    previous: list[str],
    naming: Naming,
    builtin: bool,
    remove_stale: bool,
) -> None:
    """Place our rules of a shared chain at their canonical positions.

    Rules of other daemons and foreign programs are never moved or deleted;
    ours go before every foreign rule, nova jumps in the order of
    Naming.order_key. Only our rules that are missing, duplicated, stale or
    out of place are deleted or inserted, in the same transaction.
    """
    if current is None:
        if not desired:
            return
        if not builtin:
            plan.create_shared.append(chain)
            plan.report.append(f"created shared chain {chain}")
        current = []
    wanted: list[str] = list(dict.fromkeys(desired))
    mine = set(wanted) | set(previous)

    def ours(rule: str) -> bool:
        if rule in mine:
            return True
        target = jump_target(rule)
        return remove_stale and target is not None and naming.owns(target)

    own = frozenset(wanted)
    target: list[str] = [rule for rule in current if not ours(rule)]
    keys = [naming.order_key(rule, own) for rule in target]
    floor = naming.floor(chain, target)  # other programs' rules kept above ours
    for rule in wanted:
        key = naming.order_key(rule, own)
        pos = next((i for i, k in enumerate(keys) if k > key and i >= floor), len(keys))
        target.insert(pos, rule)
        keys.insert(pos, key)
    if target == current:
        return
    keep_current, keep_target = _align(current, target, ours)
    deleted = 0
    for index in range(len(current) - 1, -1, -1):
        if index in keep_current:
            continue
        rule = current[index]
        # Backwards, so a position is still exact when a duplicate forces
        # deleting by number; unique rules go by content.
        if current.count(rule) == 1:
            plan.shared_ops.append(rule_line("-D", chain, rule))
        else:
            plan.shared_ops.append(f"-D {chain} {index + 1}")
        deleted += 1
    inserted = 0
    for index, rule in enumerate(target):
        if index not in keep_target:
            plan.shared_ops.append(f"-I {chain} {index + 1} {rule}".rstrip())
            inserted += 1
    plan.report.append(
        f"put our rules of {chain} in place ({deleted} deleted, {inserted} inserted)"
    )


def _align(
    current: list[str], target: list[str], ours: Callable[[str], bool]
) -> tuple[set[int], set[int]]:
    """Indexes of rules kept in place, in ``current`` and in ``target``.

    Foreign rules appear in both lists in the same order and are always
    kept; between two foreign rules, the longest common subsequence of our
    rules is kept, so only what is wrong gets deleted and re-inserted.
    """
    keep_current: set[int] = set()
    keep_target: set[int] = set()

    def segments(rules: list[str]) -> list[list[int]]:
        runs: list[list[int]] = [[]]
        for index, rule in enumerate(rules):
            if ours(rule):
                runs[-1].append(index)
            else:
                runs.append([index])  # the foreign rule opens the next run
        return runs

    for run_c, run_t in zip(segments(current), segments(target), strict=True):
        if run_c and run_t and not ours(current[run_c[0]]):
            keep_current.add(run_c[0])
            keep_target.add(run_t[0])
            run_c, run_t = run_c[1:], run_t[1:]
        for i, j in _lcs([current[i] for i in run_c], [target[j] for j in run_t]):
            keep_current.add(run_c[i])
            keep_target.add(run_t[j])
    return keep_current, keep_target


def _lcs(a: list[str], b: list[str]) -> list[tuple[int, int]]:
    """Index pairs of a longest common subsequence (the runs are short)."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            if a[i] == b[j]:
                table[i][j] = table[i + 1][j + 1] + 1
            else:
                table[i][j] = max(table[i + 1][j], table[i][j + 1])
    pairs = []
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs
