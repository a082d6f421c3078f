"""NftTable: one nftables table novanet owns, kept as declared: structure and set elements.

Callers declare elements grouped by key (the anti-spoofing filter uses one
key per instance port); the table is the only writer of the kernel object
and knows what it wrote:

- :meth:`update` changes some keys: one nf_tables transaction deleting the
  elements they no longer have and adding every element they have (adding
  an element that exists is no error), over netlink, without reading the
  kernel first. If nf_tables refuses it (an element deleted by hand, the
  table gone), the table is read and converged instead.
- :meth:`replace` declares every key at once; from then on elements of no
  key are stale and removed (before it, during the agent's first resync,
  unknown elements are kept: they may be ports not declared yet).
- :meth:`check_and_repair` costs one generation probe when nothing was
  committed since the table was last known; otherwise it reads the
  structure fingerprint and the elements (netlink dumps, about 20 ms at
  5,000 ports) and repairs what differs.

The structure (chains, rules, set declarations) is written only whole, by
``nft -f`` in one transaction together with every element (TableSpec.script):
when the table is missing, when its fingerprint is not the one read right
after our last rewrite (a rule or chain changed by hand, or nothing learned
yet since the daemon started). nf_tables swaps the old table for the new in
one commit, so ports stay filtered throughout, including at a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping

from novanet.exception import ProcessExecutionError
from novanet.linux.nftables.backend import Kernel
from novanet.linux.nftables.nfnl import NftRefused
from novanet.linux.nftables.spec import Element, TableSpec, describe_all, flatten, group

LOG = logging.getLogger(__name__)
REWRITE = "written whole"  # in the report line of a whole-table write


class NftTable:
    def __init__(self, spec: TableSpec, kernel: Kernel) -> None:
        self.spec = spec
        self.kernel = kernel
        self._lock = threading.RLock()
        self._desired: dict[str, frozenset[Element]] = {}
        self._complete = False
        # What the kernel holds as far as we know: set name -> keys. None:
        # not read since the start, or a write failed.
        self._present: dict[str, set[bytes]] | None = None
        # Generation at which _present and the structure were the kernel's.
        self._token: int | None = None
        # The structure fingerprint read right after our last rewrite.
        self._learned: bytes | None = None

    @property
    def name(self) -> str:
        return f"table {self.spec.family} {self.spec.name}"

    @property
    def complete(self) -> bool:
        """replace() was called: every key is declared."""
        return self._complete

    def declared(self) -> dict[str, frozenset[Element]]:
        with self._lock:
            return dict(self._desired)

    # -- declaring ------------------------------------------------------------------

    def update(self, changes: Mapping[str, Iterable[Element] | None]) -> list[str]:
        """Give keys new elements (None: remove the key); applied now, in one transaction."""
        with self._lock:
            old: set[Element] = set()
            new: set[Element] = set()
            for key, elements in changes.items():
                old |= self._desired.pop(key, frozenset())
                if elements is not None:
                    self._desired[key] = frozenset(elements)
                    new |= self._desired[key]
            if self._present is None:
                return self._sync()
            present = self._present
            deletes = {(name, key) for name, key in old - new if key in present[name]}
            return self._write(deletes, new, retry=True)

    def replace(self, desired: Mapping[str, Iterable[Element]]) -> list[str]:
        """Declare every key; elements of no key are removed from now on."""
        with self._lock:
            self._desired = {key: frozenset(elements) for key, elements in desired.items()}
            self._complete = True
            if self._present is None or self._token is None:
                return self._sync()
            if self._token != self.kernel.generation():
                return self._sync()
            return self._converge(self._present)

    def check_and_repair(self) -> list[str]:
        """Repair what someone else changed; returns what was repaired."""
        with self._lock:
            if not self._complete:
                return []  # until the first replace(), nothing is known to be stale
            now = self.kernel.generation()
            if now is not None and now == self._token:
                return []
            return self._sync()

    def drift(self) -> list[str]:
        """What check_and_repair would repair now, without writing (diagnose's dry run)."""
        with self._lock:
            if not self._complete:
                return []
            try:
                structure = self.kernel.structure(self.spec)
                if structure is None:
                    return [f"{self.name} is missing"]
                if self._learned is not None and structure != self._learned:
                    return [f"{self.name}: its rules or sets were changed"]
                present = self.kernel.elements(self.spec)
            except OSError as exc:
                return [f"{self.name} cannot be read: {exc}"]
            missing, stale = self._difference(present)
            lines = []
            if missing:
                lines.append(f"{self.name} lacks {describe_all(self.spec, missing)}")
            if stale:
                lines.append(f"{self.name} holds stale {describe_all(self.spec, stale)}")
            return lines

    def remove(self) -> bool:
        """Delete the table (the filtering is turned off); False if it did not exist."""
        with self._lock:
            self._desired, self._present, self._token, self._learned = {}, None, None, None
            self._complete = False
            with self.kernel.commit():
                return self.kernel.delete_table(self.spec)

    def close(self) -> None:
        self.kernel.close()

    # -- applying -------------------------------------------------------------------

    def _sync(self) -> list[str]:
        """Read the table and converge it to the declaration."""
        before = self.kernel.generation()
        try:
            structure = self.kernel.structure(self.spec)
            if structure is None:
                return self._rewrite("it was missing", kept=False)
            if self._learned is None:
                return self._rewrite("first look since the start", kept=not self._complete)
            if structure != self._learned:
                return self._rewrite("its rules or sets were changed", kept=not self._complete)
            present = self.kernel.elements(self.spec)
        except OSError as exc:  # e.g. a set deleted between the reads
            return self._rewrite(f"it could not be read: {exc}", kept=False)
        self._present = present
        self._token = before if before is not None and before == self.kernel.generation() else None
        return self._converge(present)

    def _converge(self, present: Mapping[str, set[bytes]]) -> list[str]:
        adds, deletes = self._difference(present)
        return self._write(deletes, adds, retry=False)

    def _difference(self, present: Mapping[str, set[bytes]]) -> tuple[set[Element], set[Element]]:
        """(declared elements missing, present elements stale); stale only once complete."""
        wanted = flatten(self._desired)
        adds = {(name, key) for name, key in wanted if key not in present.get(name, ())}
        deletes: set[Element] = set()
        if self._complete:
            deletes = {(name, key) for name, keys in present.items() for key in keys} - wanted
        return adds, deletes

    def _write(self, deletes: set[Element], adds: set[Element], retry: bool) -> list[str]:
        if not deletes and not adds:
            return []
        present = self._present
        assert present is not None
        fresh = {(name, key) for name, key in adds if key not in present[name]}
        try:
            with self.kernel.commit() as done:
                self.kernel.write_elements(self.spec, group(deletes), group(adds))
        except NftRefused as exc:
            LOG.info("%s: %s; reading it", self.name, exc)
            self._present = self._token = None
            if retry:
                return self._sync()
            return self._rewrite(f"an element change was refused: {exc}", kept=False)
        for name, key in deletes:
            present[name].discard(key)
        for name, key in adds:
            present[name].add(key)
        trusted = done.alone and self._token == done.before
        self._token = done.after if trusted else None
        report = []
        if deletes:
            report.append(f"{self.name}: removed {describe_all(self.spec, deletes)}")
        if fresh:
            report.append(f"{self.name}: added {describe_all(self.spec, fresh)}")
        return report

    def _rewrite(self, why: str, kept: bool) -> list[str]:
        """Write the whole table and every element in one transaction; learn its fingerprint.

        :param kept: keep the elements the table holds now (before the first
            replace(), unknown elements may be ports not declared yet)
        """
        elements = flatten(self._desired)
        if kept:
            try:
                found = self.kernel.elements(self.spec)
            except OSError:
                found = {}
            elements |= {(name, key) for name, keys in found.items() for key in keys}
        try:
            with self.kernel.commit() as done:
                self.kernel.run_script(self.spec.script(elements))
        except ProcessExecutionError:
            self._present = self._token = None
            raise
        learned = self.kernel.structure(self.spec)
        exact = done.alone and self.kernel.generation() == done.after
        # Learned only when nobody can have changed the table between our
        # commit and the read; otherwise the next check rewrites it again.
        self._learned = learned if exact else None
        self._token = done.after if exact else None
        present: dict[str, set[bytes]] = {spec.name: set() for spec in self.spec.sets}
        for name, key in elements:
            present[name].add(key)
        self._present = present
        return [f"{self.name} {REWRITE} ({why}) with {len(elements)} element(s)"]
