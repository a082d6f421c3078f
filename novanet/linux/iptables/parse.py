"""Parse ``iptables-save -t TABLE`` output into chains and rules."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from novanet.exception import NovanetError
from novanet.linux.iptables.names import jump_target


class SaveParseError(NovanetError):
    """iptables-save printed something novanet does not understand."""


@dataclass
class TableDump:
    """One table as the kernel holds it.

    ``chains`` maps every chain (built-in and user-defined) to its rules, each
    rule without the leading ``-A CHAIN`` (exactly as the model stores rules).
    ``policies`` holds the built-in chains' policies.
    """

    name: str
    chains: dict[str, list[str]] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)

    def references(self) -> dict[str, list[tuple[str, int]]]:
        """target chain -> [(referencing chain, 0-based rule index)] for jumps/gotos."""
        refs: dict[str, list[tuple[str, int]]] = {}
        for chain, rules in self.chains.items():
            for index, rule in enumerate(rules):
                target = jump_target(rule)
                if target is not None and target in self.chains:
                    refs.setdefault(target, []).append((chain, index))
        return refs


def parse_save(text: str, table: str) -> TableDump:
    """Parse the section for ``table`` of iptables-save output.

    A missing section means the table does not exist yet (iptables-nft only
    creates a table on first use): an empty dump is returned.
    """
    dump = TableDump(table)
    in_table = False
    for number, raw in enumerate(_lines(text), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            # iptables-nft-save adds "# Warning: iptables-legacy tables
            # present" comments when the other backend has tables too.
            continue
        if line.startswith("*"):
            in_table = line[1:] == table
            continue
        if not in_table:
            continue
        if line == "COMMIT":
            in_table = False
        elif line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            dump.chains.setdefault(name, [])
            policy = rest.split(" ", 1)[0]
            if policy and policy != "-":
                dump.policies[name] = policy
        elif line.startswith("-A "):
            _, chain, rule = (line.split(" ", 2) + [""])[:3]
            dump.chains.setdefault(chain, []).append(rule)
        else:
            raise SaveParseError(f"iptables-save output line {number} not understood: {line!r}")
    return dump


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` one at a time.

    ``splitlines()`` would hold all 40,000 lines of a 5,000-instance table
    (4 MB) next to the text and the parsed rules: the daemon's peak memory.
    """
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        if end < 0:
            end = len(text)
        yield text[start:end]
        start = end + 1
