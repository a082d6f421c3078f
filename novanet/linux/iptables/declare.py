"""Desired rules as plain data, and how a daemon hands them to its manager.

Each daemon computes its rules with pure functions (novanet.network.rules,
novanet.compute.rules, novanet.metadata.rules) as a :data:`Rules` value and
:func:`declare` puts them into the manager's model; the manager decides what
reaches the kernel. Chains are named without the ``<prefix>-<binary>-``
wrapping (``INPUT`` becomes ``nova-network-INPUT``) and rules are in the
canonical form ``iptables -S`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

Rules = dict[str, dict[str, list[str]]]  # table -> wrapped chain -> rules


class TableLike(Protocol):
    def add_chain(self, name: str, wrap: bool = True) -> None: ...

    def set_rules(self, chain: str, rules: Iterable[str], wrap: bool = True) -> None: ...


def declare(tables: Mapping[str, TableLike], rules: Rules) -> None:
    """Make each listed wrapped chain hold exactly these rules (in an IptablesManager model)."""
    for table, chains in rules.items():
        for chain, content in chains.items():
            tables[table].add_chain(chain)
            tables[table].set_rules(chain, content)
