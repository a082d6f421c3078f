"""A stateful stand-in for the ipset program (the IpsetManager's Runner).

It parses the restore text (``create``, ``add``, ``del``, ``swap``,
``destroy``, ``flush``) with ``-exist`` semantics, answers ``ipset save``
from its state, and fails where the kernel fails: a set that does not
exist, a ``create`` of an existing set of another type, ``swap`` of sets
of different types, ``destroy`` of a set an iptables rule still names
(wire it to a :class:`~novanet.linux.fakes.iptables.FakeIptables` with
:meth:`attach`, which in turn refuses rules naming a missing set). A batch
that fails leaves the commands before the failing line applied, as the
real program does.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from novanet.exception import ProcessExecutionError

MAX_NAME = 31


class FakeIpset:
    def __init__(self) -> None:
        self.sets: dict[str, tuple[str, set[str]]] = {}  # name -> (type, members)
        self.restores: list[str] = []
        self.saves = 0
        self._iptables: Any = None
        # nf_tables frees deleted rules late: the next N destroys are refused
        # as "in use" although no rule names the set any more.
        self.refuse_destroys = 0

    def attach(self, iptables: Any) -> None:
        """Share state with a FakeIptables: rules name sets, sets in use stay."""
        self._iptables = iptables
        iptables.ipsets = self

    def members(self, name: str) -> set[str]:
        return set(self.sets[name][1])

    # -- Runner ---------------------------------------------------------------

    def save(self) -> str:
        self.saves += 1
        lines = []
        for name, (kind, members) in self.sets.items():
            lines.append(f"create {name} {kind} family inet hashsize 1024 maxelem 65536")
            lines += [f"add {name} {ip}" for ip in sorted(members)]
        return "".join(f"{line}\n" for line in lines)

    def restore(self, text: str) -> None:
        self.restores.append(text)
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                self._command(line.split())
            except ValueError as exc:
                raise ProcessExecutionError(
                    ["ipset", "-exist", "restore"],
                    1,
                    "",
                    f"ipset v7.17: Error in line {number}: {exc}\n",
                ) from None

    # -- commands -------------------------------------------------------------

    def _command(self, words: list[str]) -> None:
        op, args = words[0], words[1:]
        if op == "create":
            name, kind = args[0], args[1]
            if len(name) > MAX_NAME:
                raise ValueError("Syntax error: setname is longer than 31 characters")
            if name in self.sets and self.sets[name][0] != kind:
                raise ValueError("Set cannot be created: set with the same name already exists")
            self.sets.setdefault(name, (kind, set()))
        elif op in ("add", "del"):
            members = self._set(args[0])[1]
            ipaddress.IPv4Address(args[1])
            (members.add if op == "add" else members.discard)(args[1])
        elif op == "flush":
            self._set(args[0])[1].clear()
        elif op == "swap":
            first, second = self._set(args[0]), self._set(args[1])
            if first[0] != second[0]:
                raise ValueError("The sets cannot be swapped: their type does not match")
            self.sets[args[0]], self.sets[args[1]] = second, first
        elif op == "destroy":
            self._set(args[0])
            in_use = self._iptables is not None and args[0] in self._iptables.referenced_sets()
            if in_use or self.refuse_destroys > 0:
                self.refuse_destroys = max(0, self.refuse_destroys - 1)
                raise ValueError("Set cannot be destroyed: it is in use by a kernel component")
            del self.sets[args[0]]
        else:
            raise ValueError(f"Unknown command {op}")

    def _set(self, name: str) -> tuple[str, set[str]]:
        if name not in self.sets:
            raise ValueError("The set with the given name does not exist")
        return self.sets[name]
