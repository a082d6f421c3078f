"""What the manager knows about the kernel: one immutable :class:`KernelView` per table.

The manager owns these values alone and replaces a table's view only after
the kernel accepted the change it was planned for (the planners return the
view to adopt together with the plan). Nothing here does I/O: the functions
below turn a view plus what was observed (a dump, rule handles reported by
nf_tables) into the next view, so they are unit-tested without a kernel.

A view holds:

- ``chains``: our owned chains as the kernel holds them, in the kernel's
  spelling of each rule; ``shared``: our rules in shared chains as we last
  placed them (so a rule we dropped from the model is recognised as ours);
- ``synced`` and ``token``: False after a failed or refused write (read the
  table before writing again); the change-probe token at which the kernel
  was known to match (None: no probe, or not settled yet);
- ``verified``: rule texts a dump showed exactly as we write them, limited
  to texts in the model (so a rewrite of such rules needs no read-back);
- ``spellings``: our text -> the kernel's, for rules iptables prints in a
  way normalise.py does not predict, limited to rules in the model;
- ``handles``: nf_tables rule handles of owned chains, aligned with
  ``chains``, valid at ``token`` only (nft backend; see nftnl.py);
- ``unread_checks``: checks that trusted an inexact probe since the last read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from novanet.linux.iptables.names import is_target_extension, jump_target

Chains = Mapping[str, tuple[str, ...]]
V = TypeVar("V")


class RuleHandle(NamedTuple):
    """One nf_tables rule as the kernel reported it (a dump or an add)."""

    chain: str
    handle: int
    target: str | None  # the chain it jumps/goes to; None for verdicts and targets


@dataclass(frozen=True)
class Desired:
    """A plain copy of one table's desired state, rules in our (normalised) spelling."""

    table: str
    chains: Chains  # owned chains
    shared: Chains  # our rules in shared chains


@dataclass(frozen=True)
class Changes:
    """Owned chains changed since the last apply (None: removed); did shared rules change?"""

    table: str
    chains: Mapping[str, tuple[str, ...] | None]
    shared: bool

    def __bool__(self) -> bool:
        return bool(self.chains) or self.shared


@dataclass(frozen=True)
class KernelView:
    """One table as the manager last knew it in the kernel (see the module docstring).

    Never mutate the mappings of a view: every change builds a new one.
    """

    chains: Chains = field(default_factory=dict)
    shared: Chains = field(default_factory=dict)
    synced: bool = False
    token: Hashable | None = None
    verified: frozenset[str] = frozenset()
    spellings: Mapping[str, str] = field(default_factory=dict)
    handles: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    unread_checks: int = 0

    def current(self, token: Hashable | None) -> bool:
        """May a change be planned from memory, the probe now saying ``token``?

        Without a probe (None) memory is trusted unless a write failed; with
        one, only at the token the kernel was known to match.
        """
        return self.synced and (token is None or token == self.token)

    def spell(self, rules: Iterable[str]) -> tuple[str, ...]:
        """``rules`` in the kernel's spelling (the learned spellings applied)."""
        if not self.spellings:
            return tuple(rules)
        return tuple(self.spellings.get(rule, rule) for rule in rules)

    def replace(self, **changes: object) -> KernelView:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def copy(mapping: Mapping[str, V]) -> dict[str, V]:
    """A new dict of ``mapping``, at C speed even after deletions.

    ``dict(d)`` clones a dict's key table only when nothing was ever deleted
    from it; ``d.copy()`` also when a few entries were: 20 us instead of 200
    for the 5,000 chains of a view after one instance was removed.
    """
    return mapping.copy() if type(mapping) is dict else dict(mapping)


def settle(view: KernelView, token: Hashable | None) -> KernelView:
    """The view once our writes are known to be the only ones up to ``token``."""
    if view.token == token:
        return view
    return view.replace(token=token)


def forget_handles(view: KernelView) -> KernelView:
    """After a write we did not make: a deleted and re-added rule has a new handle."""
    return view.replace(handles={}) if view.handles else view


def prune(
    desired_texts: Collection[str], verified: Iterable[str], spellings: Mapping[str, str]
) -> tuple[frozenset[str], dict[str, str]]:
    """Keep verified texts and learned spellings only for rules still in the model."""
    kept_spellings = {mine: theirs for mine, theirs in spellings.items() if mine in desired_texts}
    kernel_texts = set(desired_texts) | set(kept_spellings.values())
    return frozenset(t for t in verified if t in kernel_texts), kept_spellings


def learn_spellings(
    desired: Desired, view: KernelView, dump: Mapping[str, Sequence[str]]
) -> tuple[KernelView, list[str]]:
    """Adopt the kernel's text for rules our normaliser spelled differently.

    ``dump`` is read right after our own restore, with nobody else writing
    in between (the caller checks the token), so a rule that differs at the
    same position of a chain of the same length can only be iptables' own
    spelling of it. Returns the new view and one line per learned spelling.
    """
    chains = copy(view.chains)
    spellings = copy(view.spellings)
    verified = set(view.verified)
    learned: list[str] = []
    for chain, ours in desired.chains.items():
        mine = chains.get(chain)
        kernel = dump.get(chain)
        if mine is None or kernel is None or len(kernel) != len(mine):
            continue
        if tuple(kernel) != mine:
            for text, written, printed in zip(ours, mine, kernel, strict=True):
                if written != printed:
                    spellings[text] = printed
                    learned.append(f"iptables prints rule {text!r} of {chain} as {printed!r}")
            chains[chain] = tuple(kernel)
        verified.update(kernel)
    return view.replace(chains=chains, spellings=spellings, verified=frozenset(verified)), learned


def learn_handles(
    view: KernelView,
    appends: Mapping[str, tuple[tuple[int, ...], tuple[str, ...]]],
    added: Sequence[RuleHandle] | None,
) -> KernelView:
    """Record the handles nf_tables gave the rules a restore appended.

    ``appends``: chain -> (handles it had before, rules appended), from the
    plan; ``added``: what the kernel reported for that restore, in order
    (None: not observed, e.g. the legacy backend). A chain whose report does
    not match the plan exactly (count, jump targets) keeps no handles.
    """
    if not appends:
        return view
    handles = copy(view.handles)
    by_chain: dict[str, list[RuleHandle]] = {}
    for rule in added or ():
        by_chain.setdefault(rule.chain, []).append(rule)
    for chain, (before, rules) in appends.items():
        reported = by_chain.get(chain, [])
        if (
            added is not None
            and _matches(reported, rules)
            and len(view.chains.get(chain, ())) == (len(before) + len(rules))
        ):
            handles[chain] = before + tuple(rule.handle for rule in reported)
        else:
            handles.pop(chain, None)
    return view.replace(handles=handles)


def adopt_handles(view: KernelView, chain: str, dumped: Sequence[RuleHandle]) -> KernelView:
    """Take the handles of ``chain`` from a dump made at the view's token.

    The dump must show the chain exactly as the view has it: same number of
    rules, same jump targets in the same places; otherwise nothing is taken.
    """
    rules = view.chains.get(chain)
    if rules is None or not _matches(dumped, rules):
        return view
    return view.replace(handles={**view.handles, chain: tuple(rule.handle for rule in dumped)})


def _matches(reported: Sequence[RuleHandle], rules: Sequence[str]) -> bool:
    if len(reported) != len(rules):
        return False
    for rule, text in zip(reported, rules, strict=True):
        # nf_tables reports a chain for -j/-g CHAIN only; ACCEPT, DROP and
        # extension targets (SNAT, LOG...) are verdicts or target expressions.
        target = jump_target(text)
        chain_like = target is not None and not is_target_extension(target)
        if rule.target != (target if chain_like else rule.target) or (
            rule.target is not None and rule.target != target
        ):
            return False
    return True
