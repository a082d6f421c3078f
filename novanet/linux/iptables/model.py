"""The in-memory model of the chains one binary owns in one table.

Wrapped chains (``nova-compute-inst-9``) belong to this binary alone: the
manager may rewrite them whole. Built-in chains and unwrapped chains
(``nova-filter-top``) are shared: the model only lists *our* rules in them,
and the manager places those among everybody else's rules.

Every rule is stored as ``iptables -S`` prints it (see normalise.py), after
nova's ``$chain`` expansion. The model records which chains changed since
the last apply so the manager rewrites only those.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Mapping

from novanet.linux.iptables.names import BUILTIN_CHAINS, Naming, check_chain_name, jump_target
from novanet.linux.iptables.normalise import normalise_rule

LOG = logging.getLogger(__name__)


class IptablesTable:
    """Desired content of one table (``filter``, ``nat``...) for one binary.

    Use it like nova's: ``table.add_chain('inst-9')``,
    ``table.add_rule('inst-9', '-j $provider')``, ``table.add_rule('INPUT', rule)``
    (the wrapped ``nova-<binary>-INPUT``), ``wrap=False`` for a built-in or
    unwrapped chain. Changes reach the kernel on ``manager.apply()``.
    """

    def __init__(
        self,
        name: str,
        naming: Naming,
        lock: threading.RLock,
        aliases: Mapping[str, str],
    ) -> None:
        self.name = name
        self.builtins = BUILTIN_CHAINS[name]
        self._naming = naming
        self._lock = lock
        self._aliases = aliases
        self._chains: dict[str, list[str]] = {}
        self._shared: dict[str, list[str]] = {chain: [] for chain in self.builtins}
        self._top: Counter[str] = Counter()
        # target chain -> chains holding rules that jump to it (with counts),
        # so removing one of 5,000 instance chains does not scan every rule.
        self._referrers: dict[str, Counter[str]] = {}
        # chain -> rule text -> count: duplicate checks without scanning.
        self._counts: dict[str, Counter[str]] = {}
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
                    self._unlink(full, rule)
                self._top.pop(full, None)
                self._changed.add(full)
            elif full in self._shared and full not in self.builtins:
                for rule in self._shared[full]:
                    self._unlink(full, rule)
                self._shared[full] = []
                self._shared_changed = True
            else:
                LOG.warning("iptables %s: no chain %s to remove", self.name, full)
                return
            for chain in list(self._referrers.get(full, ())):
                rules = self._rules_of(chain)
                kept = [rule for rule in rules if jump_target(rule) != full]
                self._replace(chain, kept)

    def has_chain(self, name: str, wrap: bool = True) -> bool:
        with self._lock:
            full = self._full(name, wrap)
            return full in self._chains or full in self._shared

    def add_rule(self, chain: str, rule: str, wrap: bool = True, top: bool = False) -> None:
        """Append ``rule`` to ``chain`` (``top``: before the non-top rules).

        ``$name`` in the rule means the wrapped chain ``<prefix>-<binary>-name``.
        A rule already in the chain is not added twice.
        """
        with self._lock:
            full = self._full(chain, wrap)
            text = self.canonical(rule)
            rules = self._rules_of(full)
            if text in self._counts.get(full, ()):
                LOG.debug("iptables %s: %s already has %s", self.name, full, text)
                return
            if top:
                rules.insert(self._top[full], text)
                self._top[full] += 1
            else:
                rules.append(text)
            self._link(full, text)
            self._touch(full)

    def remove_rule(self, chain: str, rule: str, wrap: bool = True, top: bool = False) -> bool:
        """Remove ``rule`` from ``chain``; False (and a warning) if it was not there."""
        with self._lock:
            full = self._full(chain, wrap)
            text = self.canonical(rule)
            rules = self._rules_of(full)
            try:
                index = rules.index(text)
            except ValueError:
                LOG.warning(
                    "iptables %s: tried to remove %r from %s: not there", self.name, text, full
                )
                return False
            del rules[index]
            if index < self._top[full]:
                self._top[full] -= 1
            self._unlink(full, text)
            self._touch(full)
            return True

    def set_rules(self, chain: str, rules: Iterable[str], wrap: bool = True) -> None:
        """Replace the whole content of ``chain`` (our rules only, for a shared chain)."""
        with self._lock:
            full = self._full(chain, wrap)
            self._rules_of(full)  # raises for an unknown chain
            self._top.pop(full, None)
            self._replace(full, [self.canonical(rule) for rule in rules])

    def empty_chain(self, chain: str, wrap: bool = True) -> None:
        """Remove every rule (of ours) from ``chain``."""
        self.set_rules(chain, [], wrap)

    def rules(self, chain: str, wrap: bool = True) -> list[str]:
        """Our rules of ``chain``, in the order the kernel will hold them."""
        with self._lock:
            return list(self._rules_of(self._full(chain, wrap)))

    def chains(self) -> list[str]:
        """Full names of the chains this binary owns in the table."""
        with self._lock:
            return sorted(self._chains)

    def canonical(self, rule: str) -> str:
        """``rule`` as the model stores it: expanded, normalised, kernel spelling."""
        text = normalise_rule(self._naming.expand(rule.strip()))
        return self._aliases.get(text, text)

    # -- for the manager ------------------------------------------------------

    def owned(self) -> dict[str, list[str]]:
        """The owned chains (live lists: read under the manager's lock only)."""
        return self._chains

    def shared(self) -> dict[str, list[str]]:
        """Our rules in the shared chains (live lists, as owned())."""
        return self._shared

    def pending(self) -> tuple[set[str], bool]:
        """(owned chains changed since the last apply, whether shared rules changed)."""
        return set(self._changed), self._shared_changed

    def has_pending(self) -> bool:
        return bool(self._changed) or self._shared_changed

    def clear_pending(self, chains: Iterable[str] | None = None, shared: bool = True) -> None:
        if chains is None:
            self._changed.clear()
        else:
            self._changed.difference_update(chains)
        if shared:
            self._shared_changed = False

    def adopt_spelling(self, chain: str, index: int, kernel_text: str) -> None:
        """Replace a rule by the kernel's spelling of it (same rule, other text)."""
        rules = self._rules_of(chain)
        self._unlink(chain, rules[index])
        rules[index] = kernel_text
        self._link(chain, kernel_text)

    # -- internals --------------------------------------------------------------

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

    def _replace(self, full: str, new_rules: list[str]) -> None:
        rules = self._rules_of(full)
        if rules == new_rules:
            return
        for rule in rules:
            self._unlink(full, rule)
        rules[:] = new_rules
        for rule in new_rules:
            self._link(full, rule)
        self._top[full] = min(self._top[full], len(new_rules))
        self._touch(full)

    def _link(self, chain: str, rule: str) -> None:
        self._counts.setdefault(chain, Counter())[rule] += 1
        target = jump_target(rule)
        if target is not None:
            self._referrers.setdefault(target, Counter())[chain] += 1

    def _unlink(self, chain: str, rule: str) -> None:
        counts = self._counts[chain]
        counts[rule] -= 1
        if counts[rule] <= 0:
            del counts[rule]
        target = jump_target(rule)
        if target is None:
            return
        counter = self._referrers.get(target)
        if counter is None:
            return
        counter[chain] -= 1
        if counter[chain] <= 0:
            del counter[chain]
        if not counter:
            del self._referrers[target]
