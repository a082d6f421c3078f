"""What to send to ``iptables-restore --noflush`` for one table (pure functions).

Two planners produce a :class:`Plan`:

- :func:`plan_changes` (the change path, no read): from what we applied last
  time to the model, for the owned chains that changed. Adding an instance
  is a new chain plus one ``-A nova-compute-local`` line: O(1) in the number
  of instances; removing one is a flush, a ``-D`` of its jump and a ``-X``.
- :func:`plan_sync` (start, repair): from a fresh ``iptables-save`` dump to
  the model: rewrites what differs, deletes stale chains of this binary,
  places our rules in the shared chains at their canonical positions.

Quirks this relies on (iptables 1.8.9, nft and legacy alike):

- under ``--noflush``, declaring ``:chain - [0:0]`` creates a chain or
  flushes an existing one; ``-N`` fails if the chain exists (used for the
  shared chains, which must never be flushed: other daemons' rules live there);
- one restore is one transaction per table (nft: one batch; legacy: one
  table replace), so a chain flushed and refilled in one restore is never
  seen empty, and ``-X`` of a chain works once its last reference was deleted
  earlier in the same restore;
- ``-D CHAIN RULE`` deletes the first identical rule: used for rules that
  are unique in their chain, so a concurrent edit elsewhere in the chain does
  not make us delete the wrong rule; ``-D CHAIN N`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from novanet.linux.iptables.names import Naming, jump_target
from novanet.linux.iptables.parse import TableDump

# Chains up to this size are rewritten rather than edited in place: a few
# -A lines cost less than the rule cache iptables-nft loads for -D/-I.
SMALL_CHAIN = 32


@dataclass
class Plan:
    """Restore lines for one table, grouped so the order is always valid."""

    table: str
    create_shared: list[str] = field(default_factory=list)  # -N (never flush shared)
    declare: list[str] = field(default_factory=list)  # :chain (new, rewritten, dying)
    shared_ops: list[str] = field(default_factory=list)  # -D/-I in shared chains
    rule_ops: list[str] = field(default_factory=list)  # -A/-I/-D in owned chains
    delete: list[str] = field(default_factory=list)  # -X, after the references went
    report: list[str] = field(default_factory=list)  # what and why, for the logs
    written: list[str] = field(default_factory=list)  # owned chains (re)written

    def empty(self) -> bool:
        return not (
            self.create_shared or self.declare or self.shared_ops or self.rule_ops or self.delete
        )

    def render(self) -> str:
        lines = [f"*{self.table}"]
        lines += [f"-N {chain}" for chain in self.create_shared]
        lines += [f":{chain} - [0:0]" for chain in self.declare]
        lines += self.shared_ops
        lines += self.rule_ops
        lines += [f"-X {chain}" for chain in self.delete]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


def _rule_line(op: str, chain: str, rule: str) -> str:
    return f"{op} {chain} {rule}" if rule else f"{op} {chain}"


def diff_ops(chain: str, old: list[str], new: list[str]) -> list[str] | None:
    """Edit lines turning ``old`` into ``new``, or None when a rewrite is better.

    Only the differing middle (after the common head and tail) is touched;
    a pure append needs no rule cache at all (``-A``).
    """
    if len(new) >= len(old) and new[: len(old)] == old:
        # The common case (a new instance's jump): one C-level comparison
        # instead of a Python loop over nova-compute-local.
        return [_rule_line("-A", chain, rule) for rule in new[len(old) :]]
    shortest = min(len(old), len(new))
    head = 0
    while head < shortest and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < shortest - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    removed = old[head : len(old) - tail]
    added = new[head : len(new) - tail]
    if not removed and not added:
        return []
    if not removed and tail == 0:
        return [_rule_line("-A", chain, rule) for rule in added]
    if len(new) <= SMALL_CHAIN or len(removed) + len(added) > len(new) // 2:
        return None
    ops = []
    for rule in removed:
        # Each deletion leaves the next rule of the middle at position head+1.
        if old.count(rule) == 1:
            ops.append(_rule_line("-D", chain, rule))
        else:
            ops.append(f"-D {chain} {head + 1}")
    for offset, rule in enumerate(added):
        if tail == 0:
            ops.append(_rule_line("-A", chain, rule))
        else:
            ops.append(f"-I {chain} {head + 1 + offset} {rule}".rstrip())
    return ops


def _write_chain(plan: Plan, chain: str, old: list[str] | None, new: list[str]) -> str:
    """Add the lines that make ``chain`` hold ``new``; returns a short description."""
    ops = None if old is None else diff_ops(chain, old, new)
    if ops is None:
        plan.declare.append(chain)
        plan.rule_ops += [_rule_line("-A", chain, rule) for rule in new]
        plan.written.append(chain)
        if old is None:
            return f"created chain {chain} ({len(new)} rules)"
        return f"rewrote chain {chain} ({len(old)} rules in the kernel, {len(new)} wanted)"
    plan.rule_ops += ops
    plan.written.append(chain)
    return f"edited chain {chain} ({len(ops)} rule changes)"


def plan_changes(
    table: str,
    model: Mapping[str, list[str]],
    applied: Mapping[str, list[str]],
    changed: Collection[str],
) -> Plan:
    """The change path: owned chains in ``changed``, from ``applied`` to ``model``."""
    plan = Plan(table)
    for chain in sorted(changed):
        new = model.get(chain)
        old = applied.get(chain)
        if new is None:
            if old is not None:
                plan.declare.append(chain)
                plan.delete.append(chain)
                plan.report.append(f"deleted chain {chain}")
            continue
        if old == new:
            continue
        plan.report.append(_write_chain(plan, chain, old, new))
    return plan


def plan_sync(
    dump: TableDump,
    model: Mapping[str, list[str]],
    shared: Mapping[str, list[str]],
    previous_shared: Mapping[str, list[str]],
    naming: Naming,
    builtins: Collection[str],
    remove_stale: bool,
) -> Plan:
    """From the kernel's state (``dump``) to the model, touching only what differs."""
    plan = Plan(dump.name)
    for chain in sorted(model):
        current = dump.chains.get(chain)
        if current != model[chain]:
            plan.report.append(_write_chain(plan, chain, current, model[chain]))
    managed = set(builtins) | set(shared) | {naming.filter_top, naming.postrouting_bottom}
    if remove_stale:
        _plan_stale(plan, dump, model, managed, naming)
    for chain in sorted(set(shared) | set(previous_shared)):
        _plan_shared(
            plan,
            chain,
            dump.chains.get(chain),
            shared.get(chain, []),
            previous_shared.get(chain, []),
            naming,
            chain in builtins,
            remove_stale,
        )
    if remove_stale:
        # Stale jumps of ours in managed shared chains we hold no rules in.
        for chain in sorted(managed - set(shared) - set(previous_shared)):
            if chain in dump.chains:
                _plan_shared(plan, chain, dump.chains[chain], [], [], naming, True, True)
    return plan


def _plan_stale(
    plan: Plan,
    dump: TableDump,
    model: Mapping[str, list[str]],
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
            plan.shared_ops.append(_rule_line("-D", chain, rule))
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
