"""The desired content of the chains one binary owns in one table (plain desired state).

Wrapped chains (``nova-compute-inst-9``) belong to this binary alone: the
manager may rewrite them whole. Built-in chains and unwrapped chains
(``nova-filter-top``) are shared: the table only lists *our* rules in them,
and the manager places those among everybody else's rules.

Rules are stored normalised (see normalise.py) after nova's ``$chain``
expansion, i.e. as ``iptables -S`` is predicted to print them. The table
knows nothing about the kernel: what was applied, and how iptables really
spells a rule, is the manager's (view.py). Callers of any thread may change
a table while the manager applies; the table guards itself with its own
lock and hands the manager plain copies (:meth:`snapshot`,
:meth:`take_changes`), never its live lists.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable

from novanet.linux.iptables.names import (
    BUILTIN_CHAINS,
    WRAPPED_BUILTINS,
    Naming,
    check_chain_name,
    is_target_extension,
    jump_target,
)
from novanet.linux.iptables.normalise import normalise_rule
from novanet.linux.iptables.view import Changes, Desired

LOG = logging.getLogger(__name__)
COUNTED = 16  # chains of more rules keep a Counter of them


class IptablesTable:
    """Desired content of one table (``filter``, ``nat``, ``mangle``, ``raw``) for one binary.

    Use it like nova's: ``table.add_chain('inst-9')``,
    ``table.add_rule('inst-9', '-j $provider')``, ``table.add_rule('INPUT', rule)``
    (the wrapped ``nova-<binary>-INPUT``), ``wrap=False`` for a built-in or
    unwrapped chain. Changes reach the kernel on ``manager.apply()``.
    """

    def __init__(self, name: str, naming: Naming) -> None:
        self.name = name
        self.builtins = BUILTIN_CHAINS[name]
        self._naming = naming
        self._lock = threading.Lock()
        self._chains: dict[str, list[str]] = {}
        self._shared: dict[str, list[str]] = {chain: [] for chain in self.builtins}
        self._top: Counter[str] = Counter()
        # chain -> rule text -> count, for chains of more than COUNTED rules:
        # duplicate checks without scanning (a short chain is scanned, at C
        # speed: 5,000 instance chains need no Counter each, 1.6 MB).
        self._counts: dict[str, Counter[str]] = {}
        # target chain -> (chain, text) of the rules jumping there, so that
        # removing one of 5,000 instance chains finds its jump without a scan.
        self._jumps: dict[str, Counter[tuple[str, str]]] = {}
        self._changed: set[str] = set()
        self._shared_changed = False

    # -- public API (nova's IptablesTable, plus set_rules) -------------------

    def add_chain(self, name: str, wrap: bool = True) -> None:
        """Declare a chain; wrapped: ``<prefix>-<binary>-<name>``. Idempotent."""
        with self._lock:
            full = self._full(name, wrap)
            if self._naming.owns(full):
                if full not in self._chains:
                    self._chains[full] = []
                    self._changed.add(full)
            elif full not in self._shared:
                self._shared[full] = []
                self._shared_changed = True

    def remove_chain(self, name: str, wrap: bool = True) -> None:
        """Forget a chain and every rule of ours that jumps to it (as nova did).

        A wrapped chain is deleted from the kernel on apply; a shared chain
        only loses our rules (other daemons may still use it).
        """
        with self._lock:
            full = self._full(name, wrap)
            if full in self._chains:
                for rule in self._chains.pop(full):
                    self._unindex(full, rule)
                self._top.pop(full, None)
                self._counts.pop(full, None)
                self._changed.add(full)
            elif full in self._shared and full not in self.builtins:
                for rule in self._shared[full]:
                    self._unindex(full, rule)
                self._shared[full] = []
                self._counts.pop(full, None)
                self._shared_changed = True
            else:
                LOG.warning("iptables %s: no chain %s to remove", self.name, full)
                return
            if is_target_extension(full):  # not indexed (see _index): scan
                jumps = Counter(
                    (chain, rule)
                    for chain, rules in (*self._chains.items(), *self._shared.items())
                    for rule in rules
                    if jump_target(rule) == full
                )
            else:
                jumps = self._jumps.get(full, Counter())
            for (chain, text), count in list(jumps.items()):
                for _ in range(count):
                    self._delete(chain, text)

    def has_chain(self, name: str, wrap: bool = True) -> bool:
        with self._lock:
            full = self._full(name, wrap)
            return full in self._chains or full in self._shared

    def add_rule(self, chain: str, rule: str, wrap: bool = True, top: bool = False) -> None:
        """Append ``rule`` to ``chain`` (``top``: before the non-top rules).

        ``$name`` in the rule means the wrapped chain ``<prefix>-<binary>-name``.
        A rule already in the chain is not added twice.
        """
        text = self.canonical(rule)
        with self._lock:
            full = self._full(chain, wrap)
            rules = self._rules_of(full)
            if self._has(full, rules, text):
                LOG.debug("iptables %s: %s already has %s", self.name, full, text)
                return
            if top:
                rules.insert(self._top[full], text)
                self._top[full] += 1
            else:
                rules.append(text)
            self._count(full, rules, text)
            self._index(full, text)
            self._touch(full)

    def remove_rule(self, chain: str, rule: str, wrap: bool = True, top: bool = False) -> bool:
        """Remove ``rule`` from ``chain``; False (and a warning) if it was not there."""
        text = self.canonical(rule)
        with self._lock:
            full = self._full(chain, wrap)
            rules = self._rules_of(full)  # raises for an unknown chain
            if not self._has(full, rules, text):
                LOG.warning(
                    "iptables %s: tried to remove %r from %s: not there", self.name, text, full
                )
                return False
            self._delete(full, text)
            return True

    def set_rules(self, chain: str, rules: Iterable[str], wrap: bool = True) -> None:
        """Replace the whole content of ``chain`` (our rules only, for a shared chain)."""
        texts = [self.canonical(rule) for rule in rules]
        with self._lock:
            full = self._full(chain, wrap)
            current = self._rules_of(full)  # raises for an unknown chain
            self._top.pop(full, None)
            if current == texts:
                return
            for rule in current:
                self._unindex(full, rule)
            current[:] = texts
            self._counts.pop(full, None)
            if len(texts) > COUNTED:
                self._counts[full] = Counter(texts)
            for rule in texts:
                self._index(full, rule)
            self._touch(full)

    def empty_chain(self, chain: str, wrap: bool = True) -> None:
        """Remove every rule (of ours) from ``chain``."""
        self.set_rules(chain, [], wrap)

    def rules(self, chain: str, wrap: bool = True) -> list[str]:
        """Our rules of ``chain`` in order, normalised (the kernel may spell some differently)."""
        with self._lock:
            return list(self._rules_of(self._full(chain, wrap)))

    def chains(self) -> list[str]:
        """Full names of the chains this binary owns in the table."""
        with self._lock:
            return sorted(self._chains)

    def canonical(self, rule: str) -> str:
        """``rule`` as the table stores it: ``$chain`` expanded, normalised."""
        return normalise_rule(self._naming.expand(rule.strip()))

    # -- for the manager: plain copies ------------------------------------------

    def snapshot(self) -> Desired:
        """Everything the table wants, as plain values."""
        with self._lock:
            return Desired(
                self.name,
                {chain: tuple(rules) for chain, rules in self._chains.items()},
                {chain: tuple(rules) for chain, rules in self._shared.items()},
            )

    def take_changes(self) -> Changes:
        """The owned chains changed since the last call (None: removed); forgets them."""
        with self._lock:
            chains = {chain: self._copy(chain) for chain in self._changed}
            changes = Changes(self.name, chains, self._shared_changed)
            self._changed.clear()
            self._shared_changed = False
            return changes

    # -- internals --------------------------------------------------------------

    def _copy(self, chain: str) -> tuple[str, ...] | None:
        rules = self._chains.get(chain)
        return None if rules is None else tuple(rules)

    def _full(self, chain: str, wrap: bool) -> str:
        if wrap:
            return self._naming.wrap(chain)
        return check_chain_name(chain)

    def _rules_of(self, full: str) -> list[str]:
        rules = self._chains.get(full)
        if rules is None:
            rules = self._shared.get(full)
        if rules is None:
            raise ValueError(f"iptables {self.name}: unknown chain {full} (add_chain it first)")
        return rules

    def _touch(self, full: str) -> None:
        if full in self._chains:
            self._changed.add(full)
        else:
            self._shared_changed = True

    def _delete(self, full: str, text: str) -> None:
        rules = self._rules_of(full)
        index = rules.index(text)  # C-speed, even in a 5,000-rule chain
        del rules[index]
        if index < self._top[full]:
            self._top[full] -= 1
        self._uncount(full, text)
        self._unindex(full, text)
        self._touch(full)

    def _has(self, chain: str, rules: list[str], text: str) -> bool:
        counts = self._counts.get(chain)
        return text in rules if counts is None else text in counts

    def _count(self, chain: str, rules: list[str], text: str) -> None:
        """After ``text`` was put into ``rules``: count it (a long chain gets its Counter)."""
        counts = self._counts.get(chain)
        if counts is not None:
            counts[text] += 1
        elif len(rules) > COUNTED:
            self._counts[chain] = Counter(rules)

    def _uncount(self, chain: str, text: str) -> None:
        counts = self._counts.get(chain)
        if counts is not None:
            counts[text] -= 1
            if counts[text] <= 0:
                del counts[text]

    def _index(self, chain: str, rule: str) -> None:
        target = jump_target(rule)
        # -j ACCEPT, -j DROP... are most rules: not indexed, no chain of that name.
        if target is not None and not is_target_extension(target):
            jumps = self._jumps.get(target)
            if jumps is None:
                jumps = self._jumps[target] = Counter()
            jumps[chain, rule] += 1

    def _unindex(self, chain: str, rule: str) -> None:
        target = jump_target(rule)
        jumps = None if target is None else self._jumps.get(target)  # absent for ACCEPT...
        if target is None or jumps is None:
            return
        jumps[chain, rule] -= 1
        if jumps[chain, rule] <= 0:
            del jumps[chain, rule]
        if not jumps:
            del self._jumps[target]


def declare_defaults(table: IptablesTable, naming: Naming) -> None:
    """The wrapped built-ins, local/snat chains and the shared jumps, as nova."""
    for builtin in WRAPPED_BUILTINS[table.name]:
        table.add_chain(builtin)
        table.add_rule(builtin, f"-j {naming.wrap(builtin)}", wrap=False)
    if table.name == "filter":
        table.add_chain("local")
        table.add_chain(naming.filter_top, wrap=False)
        table.add_rule("FORWARD", f"-j {naming.filter_top}", wrap=False)
        table.add_rule("OUTPUT", f"-j {naming.filter_top}", wrap=False)
        table.add_rule(naming.filter_top, "-j $local", wrap=False)
    elif table.name == "nat":
        table.add_chain("snat")
        table.add_chain("float-snat")
        table.add_rule("snat", "-j $float-snat")
        table.add_chain(naming.postrouting_bottom, wrap=False)
        table.add_rule("POSTROUTING", f"-j {naming.postrouting_bottom}", wrap=False)
        table.add_rule(naming.postrouting_bottom, "-j $snat", wrap=False)
