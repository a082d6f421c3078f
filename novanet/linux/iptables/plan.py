"""What to write for one table, planned by pure functions: ``(desired, view) -> (plan, view)``.

A :class:`Plan` is either restore text for ``iptables-restore --noflush`` or,
when the change only deletes and the view knows the nf_tables handles of
the rules concerned, a :class:`HandleBatch` (one nf_tables transaction sent
over netlink, see nftnl.py). Each planner also returns the view to adopt
once the kernel accepted the plan. Two planners:

- :func:`plan_changes` (here; the change path, no read): owned chains that
  changed, from the view to the desired content. Adding an instance is a
  new chain plus one ``-A nova-compute-local``; removing one is, by handle,
  a flush, one rule deletion and a chain deletion, whatever the number of
  instances (by rule text, iptables-nft would first load and compare every
  rule of nova-compute-local);
- :func:`novanet.linux.iptables.sync.plan_sync` (start, repair): from a
  fresh ``iptables-save`` dump.

Quirks this relies on (iptables 1.8.9, nft and legacy alike):

- under ``--noflush``, declaring ``:chain - [0:0]`` creates a chain or
  flushes an existing one; ``-N`` fails if the chain exists (used for the
  shared chains, which must never be flushed: other daemons' rules live there);
- one restore is one transaction per table (nft: one batch; legacy: one
  table replace), so a chain flushed and refilled in one restore is never
  seen empty, and ``-X`` of a chain works once its last reference was deleted
  earlier in the same restore (likewise within one nf_tables batch);
- ``-D CHAIN RULE`` deletes the first identical rule: used for rules that
  are unique in their chain, so a concurrent edit elsewhere in the chain does
  not make us delete the wrong rule; ``-D CHAIN N`` otherwise;
- a rule handle names one rule of one chain for the life of the table and
  is never reused; the handles of a view are used only in a batch that
  carries the generation id they were valid at, which nf_tables refuses
  (ERESTART) if anybody committed since.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from itertools import compress, count
from operator import ne

from novanet.linux.iptables.names import Naming, jump_target
from novanet.linux.iptables.view import Changes, KernelView, copy

# Chains up to this size are rewritten rather than edited in place: a few
# -A lines cost less than the rule cache iptables-nft loads for -D/-I.
SMALL_CHAIN = 32
# At most this many deletions by handle in one batch: nf_tables acknowledges
# each, and a few hundred acknowledgements fill a netlink socket's default
# receive buffer (a bigger removal, e.g. a resync, goes by iptables-restore).
MAX_BATCH = 200

Appends = dict[str, tuple[tuple[int, ...], tuple[str, ...]]]


@dataclass(frozen=True)
class HandleBatch:
    """Deletions by nf_tables handle, applied in this order in one transaction."""

    flush: tuple[str, ...] = ()  # chains emptied
    rules: tuple[tuple[str, int], ...] = ()  # (chain, handle) of single rules
    delete: tuple[str, ...] = ()  # chains deleted (their references went first)

    def __len__(self) -> int:
        return len(self.flush) + len(self.rules) + len(self.delete)

    def describe(self, table: str) -> list[str]:
        """The batch in nft's syntax, for logs and errors."""
        return (
            [f"flush chain ip {table} {chain}" for chain in self.flush]
            + [f"delete rule ip {table} {chain} handle {handle}" for chain, handle in self.rules]
            + [f"delete chain ip {table} {chain}" for chain in self.delete]
        )


@dataclass
class Plan:
    """Restore lines for one table, grouped so the order is always valid, or a HandleBatch."""

    table: str
    create_shared: list[str] = field(default_factory=list)  # -N (never flush shared)
    declare: list[str] = field(default_factory=list)  # :chain (new, rewritten, dying)
    shared_ops: list[str] = field(default_factory=list)  # -D/-I in shared chains
    rule_ops: list[str] = field(default_factory=list)  # -A/-I/-D in owned chains
    # Owned chains written whole (declared above): their rules, rendered as -A
    # lines only by render() (35,000 such lines at 5,000 instances: 4 MB that
    # need not exist next to the text and its encoding).
    rewrites: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # -X, after the references went
    report: list[str] = field(default_factory=list)  # what and why, for the logs
    written: list[str] = field(default_factory=list)  # owned chains (re)written
    # chain -> (its handles before, rules the restore appends): what to learn
    # from the handles nf_tables reports for the restore (view.learn_handles).
    appends: Appends = field(default_factory=dict)
    by_handle: HandleBatch | None = None
    # Chains whose handles, if known, would turn this plan into a HandleBatch.
    wants_handles: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return self.by_handle is None and not (
            self.create_shared
            or self.declare
            or self.shared_ops
            or self.rule_ops
            or self.rewrites
            or self.delete
        )

    def render(self) -> str:
        return "\n".join(self._lines())

    def _lines(self) -> Iterator[str]:
        yield f"*{self.table}"
        yield from (f"-N {chain}" for chain in self.create_shared)
        yield from (f":{chain} - [0:0]" for chain in self.declare)
        yield from self.shared_ops
        for chain, rules in self.rewrites:
            yield from (rule_line("-A", chain, rule) for rule in rules)
        yield from self.rule_ops
        yield from (f"-X {chain}" for chain in self.delete)
        yield "COMMIT"
        yield ""  # the text ends with a newline


def rule_line(op: str, chain: str, rule: str) -> str:
    return f"{op} {chain} {rule}" if rule else f"{op} {chain}"


_CHUNK = 256


def common_head(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Length of the common prefix.

    Compared chunk by chunk with C-level tuple comparisons (equal rules are
    mostly the same objects), then rule by rule inside the first chunk that
    differs: about 20 us for 5,000 rules, where a Python loop takes 300.
    """
    n = min(len(a), len(b))
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        if a[start:stop] != b[start:stop]:
            return next(compress(count(start), map(ne, a[start:stop], b[start:stop])), stop)
    return n


def common_tail(a: tuple[str, ...], b: tuple[str, ...], limit: int) -> int:
    """Length of the common suffix, at most ``limit``."""
    n = min(len(a), len(b), limit)
    return common_head(a[len(a) - n :][::-1], b[len(b) - n :][::-1])


def deleted_indexes(old: tuple[str, ...], new: tuple[str, ...]) -> list[int] | None:
    """Positions in ``old`` whose deletion leaves ``new``, or None if rules were added."""
    if len(new) >= len(old):
        return None
    head = common_head(old, new)
    if len(new) + 1 == len(old):  # one rule gone: an instance removed
        return [head] if old[head + 1 :] == new[head:] else None
    tail = common_tail(old, new, len(new) - head)
    middle_new = new[head : len(new) - tail]
    gone: list[int] = []
    matched = 0
    for index in range(head, len(old) - tail):
        if matched < len(middle_new) and old[index] == middle_new[matched]:
            matched += 1
        else:
            gone.append(index)
    return gone if matched == len(middle_new) else None


def diff_ops(chain: str, old: tuple[str, ...], new: tuple[str, ...]) -> list[str] | None:
    """Edit lines turning ``old`` into ``new``, or None when a rewrite is better.

    A pure append needs no rule cache at all (``-A``). Otherwise only what
    differs is touched: deletions anywhere plus appended rules (instances
    gone, others added), or else the differing middle between the common
    head and tail.
    """
    if len(new) >= len(old) and new[: len(old)] == old:
        return [rule_line("-A", chain, rule) for rule in new[len(old) :]]
    if len(new) <= SMALL_CHAIN:
        return None
    present = set(old)
    kept = len(new)
    while kept > 0 and new[kept - 1] not in present:
        kept -= 1
    gone = deleted_indexes(old, new[:kept])
    if gone is not None and len(gone) + len(new) - kept <= len(new) // 2:
        # Backwards, so that a position is still exact when a duplicate
        # forces deleting by number; unique rules go by content.
        ops = [_delete(chain, old, index) for index in reversed(gone)]
        return ops + [rule_line("-A", chain, rule) for rule in new[kept:]]
    head = common_head(old, new)
    tail = common_tail(old, new, min(len(old), len(new)) - head)
    removed = old[head : len(old) - tail]
    added = new[head : len(new) - tail]
    if len(removed) + len(added) > len(new) // 2:
        return None
    ops = [_delete(chain, old, index) for index in range(len(old) - tail - 1, head - 1, -1)]
    for offset, rule in enumerate(added):
        if tail == 0:
            ops.append(rule_line("-A", chain, rule))
        else:
            ops.append(f"-I {chain} {head + 1 + offset} {rule}".rstrip())
    return ops


def _delete(chain: str, old: tuple[str, ...], index: int) -> str:
    rule = old[index]
    if old.count(rule) == 1:
        return rule_line("-D", chain, rule)
    return f"-D {chain} {index + 1}"


def write_chain(
    plan: Plan,
    chain: str,
    old: tuple[str, ...] | None,
    new: tuple[str, ...],
    handles: tuple[int, ...] | None,
) -> str:
    """Add the lines that make ``chain`` hold ``new``; returns a short description.

    ``handles``: the chain's known handles (aligned with ``old``); recorded in
    ``plan.appends`` when the restore only appends, so they stay known.
    """
    ops = None if old is None else diff_ops(chain, old, new)
    plan.written.append(chain)
    if ops is None:
        plan.declare.append(chain)
        plan.rewrites.append((chain, new))
        plan.appends[chain] = ((), new)
        if old is None:
            return f"created chain {chain} ({len(new)} rules)"
        return f"rewrote chain {chain} ({len(old)} rules in the kernel, {len(new)} wanted)"
    plan.rule_ops += ops
    if old is not None and new[: len(old)] == old:
        if not old:
            plan.appends[chain] = ((), new)
        elif handles is not None and len(handles) == len(old):
            plan.appends[chain] = (handles, new[len(old) :])
    return f"edited chain {chain} ({len(ops)} rule changes)"


def check_targets(plan: Plan, chains: Collection[str], naming: Naming) -> None:
    """Refuse, before touching the kernel, jumps to chains of ours the model does not define.

    Only the rules this plan writes are looked at: adding one instance
    must not scan the 5,000 rules of nova-compute-local.
    """
    edits = ((line, None) for line in itertools.chain(plan.rule_ops, plan.shared_ops))
    written = ((rule, chain) for chain, rules in plan.rewrites for rule in rules)
    for text, chain in itertools.chain(edits, written):
        if text.startswith("-D "):
            continue
        target = jump_target(text)
        if target is not None and naming.owns(target) and target not in chains:
            line = text if chain is None else rule_line("-A", chain, text)
            raise ValueError(
                f"iptables {plan.table}: rule {line!r} jumps to {target}, "
                "which this manager does not define (add_chain it first)"
            )


def plan_changes(changes: Changes, view: KernelView, naming: Naming) -> tuple[Plan, KernelView]:
    """The change path: owned chains in ``changes``, from ``view`` to their desired content.

    Trusts the view (the caller checked the change probe). Deletions whose
    handles the view knows become a HandleBatch when nothing else changes.
    """
    edits: list[tuple[str, tuple[str, ...] | None, tuple[str, ...] | None]] = []
    for chain in sorted(changes.chains):
        wanted = changes.chains[chain]
        new = None if wanted is None else view.spell(wanted)
        old = view.chains.get(chain)
        if old != new:
            edits.append((chain, old, new))
    chains = copy(view.chains)
    for chain, _, new in edits:
        if new is None:
            chains.pop(chain, None)
        else:
            chains[chain] = new
    batch, handles, wants = _by_handle(edits, view)
    if batch is not None:
        plan = Plan(changes.table, by_handle=batch)
        for chain, _, new in edits:
            plan.report.append(
                f"deleted chain {chain}" if new is None else f"edited chain {chain} (by handle)"
            )
        return plan, view.replace(chains=chains, handles=handles)
    plan = Plan(changes.table, wants_handles=wants)
    for chain, old, new in edits:
        if new is None:
            plan.declare.append(chain)
            plan.delete.append(chain)
            plan.report.append(f"deleted chain {chain}")
        else:
            plan.report.append(write_chain(plan, chain, old, new, view.handles.get(chain)))
    check_targets(plan, chains, naming)
    kept = copy(view.handles)  # C-level copy: 5,000 chains may have handles
    for chain, _, _ in edits:
        kept.pop(chain, None)
    return plan, view.replace(chains=chains, handles=kept)


def _by_handle(
    edits: list[tuple[str, tuple[str, ...] | None, tuple[str, ...] | None]], view: KernelView
) -> tuple[HandleBatch | None, dict[str, tuple[int, ...]], list[str]]:
    """The edits as deletions by handle if they only delete; else the chains lacking handles."""
    flush: list[str] = []
    gone_by_chain: dict[str, list[int]] = {}
    wants: list[str] = []
    for chain, old, new in edits:
        if old is None:
            return None, {}, []
        if new is None:
            flush.append(chain)
            continue
        gone = deleted_indexes(old, new)
        if gone is None:
            return None, {}, []
        known = view.handles.get(chain)
        if known is None or len(known) != len(old):
            wants.append(chain)
        else:
            gone_by_chain[chain] = gone
    if wants or not edits or len(flush) * 2 + sum(map(len, gone_by_chain.values())) > MAX_BATCH:
        return None, {}, wants
    handles = copy(view.handles)
    rules: list[tuple[str, int]] = []
    for chain, gone in gone_by_chain.items():
        known = handles[chain]
        rules += [(chain, known[index]) for index in gone]
        if len(gone) == 1:  # one instance removed: two C-level slices
            handles[chain] = known[: gone[0]] + known[gone[0] + 1 :]
            continue
        ends = zip([-1, *gone], [*gone, len(known)], strict=True)
        pieces = [known[start + 1 : end] for start, end in ends]
        handles[chain] = tuple(itertools.chain.from_iterable(pieces))
    for chain in flush:
        handles.pop(chain, None)
    return HandleBatch(tuple(flush), tuple(rules), tuple(flush)), handles, []
