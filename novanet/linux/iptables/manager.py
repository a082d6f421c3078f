"""IptablesManager: nova's API over desired-state tables, applied by one small applier.

Life cycle of a daemon::

    mgr = IptablesManager("compute", IptablesRunner(conf.iptables_backend))
    filt = mgr.ipv4["filter"]
    filt.add_chain("provider"); ...            # declare everything we want
    mgr.full_sync()                            # converge once (deletes stale chains)
    with mgr.defer_apply():                    # later: batch changes
        filt.add_chain("inst-10"); filt.set_rules("inst-10", [...])
        filt.add_rule("local", "-d 10.0.0.3/32 -j $inst-10")
    mgr.check_and_repair()                     # every iptables_check_interval seconds

Design (as Calico's felix): ``mgr.ipv4[name]`` (model.py) is desired state
only, changed by callers of any thread. What the kernel holds is one
immutable KernelView per table (view.py), owned by this object alone.
Planning is pure (plan.py, sync.py, view.py); this module only sequences
it under one lock:

- apply: if the change probe (canary.py) still shows the token the view was
  settled at, plan the changed chains from the view (plan_changes: no read);
  otherwise read the table and converge (plan_sync). Deletions whose
  nf_tables handles are known go as one netlink batch (nftnl.py), anything
  else as one ``iptables-restore --noflush`` per table;
- the new view is swapped in only when the kernel accepted the plan; after
  a failure the table is read before the next write;
- full_sync / check_and_repair read and converge; after a sync that wrote
  rules never seen in a dump, the tables are read once more to learn how
  iptables spells them, and full_sync reads the handles of big chains
  (reread.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Hashable, Iterator, Sequence

from oslo_config import cfg

from novanet.exception import ProcessExecutionError
from novanet.linux.iptables.model import IptablesTable, declare_defaults
from novanet.linux.iptables.names import Naming
from novanet.linux.iptables.nftnl import HandleError, StaleGeneration
from novanet.linux.iptables.parse import parse_save
from novanet.linux.iptables.plan import Plan, plan_changes
from novanet.linux.iptables.reread import read_handles, reread_spellings
from novanet.linux.iptables.runner import IptablesRunner, Runner
from novanet.linux.iptables.sync import plan_sync
from novanet.linux.iptables.view import (
    Changes,
    Desired,
    KernelView,
    RuleHandle,
    adopt_handles,
    forget_handles,
    learn_handles,
    settle,
)

LOG = logging.getLogger(__name__)
# Restores appending more rules than this learn no handles from the kernel.
LEARN_AT_MOST = 500


class IptablesManager:
    """The iptables rules of one binary (``network``, ``compute``, ``api``).

    :param binary: names the wrapped chains (``<prefix>-<binary>-*``)
    :param runner: an IptablesRunner (or the fake)
    :param prefix: iptables_prefix (``nova`` keeps the seed's names)
    :param tables: tables to manage (filter and nat; mangle and raw possible)
    :param full_check_every: with an inexact change probe (legacy), read the
        tables on every Nth check_and_repair() anyway (0: never)
    :param top_regex: iptables_top_regex (other programs' rules kept above ours)
    :param bottom_regex: iptables_bottom_regex (see Naming.floor)
    """

    def __init__(
        self,
        binary: str,
        runner: Runner,
        *,
        prefix: str = "nova",
        tables: Sequence[str] = ("filter", "nat"),
        full_check_every: int = 6,
        top_regex: str = "",
        bottom_regex: str = "",
    ) -> None:
        self.naming = Naming(prefix, binary, top_regex, bottom_regex)
        self.runner = runner
        self.full_check_every = full_check_every
        self.ipv4: dict[str, IptablesTable] = {
            name: IptablesTable(name, self.naming) for name in tables
        }
        self._views = {name: KernelView() for name in tables}
        self._lock = threading.RLock()
        self._defer_depth = 0
        # Set by full_sync: the callers declared everything, so chains of
        # this binary that the model lacks are stale and get deleted.
        self._complete = False
        runner.watch(list(tables))
        for table in self.ipv4.values():
            declare_defaults(table, self.naming)

    @classmethod
    def from_conf(
        cls,
        conf: cfg.ConfigOpts,
        binary: str,
        runner: Runner | None = None,
        tables: Sequence[str] = ("filter", "nat"),
    ) -> IptablesManager:
        """A manager configured by iptables_prefix / iptables_backend / iptables_*_regex."""
        if runner is None:
            runner = IptablesRunner(conf.iptables_backend, tables=tables)
        return cls(
            binary,
            runner,
            prefix=conf.iptables_prefix,
            tables=tables,
            top_regex=conf.iptables_top_regex,
            bottom_regex=conf.iptables_bottom_regex,
        )

    def view(self, table: str) -> KernelView:
        """What the manager knows of ``table`` in the kernel (an immutable value)."""
        with self._lock:
            return self._views[table]

    # -- applying -------------------------------------------------------------

    def apply(self) -> list[str]:
        """Send pending model changes to the kernel (no-op inside defer_apply).

        Returns what was done. Raises ProcessExecutionError (IptablesRestoreError
        naming the refused line) if iptables-restore fails; the table is then
        re-read and rewritten on the next apply/check.
        """
        with self._lock:
            if self._defer_depth:
                return []
            return self._apply_locked()[0]

    @contextlib.contextmanager
    def defer_apply(self) -> Iterator[None]:
        """Batch changes: one apply when the outermost block ends."""
        with self._lock:
            self._defer_depth += 1
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            with self._lock:
                self._defer_depth -= 1
                if self._defer_depth == 0:
                    try:
                        self._apply_locked()
                    except Exception:
                        if not failed:
                            raise
                        LOG.exception("iptables apply after a failed batch")

    def full_sync(self) -> list[str]:
        """Converge the kernel to the model once, after everything was declared.

        From then on the model is authoritative: chains of this binary the
        model does not have (``nova-compute-inst-7`` of a deleted instance) are
        deleted, here and by later checks.
        """
        with self._lock:
            self._complete = True
            token = self.runner.token()
            trusted = all(view.current(token) for view in self._views.values())
            report = self._sync(token, list(self.ipv4), trusted)
            self._views = read_handles(self.runner, self._views)
            for line in report:
                LOG.info("iptables full sync: %s", line)
            return report

    def check_and_repair(self, force: bool = False) -> list[str]:
        """Repair what someone else changed in our chains; returns what was repaired.

        Costs one change probe (well under 1 ms) when nothing changed since
        our last write; otherwise one iptables-save per table.
        """
        with self._lock:
            if self._defer_depth:
                return []
            # The model may hold changes of a caller between two calls (a new
            # chain whose rules come next): those are not drift. Apply them
            # first; if that had to read the tables, it already repaired.
            report, read = self._apply_locked()
            if not read:
                token = self.runner.token()
                views = self._views.values()
                periodic = (
                    self.full_check_every > 0
                    and not self.runner.token_exact()
                    and any(v.unread_checks + 1 >= self.full_check_every for v in views)
                )
                quiet = token is not None and all(view.current(token) for view in views)
                if quiet and not (force or periodic):
                    self._views = {
                        name: view.replace(unread_checks=view.unread_checks + 1)
                        for name, view in self._views.items()
                    }
                    return []
                report = self._sync(token, list(self.ipv4), trusted=quiet)
            for line in report:
                LOG.warning("iptables repair: %s", line)
            return report

    def drift(self) -> list[str]:
        """What check_and_repair would repair now, without writing (diagnose's dry run).

        Reads every table and plans as the repair does, against the model as
        declared; pending declarations count as drift only until applied.
        """
        with self._lock:
            report: list[str] = []
            for name, table in self.ipv4.items():
                dump = parse_save(self.runner.save(name), name)
                plan, _ = plan_sync(
                    table.snapshot(), self._views[name], dump, self.naming, self._complete
                )
                report.extend(f"{name}: {line}" for line in plan.report)
            return report

    def close(self) -> None:
        self.runner.close()

    # -- internals ------------------------------------------------------------

    def _apply_locked(self) -> tuple[list[str], bool]:
        """Apply pending changes; returns (what was done, whether tables were read)."""
        changes = {name: table.take_changes() for name, table in self.ipv4.items()}
        if not any(changes.values()) and all(v.synced for v in self._views.values()):
            return [], False
        report: list[str] = []
        if self._guarded_deletion(changes, report):
            return report, False
        before = self.runner.token()
        restores = 0
        read = False
        for name in self.ipv4:
            with self._failing_unsyncs(name):
                trusted = self._views[name].current(before)
                if trusted and not changes[name].shared:
                    if not changes[name].chains:
                        continue
                    done = self._change(name, changes[name], report)
                    if done is not None:
                        restores += done
                        continue
                    trusted = False
                # Somebody else committed since our last write (or our last
                # write failed, or our rules in shared chains changed, whose
                # positions among other daemons' rules need a fresh read).
                restores += self._sync_table(name, report, trusted)[0]
                read = True
        self._settle(before, restores)
        return report, read

    def _guarded_deletion(self, changes: dict[str, Changes], report: list[str]) -> bool:
        """Apply a change that only deletes rules of known handles, without any probe.

        The batch carries the token all views were settled at, and nf_tables
        refuses it if anybody committed since: the probe would say nothing
        more. Returns False (nothing done) when the normal path must run.
        """
        changed = [name for name, table_changes in changes.items() if table_changes]
        tokens = {view.token for view in self._views.values()}
        if len(changed) != 1 or len(tokens) != 1 or None in tokens:
            return False
        name = changed[0]
        view = self._views[name]
        if not view.handles or changes[name].shared:
            return False
        if not all(v.synced for v in self._views.values()):
            return False
        for chain, rules in changes[name].chains.items():
            if rules is not None and len(rules) >= len(view.chains.get(chain, ())):
                return False  # something is added: not for this path
        with self._failing_unsyncs(name):
            plan, new = plan_changes(changes[name], view, self.naming)
        if plan.by_handle is None:
            return False
        try:
            after = self.runner.delete_by_handle(name, plan.by_handle, view.token)
        except StaleGeneration:
            return False  # the normal path probes, then reads
        except HandleError as exc:
            LOG.info("iptables %s: %s; reading the handles again", name, exc)
            self._views[name] = forget_handles(view)
            return False
        self._views[name] = new
        self._views = {other: settle(v, after) for other, v in self._views.items()}
        report.extend(f"{name}: {line}" for line in plan.report)
        return True

    def _change(self, name: str, changes: Changes, report: list[str]) -> int | None:
        """The change path for one table: restores run, or None if it must be read."""
        view = self._views[name]
        plan, new = plan_changes(changes, view, self.naming)
        if plan.wants_handles and self.runner.handles():
            for chain in plan.wants_handles:
                dumped = self.runner.rule_handles(name, chain)
                if dumped is not None:
                    view = adopt_handles(view, chain, dumped)
            self._views[name] = view
            plan, new = plan_changes(changes, view, self.naming)
        if plan.by_handle is not None:
            try:
                self.runner.delete_by_handle(name, plan.by_handle, view.token)
            except StaleGeneration:
                LOG.info("iptables %s changed since our last write; reading it", name)
                return None
            except HandleError as exc:
                LOG.warning("iptables %s: %s; using iptables-restore instead", name, exc)
                plan, new = plan_changes(changes, forget_handles(view), self.naming)
            else:
                report.extend(f"{name}: {line}" for line in plan.report)
                self._views[name] = new
                return 1
        added = self._restore(plan, report)
        self._views[name] = learn_handles(new, plan.appends, added)
        return 0 if plan.empty() else 1

    def _sync(self, before: Hashable | None, names: list[str], trusted: bool) -> list[str]:
        """Read and converge ``names``; then learn spellings of rules never seen in a dump."""
        report: list[str] = []
        restores = 0
        unverified: dict[str, Desired] = {}
        for name in names:
            with self._failing_unsyncs(name):
                count, written, desired = self._sync_table(name, report, trusted)
            restores += count
            view = self._views[name]
            if any(rule not in view.verified for c in written for rule in view.chains.get(c, ())):
                unverified[name] = desired
        self._settle(before, restores)
        if unverified:
            views = reread_spellings(self.runner, self._views, unverified)
            if views is None:  # somebody wrote meanwhile
                self._settle(None, 0)
            else:
                self._views = views
        return report

    def _sync_table(
        self, name: str, report: list[str], trusted: bool
    ) -> tuple[int, list[str], Desired]:
        """Read one table and converge it; returns (restores run, chains written, desired)."""
        table, view = self.ipv4[name], self._views[name]
        if not trusted:
            view = forget_handles(view)  # a re-added rule has a new handle
        table.take_changes()  # the snapshot below covers them
        for attempt in (1, 2):
            desired = table.snapshot()
            dump = parse_save(self.runner.save(name), name)
            plan, new = plan_sync(desired, view, dump, self.naming, self._complete)
            try:
                added = self._restore(plan, report)
                break
            except ProcessExecutionError:
                # Another daemon sharing the table (novanet-network and
                # novanet-metadata both create nova-filter-top) may have
                # written between our read and our restore: read again once.
                if attempt == 2:
                    raise
                LOG.info("iptables %s changed while we planned; reading it again", name)
        self._views[name] = learn_handles(new, plan.appends, added)
        return (0 if plan.empty() else 1), plan.written, desired

    def _restore(self, plan: Plan, report: list[str]) -> Sequence[RuleHandle] | None:
        report.extend(f"{plan.table}: {line}" for line in plan.report)
        if plan.empty():
            return None
        # The kernel's report of thousands of new rules would overflow the
        # socket anyway (and cost it time to build): handles of a chain
        # rewritten whole are dumped once, when a deletion needs them.
        appended = sum(len(rules) for _, rules in plan.appends.values())
        return self.runner.restore(plan.table, plan.render(), learn=appended <= LEARN_AT_MOST)

    @contextlib.contextmanager
    def _failing_unsyncs(self, name: str) -> Iterator[None]:
        """A refused or failed write leaves the table to be read before the next one."""
        try:
            yield
        except BaseException:
            self._views[name] = self._views[name].replace(synced=False)
            raise

    def _settle(self, before: Hashable | None, restores: int) -> None:
        """Record the token at which the kernel matches the views, if only we wrote."""
        after = self.runner.token() if restores else before
        own = (
            before is not None
            and after is not None
            and (restores == 0 or self.runner.own_commits(before, after, restores))
        )
        self._views = {
            name: settle(view, after if own else None) for name, view in self._views.items()
        }


_VERBS = {"created": "create", "rewrote": "rewrite", "edited": "edit", "deleted": "delete"}


def drift_item(line: str) -> tuple[str, str]:
    """A line of :meth:`IptablesManager.drift` as (object, problem) for diagnose.

    ``filter: rewrote chain nova-compute-inst-1 (0 rules in the kernel, 6 wanted)``
    -> (``iptables filter nova-compute-inst-1``, ``not as novanet declared it: the
    repair would rewrite chain ... (0 rules in the kernel, 6 wanted)``).
    """
    table, _, rest = line.partition(": ")
    words = rest.split()
    chain = ""
    for marker in ("chain", "of"):  # "rewrote chain X ...", "put our rules of FORWARD ..."
        if marker in words[:-1]:
            chain = words[words.index(marker) + 1]
            break
    if words and words[0] in _VERBS:
        rest = " ".join([_VERBS[words[0]], *words[1:]])
    return (
        f"iptables {table} {chain}".rstrip(),
        f"not as novanet declared it: the repair would {rest}",
    )
