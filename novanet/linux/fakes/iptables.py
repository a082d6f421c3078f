"""A stateful stand-in for iptables-save/-restore and nf_tables handles (the manager's Runner).

It keeps kernel-like tables, really parses the restore text (``:chain``
declarations with --noflush semantics, -N/-A/-I/-D/-R/-F/-X/-P, COMMIT) and
answers ``iptables-save`` from its state, so tests assert the resulting
chains (:meth:`FakeIptables.listing` prints them like ``iptables -S``)
rather than the calls made. It fails where the kernel fails: a jump to a
missing chain, deleting a non-empty or referenced chain, ``-D`` of a rule
that is not there, a chain name over 28 characters, ``-N`` of an existing
chain. Each non-empty COMMIT (and each :meth:`run`) is one transaction and
bumps a generation counter, like the nf_tables generation id.

Like nf_tables, every rule (and chain) gets a handle from a per-table
counter; a restore reports the rules it added, :meth:`rule_handles` dumps a
chain, and :meth:`delete_by_handle` refuses a batch planned at another
generation (``handles=False`` makes it behave like the legacy backend).
"""

from __future__ import annotations

import errno
import re
import shlex
from collections.abc import Hashable, Sequence
from typing import Any

from novanet.exception import ProcessExecutionError
from novanet.linux.iptables.names import (
    BUILTIN_CHAINS,
    MAX_CHAIN_NAME,
    is_target_extension,
    jump_target,
)
from novanet.linux.iptables.nftnl import HandleError, StaleGeneration
from novanet.linux.iptables.plan import HandleBatch
from novanet.linux.iptables.runner import restore_error
from novanet.linux.iptables.view import RuleHandle

_TARGET_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")  # ACCEPT, DROP, SNAT...: extensions
_SET_RE = re.compile(r"--match-set (\S+)")


class _Refused(Exception):
    """What the kernel/iptables would say, plus whether it is a commit-time error."""


Rule = tuple[int, str]  # (handle, text)
Tables = dict[str, dict[str, list[Rule]]]


class FakeIptables:
    """In-memory iptables for unit tests; implements the manager's Runner."""

    backend = "fake"
    kernel_backend = "fake"

    def __init__(self, handles: bool = True) -> None:
        self._tables: Tables = {}
        self.policies: dict[str, dict[str, str]] = {}
        self.generation = 0
        self.restores: list[tuple[str, str]] = []  # every restore input, failed ones too
        self.deletions: list[tuple[str, HandleBatch]] = []  # every batch by handle
        self.saves = 0
        self.dumps = 0  # rule_handles() calls
        self._handles_enabled = handles
        self._next_handle: dict[str, int] = {}
        self._added: list[RuleHandle] = []
        self.ipsets: Any = None  # a FakeIpset (FakeIpset.attach): --match-set needs its set

    @property
    def tables(self) -> dict[str, dict[str, list[str]]]:
        return {
            t: {c: [r for _, r in rules] for c, rules in ch.items()}
            for t, ch in self._tables.items()
        }

    # -- Runner ---------------------------------------------------------------

    def watch(self, tables: Sequence[str]) -> None:
        for table in tables:
            self._table(table)

    def save(self, table: str) -> str:
        self.saves += 1
        chains = self._table(table)
        lines = [f"*{table}"]
        for chain in self._order(table):
            policy = self.policies[table].get(chain, "-")
            lines.append(f":{chain} {policy} [0:0]")
        for chain in self._order(table):
            lines += [f"-A {chain} {rule}".rstrip() for _, rule in chains[chain]]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    def restore(self, table: str, text: str, learn: bool = True) -> list[RuleHandle] | None:
        self.restores.append((table, text))
        cmd = ["iptables-restore", "-w", "--noflush"]
        self._added = []
        try:
            self._restore(text)
        except _Refused as exc:
            message, number = exc.args
            error = ProcessExecutionError(
                cmd,
                1,
                "",
                f"iptables-restore v1.8.9 (fake): {message}\nError occurred at line: {number}\n",
            )
            raise restore_error(error, text) from None
        return list(self._added) if learn and self._handles_enabled else None

    def token(self) -> Hashable | None:
        return self.generation

    def own_commits(self, before: Hashable, after: Hashable, count: int) -> bool:
        return isinstance(before, int) and isinstance(after, int) and after - before == count

    def token_exact(self) -> bool:
        return True

    def handles(self) -> bool:
        return self._handles_enabled

    def rule_handles(self, table: str, chain: str) -> list[RuleHandle] | None:
        rules = self._table(table).get(chain)
        if not self._handles_enabled or rules is None:
            return None
        self.dumps += 1
        return [RuleHandle(chain, handle, _chain_target(text)) for handle, text in rules]

    def delete_by_handle(self, table: str, batch: HandleBatch, token: Hashable) -> Hashable:
        self.deletions.append((table, batch))
        if not self._handles_enabled:
            raise HandleError(errno.EOPNOTSUPP, "no handles")
        if token != self.generation:
            raise StaleGeneration("the ruleset changed since it was read")
        work = self._copy()
        chains = work.setdefault(table, {c: [] for c in BUILTIN_CHAINS[table]})
        try:
            for chain in batch.flush:
                self._existing(chains, chain)[:] = []
            for chain, handle in batch.rules:
                rules = self._existing(chains, chain)
                index = next((i for i, (h, _) in enumerate(rules) if h == handle), None)
                if index is None:
                    raise HandleError(errno.ENOENT, f"no rule with handle {handle} in {chain}")
                del rules[index]
            self._delete_chains(chains, table, list(batch.delete))
        except _Refused as exc:
            raise HandleError(errno.EBUSY, str(exc.args[0])) from None
        self._tables = work
        self.generation += 1
        return self.generation

    def close(self) -> None:
        pass

    # -- helpers for tests --------------------------------------------------------

    def listing(self, table: str = "filter") -> list[str]:
        """The table as ``iptables -t TABLE -S`` prints it."""
        chains = self._table(table)
        builtins = BUILTIN_CHAINS[table]
        lines = [f"-P {chain} {self.policies[table][chain]}" for chain in builtins]
        lines += [f"-N {chain}" for chain in self._order(table) if chain not in builtins]
        for chain in self._order(table):
            lines += [f"-A {chain} {rule}".rstrip() for _, rule in chains[chain]]
        return lines

    def run(self, command: str, table: str = "filter") -> None:
        """One ``iptables -t TABLE COMMAND`` (for simulating tampering)."""
        self._table(table)
        work = self._copy()
        try:
            self._command(work, table, command)
            self._check_jumps(work, table)
        except _Refused as exc:
            raise ProcessExecutionError(
                ["iptables", "-t", table, *shlex.split(command)], 1, "", f"iptables: {exc.args[0]}"
            ) from None
        self._tables = work
        self.generation += 1

    def recreate(self, table: str = "filter") -> None:
        """Delete the table and load the same rules again (``nft flush ruleset`` and a
        restore of the saved rules): same content, all handles new, numbered from 1."""
        self._next_handle[table] = 0
        chains = self._table(table)
        for chain in self._order(table):
            self._handle(table)
            chains[chain] = [(self._handle(table), text) for _, text in chains[chain]]
        self.generation += 2

    def chain(self, name: str, table: str = "filter") -> list[str] | None:
        rules = self._table(table).get(name)
        return None if rules is None else [text for _, text in rules]

    # -- internals ------------------------------------------------------------------

    def _table(self, table: str) -> dict[str, list[Rule]]:
        if table not in self._tables:
            self._tables[table] = {chain: [] for chain in BUILTIN_CHAINS[table]}
            self.policies[table] = {chain: "ACCEPT" for chain in BUILTIN_CHAINS[table]}
        return self._tables[table]

    def _order(self, table: str) -> list[str]:
        builtins = BUILTIN_CHAINS[table]
        users = sorted(c for c in self._table(table) if c not in builtins)
        return list(builtins) + users

    def _copy(self) -> Tables:
        return {t: {c: list(r) for c, r in chains.items()} for t, chains in self._tables.items()}

    def _handle(self, table: str) -> int:
        # One counter per table for rules and chains alike, as nf_tables.
        self._next_handle[table] = self._next_handle.get(table, 0) + 1
        return self._next_handle[table]

    def _new_rule(self, table: str, chain: str, text: str) -> Rule:
        rule = (self._handle(table), text)
        self._added.append(RuleHandle(chain, rule[0], _chain_target(text)))
        return rule

    def _restore(self, text: str) -> None:
        work = self._copy()
        table: str | None = None
        touched = False
        number = 0
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                if line.startswith("*"):
                    table = line[1:]
                    if table not in BUILTIN_CHAINS:
                        raise _Refused(f"table '{table}' does not exist", number)
                    self._table(table)
                    work.setdefault(table, {c: [] for c in BUILTIN_CHAINS[table]})
                    touched = False
                elif table is None:
                    raise _Refused("no table specified", number)
                elif line == "COMMIT":
                    # iptables-nft resolves jump targets when it commits and
                    # reports the COMMIT line (seen with 1.8.9).
                    self._check_jumps(work, table, number)
                    self._tables = work
                    work = self._copy()
                    if touched:
                        self.generation += 1
                    table = None
                elif line.startswith(":"):
                    self._declare(work, table, line[1:])
                    touched = True
                else:
                    self._command(work, table, line)
                    touched = True
            except _Refused as exc:
                if len(exc.args) == 1:
                    raise _Refused(exc.args[0], number) from None
                raise
        if table is not None:
            raise _Refused("COMMIT expected at the end of the input", number)

    def _declare(self, work: Tables, table: str, spec: str) -> None:
        name, _, rest = spec.partition(" ")
        policy = rest.split(" ", 1)[0] if rest else "-"
        chains = work[table]
        if name in BUILTIN_CHAINS[table]:
            if policy != "-":
                self.policies[table][name] = policy
            return
        self._check_name(name)
        if name not in chains:
            self._handle(table)
        chains[name] = []  # --noflush: a declared chain is created or flushed

    def _command(self, work: Tables, table: str, line: str) -> None:
        chains = work.setdefault(table, {c: [] for c in BUILTIN_CHAINS[table]})
        op, _, rest = line.partition(" ")
        chain, _, rule = rest.strip().partition(" ")
        rule = rule.strip()
        if op == "-N":
            self._check_name(chain)
            if chain in chains:
                raise _Refused("Chain already exists.")
            self._handle(table)
            chains[chain] = []
            return
        if op == "-F":
            for name in [chain] if chain else list(chains):
                self._existing(chains, name)[:] = []
            return
        if op == "-X":
            self._delete_chains(chains, table, [chain] if chain else list(chains))
            return
        rules = self._existing(chains, chain)
        if op == "-A":
            rules.append(self._new_rule(table, chain, rule))
        elif op == "-P":
            self.policies[table][chain] = rule
        elif op in ("-I", "-R", "-D"):
            self._positional(op, table, chain, rules, rule)
        else:
            raise _Refused(f"unknown command {op}")

    def _positional(self, op: str, table: str, chain: str, rules: list[Rule], rule: str) -> None:
        first, _, rest = rule.partition(" ")
        position = int(first) if first.isdigit() else None
        text = rest.strip() if position is not None else rule
        if op == "-I":
            index = (position or 1) - 1
            if index > len(rules):
                raise _Refused("Index of insertion too big.")
            rules.insert(index, self._new_rule(table, chain, text))
        elif op == "-R":
            if position is None or not 0 < position <= len(rules):
                raise _Refused("Index of replacement too big.")
            rules[position - 1] = self._new_rule(table, chain, text)
        elif position is not None and not text:
            if not 0 < position <= len(rules):
                raise _Refused("Index of deletion too big.")
            del rules[position - 1]
        else:
            found = next((i for i, (_, r) in enumerate(rules) if r == text), None)
            if found is None:
                raise _Refused("Bad rule (does a matching rule exist in that chain?).")
            del rules[found]

    def _delete_chains(self, chains: dict[str, list[Rule]], table: str, names: list[str]) -> None:
        builtins = BUILTIN_CHAINS[table]
        doomed = [name for name in names if name not in builtins]
        if len(names) == 1 and names[0] in builtins:
            raise _Refused("Can't delete built-in chain.")
        for name in doomed:
            if self._existing(chains, name):
                raise _Refused(f"CHAIN_DEL failed (Device or resource busy): chain {name}")
            for other, rules in chains.items():
                if other not in doomed and any(jump_target(r) == name for _, r in rules):
                    raise _Refused(f"CHAIN_DEL failed (Device or resource busy): chain {name}")
        for name in doomed:
            del chains[name]

    def _check_jumps(self, work: Tables, table: str, number: int | None = None) -> None:
        chains = work[table]
        for rules in chains.values():
            for _, rule in rules:
                target = jump_target(rule)
                if target and target not in chains and not _TARGET_RE.match(target):
                    raise _Refused(f"Chain '{target}' does not exist", number)
                for name in _SET_RE.findall(rule):
                    if self.ipsets is not None and name not in self.ipsets.sets:
                        raise _Refused(f"Set {name} doesn't exist.", number)

    def referenced_sets(self) -> set[str]:
        """The ipsets that rules name (the kernel refuses to destroy them)."""
        return {
            name
            for chains in self._tables.values()
            for rules in chains.values()
            for _, rule in rules
            for name in _SET_RE.findall(rule)
        }

    @staticmethod
    def _existing(chains: dict[str, list[Rule]], name: str) -> list[Rule]:
        if name not in chains:
            raise _Refused("No chain/target/match by that name.")
        return chains[name]

    @staticmethod
    def _check_name(name: str) -> None:
        if not name or len(name) > MAX_CHAIN_NAME:
            raise _Refused(f"chain name `{name}' too long (must be under 29 chars)")


def _chain_target(text: str) -> str | None:
    """What nf_tables reports as a rule's target: only a jump or goto to a chain."""
    target = jump_target(text)
    return None if target is None or is_target_extension(target) else target
