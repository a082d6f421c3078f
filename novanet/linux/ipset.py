"""ipsets of the compute agent: planned as text, applied by one ``ipset restore``.

Why the ``ipset`` program and not pyroute2's ``IPSet`` (netlink): every
subprocess of novanet goes through one chokepoint
(:func:`novanet.linux.processutils.execute`) whose errors name the command
and its stderr; one ``ipset -exist restore`` applies a whole batch (sets
created, members added and deleted) in one process of ~2 ms, which keeps a
membership change far below its 20 ms budget (BENCHMARKS.md); the restore
text is plain data a stateful fake parses (novanet/linux/fakes/ipset.py);
and pyroute2 under eventlet has namespace pitfalls (PLATFORM.md) that the
program does not. ``ipset save`` reads sets back in the same format.

Membership changes are ``add``/``del`` of single addresses: each is atomic
in the kernel, and every intermediate state is a mix of the old and the new
membership, never an empty or missing set: no moment in which a rule that
names the set matches more than either. A set of ours whose type is not
``hash:ip`` (made by hand) is destroyed and made again: ``swap`` refuses
sets of different types, and no rule can name it (the kernel refuses to
destroy a set in use, so ours never got replaced under a rule). A set is
destroyed only after the iptables rules naming it are gone.

``-exist`` makes the batch idempotent (create of an existing set of the same
type, add of a present member, del of an absent one are not errors), so a
batch planned from a view a moment old still applies.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from novanet.exception import ProcessExecutionError
from novanet.linux import processutils

LOG = logging.getLogger(__name__)

TYPE = "hash:ip"
# Waits before each retry of a destroy refused while the kernel frees the
# rules that named the set (see IpsetManager._destroy); None: give up (the
# periodic check removes it later).
RETRY_DELAYS: tuple[float | None, ...] = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, None)
CREATE_OPTIONS = "family inet hashsize 1024 maxelem 65536"


@dataclass(frozen=True)
class KernelSet:
    type: str
    members: frozenset[str]


class Runner(Protocol):
    def save(self) -> str: ...

    def restore(self, text: str) -> None: ...


class IpsetRunner:
    """The real ipset program (in the agent's own network namespace)."""

    def save(self) -> str:
        try:
            return processutils.execute(["ipset", "save"], log_errors=False)[0]
        except ProcessExecutionError as exc:
            if exc.returncode is None:  # not installed: no set can exist
                LOG.debug("no ipset program: %s", exc)
                return ""
            raise

    def restore(self, text: str) -> None:
        processutils.execute(["ipset", "-exist", "restore"], input=text)


def parse_save(text: str, owned: re.Pattern[str]) -> dict[str, KernelSet]:
    """``ipset save`` output -> the owned sets with their type and members."""
    types: dict[str, str] = {}
    members: dict[str, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "create" and owned.match(parts[1]):
            types[parts[1]] = parts[2]
            members[parts[1]] = set()
        elif len(parts) >= 3 and parts[0] == "add" and parts[1] in members:
            members[parts[1]].add(parts[2])
    return {name: KernelSet(types[name], frozenset(members[name])) for name in types}


@dataclass(frozen=True)
class SetPlan:
    before: str  # before the iptables rules that name the sets: create, fill
    after: str  # after those rules are gone: destroy the stale sets
    changed: tuple[str, ...]  # the sets created, filled or destroyed (for the log)

    def __bool__(self) -> bool:
        return bool(self.before or self.after)


def plan_sets(
    wanted: Mapping[str, frozenset[str]],
    present: Mapping[str, KernelSet],
    remove_stale: bool = True,
) -> SetPlan:
    """The restore text bringing ``present`` (owned sets only) to ``wanted``: O(changes)."""
    before: list[str] = []
    changed: list[str] = []
    for name, addresses in wanted.items():
        have = present.get(name)
        if have is None:
            before.append(f"create {name} {TYPE} {CREATE_OPTIONS}")
            before += [f"add {name} {ip}" for ip in sorted(addresses)]
        elif have.type != TYPE:
            # Made by hand with another type (swap needs equal types): remade.
            before += [f"destroy {name}", f"create {name} {TYPE} {CREATE_OPTIONS}"]
            before += [f"add {name} {ip}" for ip in sorted(addresses)]
        elif have.members != addresses:
            before += [f"add {name} {ip}" for ip in sorted(addresses - have.members)]
            before += [f"del {name} {ip}" for ip in sorted(have.members - addresses)]
        else:
            continue
        changed.append(name)
    after: list[str] = []
    if remove_stale:
        for name in sorted(set(present) - set(wanted)):
            after.append(f"destroy {name}")
            changed.append(name)
    return SetPlan(_text(before), _text(after), tuple(changed))


def _text(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


class IpsetManager:
    """The agent's sets: a model of what the kernel holds, changed by plans.

    The model is read from the kernel once (:meth:`load`) and kept as
    applied, so a membership change costs its own few lines, not a read of
    every set; :meth:`check` reads the kernel again and repairs drift.
    """

    def __init__(
        self,
        runner: Runner,
        owned: re.Pattern[str],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.runner = runner
        self._sleep = sleep
        self.owned = owned
        self._present: dict[str, KernelSet] | None = None
        self._lock = threading.Lock()

    def present(self) -> dict[str, KernelSet]:
        with self._lock:
            return dict(self._load())

    def _load(self) -> dict[str, KernelSet]:
        if self._present is None:
            self._present = parse_save(self.runner.save(), self.owned)
        return self._present

    def ensure(self, wanted: Mapping[str, frozenset[str]]) -> SetPlan:
        """Create and fill the sets of ``wanted``; stale ones stay (see :meth:`prune`)."""
        with self._lock:
            plan = plan_sets(wanted, self._load(), remove_stale=False)
            if plan.before:
                self._run(plan.before)
                for name, members in wanted.items():
                    self._load()[name] = KernelSet(TYPE, members)
            return plan

    def prune(self, wanted: Mapping[str, frozenset[str]]) -> SetPlan:
        """Destroy owned sets not in ``wanted`` (call once no rule names them)."""
        with self._lock:
            present = self._load()
            stale = {name: present[name] for name in present if name not in wanted}
            plan = plan_sets({}, stale)
            if plan.after:
                try:
                    self._destroy(plan.after)
                finally:
                    self._present = None  # reread: a destroy may have been refused
            return plan

    def _destroy(self, text: str) -> None:
        # nf_tables quirk: a rule deleted by a commit is freed by a deferred
        # work item (nf_tables_trans_destroy_work), and only then does its
        # `-m set` match drop its reference: a destroy right after the
        # iptables-restore that removed the last rule naming the set can be
        # refused ("in use by a kernel component") for a few milliseconds.
        for delay in RETRY_DELAYS:
            try:
                self.runner.restore(text)
                return
            except ProcessExecutionError as exc:
                if "in use" not in exc.stderr or delay is None:
                    raise
            self._sleep(delay)

    def check(self, wanted: Mapping[str, frozenset[str]]) -> SetPlan:
        """Read the kernel again and repair: missing sets, wrong members, wrong type."""
        with self._lock:
            self._present = None
            plan = plan_sets(wanted, self._load(), remove_stale=False)
            if plan.before:
                LOG.warning("ipsets changed by someone else; repairing %s", ", ".join(plan.changed))
                try:
                    self._run(plan.before)
                finally:
                    self._present = None
            return plan

    def drift(self, wanted: Mapping[str, frozenset[str]]) -> list[str]:
        """What :meth:`check` would repair now, without writing (diagnose's dry run)."""
        present = parse_save(self.runner.save(), self.owned)
        lines = []
        for name, addresses in sorted(wanted.items()):
            have = present.get(name)
            if have is None:
                lines.append(f"ipset {name} is missing")
            elif have.type != TYPE:
                lines.append(f"ipset {name} has type {have.type}, not {TYPE}")
            else:
                for ip in sorted(addresses - have.members):
                    lines.append(f"ipset {name} lacks {ip}")
                for ip in sorted(have.members - addresses):
                    lines.append(f"ipset {name} holds {ip}, which is not a member")
        return lines

    def _run(self, text: str) -> None:
        try:
            self.runner.restore(text)
        except Exception:
            self._present = None  # the kernel may hold part of the batch
            raise
