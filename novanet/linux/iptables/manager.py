"""IptablesManager: nova's API, applied by changed chain instead of by whole dump.

Life cycle of a daemon::

    mgr = IptablesManager("compute", IptablesRunner(conf.iptables_backend))
    filt = mgr.ipv4["filter"]
    filt.add_chain("provider"); ...            # declare everything we want
    mgr.full_sync()                            # converge once (deletes stale chains)
    with mgr.defer_apply():                    # later: batch changes
        filt.add_chain("inst-10"); filt.set_rules("inst-10", [...])
        filt.add_rule("local", "-d 10.0.0.3/32 -j $inst-10")
    mgr.check_and_repair()                     # every iptables_check_interval seconds

Bookkeeping: for every table the manager remembers what it last wrote to
the kernel (``applied``) and, through the runner's change probe (canary.py),
the ruleset token at which the kernel was known to match. While the token is
unchanged, a change is planned from memory without reading the kernel
(plan_changes); otherwise, and on full_sync/check_and_repair, the tables are
read once and converged (plan_sync).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field

from oslo_config import cfg

from novanet.exception import ProcessExecutionError
from novanet.linux.iptables.model import IptablesTable
from novanet.linux.iptables.names import WRAPPED_BUILTINS, Naming, jump_target
from novanet.linux.iptables.parse import parse_save
from novanet.linux.iptables.plan import Plan, plan_changes, plan_sync
from novanet.linux.iptables.runner import IptablesRunner, Runner

LOG = logging.getLogger(__name__)
_MAX_VERIFIED = 200_000


@dataclass
class _Applied:
    """What we believe the kernel holds of ours in one table."""

    chains: dict[str, list[str]] = field(default_factory=dict)
    shared: dict[str, list[str]] = field(default_factory=dict)
    needs_sync: bool = True


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
        self._lock = threading.RLock()
        self._aliases: dict[str, str] = {}
        # Rule texts seen in the kernel exactly as the model spells them: a
        # chain rewritten with only such rules needs no read-back.
        self._verified: set[str] = set()
        self.ipv4: dict[str, IptablesTable] = {
            name: IptablesTable(name, self.naming, self._lock, self._aliases) for name in tables
        }
        self._applied = {name: _Applied() for name in tables}
        self._defer_depth = 0
        self._clean: Hashable | None = None
        self._authoritative = False
        self._checks = 0
        for table in self.ipv4.values():
            self._declare_defaults(table)

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
            self._authoritative = True
            report = self._sync(self.runner.token(), list(self.ipv4), verify=True)
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
            if read:
                for line in report:
                    LOG.warning("iptables repair: %s", line)
                return report
            self._checks += 1
            token = self.runner.token()
            periodic = (
                self.full_check_every > 0
                and self._checks % self.full_check_every == 0
                and not self.runner.token_exact()
            )
            quiet = token is not None and token == self._clean
            if quiet and not (force or periodic):
                return []
            report = self._sync(token, list(self.ipv4), verify=True)
            for line in report:
                LOG.warning("iptables repair: %s", line)
            return report

    def close(self) -> None:
        self.runner.close()

    # -- internals ------------------------------------------------------------

    def _declare_defaults(self, table: IptablesTable) -> None:
        """The wrapped built-ins, local/snat chains and the shared jumps, as nova."""
        naming = self.naming
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

    def _apply_locked(self) -> tuple[list[str], bool]:
        """Apply pending changes; returns (what was done, whether the tables were read)."""
        names = [n for n, t in self.ipv4.items() if t.has_pending() or self._applied[n].needs_sync]
        if not names:
            return [], False
        before = self.runner.token()
        if before is not None and before != self._clean:
            # Somebody else committed since our last write: our memory of
            # the kernel may be stale. Read and converge every table.
            return self._sync(before, list(self.ipv4), verify=False), True
        report: list[str] = []
        restores = 0
        read = False
        for name in names:
            table, applied = self.ipv4[name], self._applied[name]
            changed, shared_changed = table.pending()
            if applied.needs_sync or shared_changed:
                # Our rules in shared chains sit among other daemons' rules:
                # their positions need a fresh read.
                restores += self._sync_table(name, report)[0]
                read = True
                continue
            plan = plan_changes(name, table.owned(), applied.chains, changed)
            restores += self._run_plan(plan, report)
            for chain in changed:
                if chain in table.owned():
                    applied.chains[chain] = list(table.owned()[chain])
                else:
                    applied.chains.pop(chain, None)
            table.clear_pending(changed, shared=False)
        self._settle(before, restores)
        return report, read

    def _sync(self, before: Hashable | None, names: list[str], verify: bool) -> list[str]:
        report: list[str] = []
        restores = 0
        unverified: list[str] = []
        for name in names:
            count, written = self._sync_table(name, report)
            restores += count
            owned = self.ipv4[name].owned()
            if any(rule not in self._verified for c in written for rule in owned.get(c, ())):
                unverified.append(name)
        self._settle(before, restores)
        if verify and unverified and self._clean is not None:
            self._learn_spellings(unverified)
        return report

    def _sync_table(self, name: str, report: list[str]) -> tuple[int, list[str]]:
        """Read one table and converge it; returns (restores run, chains written)."""
        table, applied = self.ipv4[name], self._applied[name]
        for attempt in (1, 2):
            dump = parse_save(self.runner.save(name), name)
            plan = plan_sync(
                dump,
                table.owned(),
                table.shared(),
                applied.shared,
                self.naming,
                table.builtins,
                remove_stale=self._authoritative,
            )
            try:
                count = self._run_plan(plan, report)
                break
            except ProcessExecutionError:
                # Another daemon sharing the table (novanet-network and
                # novanet-metadata both create nova-filter-top) may have
                # written between our read and our restore: read again once.
                if attempt == 2:
                    raise
                LOG.info("iptables %s changed while we planned; reading it again", name)
        if len(self._verified) > _MAX_VERIFIED:
            self._verified.clear()
        for chain, rules in table.owned().items():
            if dump.chains.get(chain) == rules:
                self._verified.update(rules)  # iptables prints these exactly so
        applied.chains = {chain: list(rules) for chain, rules in table.owned().items()}
        applied.shared = {chain: list(rules) for chain, rules in table.shared().items()}
        applied.needs_sync = False
        table.clear_pending()
        return count, plan.written

    def _run_plan(self, plan: Plan, report: list[str]) -> int:
        report.extend(f"{plan.table}: {line}" for line in plan.report)
        if plan.empty():
            return 0
        self._check_targets(plan)
        try:
            self.runner.restore(plan.table, plan.render())
        except Exception:
            self._applied[plan.table].needs_sync = True
            self._clean = None
            raise
        return 1

    def _check_targets(self, plan: Plan) -> None:
        """Refuse, before touching the kernel, jumps to chains of ours we do not define.

        Only the rules this plan writes are looked at: adding one instance
        must not scan the 5,000 rules of nova-compute-local.
        """
        owned = self.ipv4[plan.table].owned()
        for line in plan.rule_ops + plan.shared_ops:
            if line.startswith("-D "):
                continue
            target = jump_target(line)
            if target is not None and self.naming.owns(target) and target not in owned:
                self._applied[plan.table].needs_sync = True
                raise ValueError(
                    f"iptables {plan.table}: rule {line!r} jumps to {target}, "
                    "which this manager does not define (add_chain it first)"
                )

    def _settle(self, before: Hashable | None, restores: int) -> None:
        """Remember the token at which the kernel matches our bookkeeping."""
        after = self.runner.token() if restores else before
        if before is None or after is None:
            self._clean = None
        elif restores == 0 or self.runner.own_commits(before, after, restores):
            self._clean = after
        else:
            self._clean = None

    def _learn_spellings(self, tables: list[str]) -> None:
        """Adopt the kernel's text for rules our normaliser spelled differently.

        Without this, a rule iptables prints in a way normalise.py does not
        predict would look changed on every check and be rewritten forever.
        Only done when nobody else wrote since our restore, so the difference
        can only be iptables' own spelling.
        """
        token = self._clean
        dumps = {name: parse_save(self.runner.save(name), name) for name in tables}
        if self.runner.token() != token:
            self._clean = None
            return
        for name, dump in dumps.items():
            table, applied = self.ipv4[name], self._applied[name]
            for chain, rules in table.owned().items():
                kernel = dump.chains.get(chain)
                if kernel is None or kernel == rules or len(kernel) != len(rules):
                    continue
                for index, (mine, theirs) in enumerate(zip(rules, kernel, strict=True)):
                    if mine != theirs:
                        LOG.warning(
                            "iptables prints rule %r of %s as %r; using its spelling",
                            mine,
                            chain,
                            theirs,
                        )
                        self._aliases[mine] = theirs
                        table.adopt_spelling(chain, index, theirs)
                self._verified.update(rules)
                applied.chains[chain] = list(rules)
