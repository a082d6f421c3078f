"""A stateful stand-in for the kernel side of an NftTable (its Kernel).

It holds one table like nf_tables does: a structure (what ``nft -f`` wrote
of chains and set declarations, plus whatever was done to it by hand) and
the element keys of each set, and one generation counter that every
committed transaction increments. It parses the ``add element`` lines of
the scripts it runs (with the table's own SetSpecs), refuses what the
kernel refuses (deleting an element that is not there, writing to a table
that does not exist: the whole transaction then changes nothing), and lets
tests do what an operator could by hand (:meth:`flush_rules`,
:meth:`drop_table`, :meth:`delete_element`, :meth:`add_element`,
:meth:`foreign_commit`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence

from novanet.exception import ProcessExecutionError
from novanet.linux.nftables.generation import Commit
from novanet.linux.nftables.nfnl import NftRefused
from novanet.linux.nftables.spec import TableSpec

_ELEMENT_LINE = re.compile(r"^add element (\S+) (\S+) (\S+) \{ (.*) \}$")


class FakeNftKernel:
    """One namespace's nf_tables, for one table spec."""

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.gen = 0
        self.structure_id: bytes | None = None  # None: no table
        self.sets: dict[str, set[bytes]] = {}
        self.scripts: list[str] = []  # every script run (the whole-table rewrites)
        self.reads = 0  # element dumps served
        self.fail_scripts = False
        self._edits = 0

    # -- the Kernel interface -----------------------------------------------------

    def generation(self) -> int | None:
        return self.gen

    @contextlib.contextmanager
    def commit(self) -> Iterator[Commit]:
        done = Commit(before=self.gen)
        try:
            yield done
        finally:
            done.after = self.gen

    def structure(self, spec: TableSpec) -> bytes | None:
        return self.structure_id

    def elements(self, spec: TableSpec) -> dict[str, set[bytes]]:
        if self.structure_id is None:
            raise OSError(errno.ENOENT, "no such table")
        self.reads += 1
        return {name: set(keys) for name, keys in self.sets.items()}

    def write_elements(
        self,
        spec: TableSpec,
        deletes: Mapping[str, Sequence[bytes]],
        adds: Mapping[str, Sequence[bytes]],
    ) -> None:
        if self.structure_id is None:
            raise NftRefused(errno.ENOENT, "nf_tables refused the batch: no such table")
        sets = {name: set(keys) for name, keys in self.sets.items()}
        for name, keys in deletes.items():
            for key in keys:
                if key not in sets[name]:
                    raise NftRefused(errno.ENOENT, f"nf_tables refused 'delete of {name}'")
                sets[name].discard(key)
        for name, keys in adds.items():
            sets[name].update(keys)
        self.sets = sets
        self.gen += 1

    def run_script(self, text: str) -> None:
        self.scripts.append(text)
        if self.fail_scripts:
            raise ProcessExecutionError(["nft", "-f", "-"], 1, "", "Error: refused (fake)")
        block = text.split("add element", 1)[0]
        sets: dict[str, set[bytes]] = {spec.name: set() for spec in self.spec.sets}
        for line in text.splitlines():
            match = _ELEMENT_LINE.match(line)
            if match:
                spec = self.spec.set(match.group(3))
                for item in match.group(4).split(", "):
                    values = [part.strip().strip('"') for part in item.split(" . ")]
                    sets[spec.name].add(spec.encode(*values))
        self.sets = sets
        self.structure_id = hashlib.sha256(block.encode() + b"%d" % self.gen).digest()
        self.gen += 1

    def delete_table(self, spec: TableSpec) -> bool:
        if self.structure_id is None:
            return False
        self.drop_table()
        return True

    def close(self) -> None:
        pass

    # -- what an operator could do by hand -----------------------------------------

    def flush_rules(self) -> None:
        """``nft flush table``: the rules go, the elements stay."""
        self._edits += 1
        assert self.structure_id is not None
        self.structure_id = hashlib.sha256(self.structure_id + b"flushed").digest()
        self.gen += 1

    def drop_table(self) -> None:
        self.structure_id = None
        self.sets = {}
        self.gen += 1

    def delete_element(self, name: str, key: bytes) -> None:
        self.sets[name].discard(key)
        self.gen += 1

    def add_element(self, name: str, key: bytes) -> None:
        self.sets[name].add(key)
        self.gen += 1

    def foreign_commit(self) -> None:
        """Another program committed something (iptables-nft, say)."""
        self.gen += 1

    def keys(self, name: str) -> set[bytes]:
        return set(self.sets.get(name, set()))
