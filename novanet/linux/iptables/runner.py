"""Run iptables-save / iptables-restore for the manager, and delete by nf_tables handle.

The manager talks to a :class:`Runner`; :class:`IptablesRunner` is the real
one (iptables through processutils, the change probe and rule handles over
netlink: canary.py, nftnl.py), ``novanet.linux.fakes.iptables.FakeIptables``
the stateful double used by the unit tests.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Hashable, Sequence
from typing import Protocol

from novanet.exception import ProcessExecutionError
from novanet.linux import processutils
from novanet.linux.iptables.canary import LegacyTableShape, NftGeneration
from novanet.linux.iptables.nftnl import HandleError, NftRules, StaleGeneration
from novanet.linux.iptables.plan import HandleBatch
from novanet.linux.iptables.view import RuleHandle

LOG = logging.getLogger(__name__)

BACKENDS = ("auto", "nft", "legacy")
_COMMANDS = {
    "auto": ("iptables-save", "iptables-restore"),
    "nft": ("iptables-nft-save", "iptables-nft-restore"),
    "legacy": ("iptables-legacy-save", "iptables-legacy-restore"),
}
# "iptables-restore: line 5 failed", "Error occurred at line: 5",
# "line 3: CHAIN_DEL failed (Device or resource busy): chain x"
_LINE_RES = (
    re.compile(r"line (\d+) failed"),
    re.compile(r"Error occurred at line: (\d+)"),
    re.compile(r"^line (\d+): ", re.MULTILINE),
)
_MISSING_CHAIN_RE = re.compile(r"Chain '([^']+)' does not exist")

Execute = Callable[..., tuple[str, str]]


class Runner(Protocol):
    """What the manager needs from iptables."""

    backend: str

    def watch(self, tables: Sequence[str]) -> None:
        """The tables the manager manages (the legacy change probe looks at those)."""

    def save(self, table: str) -> str:
        """``iptables-save -t TABLE`` output."""

    def restore(self, table: str, text: str, learn: bool = True) -> Sequence[RuleHandle] | None:
        """``iptables-restore -w --noflush`` of ``text``; raises IptablesRestoreError.

        With ``learn``, returns the rules the kernel reported added, in order,
        when it is certain they are exactly this restore's (None otherwise).
        """

    def token(self) -> Hashable | None:
        """A cheap fingerprint of the ruleset, or None when there is none."""

    def own_commits(self, before: Hashable, after: Hashable, count: int) -> bool:
        """True if ``after`` can only be ``before`` plus our ``count`` restores."""

    def token_exact(self) -> bool:
        """True if token() catches every change (else the manager also reads)."""

    def handles(self) -> bool:
        """True if rule_handles() and delete_by_handle() work (nft with netlink)."""

    def rule_handles(self, table: str, chain: str) -> Sequence[RuleHandle] | None:
        """The rules of ``chain`` with their handles, in order (None: not available)."""

    def delete_by_handle(self, table: str, batch: HandleBatch, token: Hashable) -> Hashable:
        """One transaction, refused (StaleGeneration) if anybody committed since ``token``.

        Returns the token after it (the batch was the next commit); raises
        HandleError if nf_tables refused it for another reason.
        """

    def close(self) -> None:
        """Release sockets."""


class IptablesRestoreError(ProcessExecutionError):
    """iptables-restore refused our input; ``line``/``rule`` say where."""

    def __init__(self, error: ProcessExecutionError, line: int | None, rule: str | None) -> None:
        reason = _reason(error.stderr or error.stdout)
        where = f"line {line}" if line is not None else "unknown line"
        description = f"{where} ({rule!r}) failed: {reason}" if rule else f"{where}: {reason}"
        super().__init__(error.cmd, error.returncode, error.stdout, error.stderr, description)
        self.line = line
        self.rule = rule


def restore_error(error: ProcessExecutionError, text: str) -> IptablesRestoreError:
    """Name the input line iptables-restore choked on."""
    output = f"{error.stderr}\n{error.stdout}"
    lines = text.splitlines()
    number = None
    for pattern in _LINE_RES:
        match = pattern.search(output)
        if match:
            number = int(match.group(1))
            break
    rule = lines[number - 1] if number is not None and 0 < number <= len(lines) else None
    missing = _MISSING_CHAIN_RE.search(output)
    if missing and (rule is None or not rule.startswith("-")):
        # iptables-nft checks jump targets when it commits and then reports
        # the COMMIT line: point at the first rule that jumps there instead.
        for index, line in enumerate(lines, 1):
            if re.search(rf"\s-[jg] {re.escape(missing.group(1))}(\s|$)", line):
                number, rule = index, line
                break
    return IptablesRestoreError(error, number, rule)


def _reason(output: str) -> str:
    for line in output.splitlines():
        line = line.strip()
        if not line or line.startswith("Try `") or line.endswith("(nf_tables):"):
            continue
        line = re.sub(r"^iptables[\w-]*(: | v[\d.]+ \([\w_]+\): )", "", line)
        line = re.sub(r"^line \d+ failed:? ?", "", line)
        if line:
            return line
    return "no error message"


class IptablesRunner:
    """iptables-save/-restore of one backend, optionally inside a named netns.

    :param backend: ``nft`` (iptables-nft-*), ``legacy`` (iptables-legacy-*)
        or ``auto`` (whatever iptables-restore is; asked once via --version)
    :param netns: run in this named network namespace (``/run/netns/NAME``);
        None: the daemon's own namespace
    :param execute: the subprocess chokepoint (processutils.execute)
    :param tables: the tables the legacy change probe watches
    :param generation: the nf_tables generation probe to use with the nft
        backend, when the daemon shares it with another nf_tables writer
        (novanet/linux/nftables/generation.py); None: a probe of its own
    """

    def __init__(
        self,
        backend: str = "auto",
        netns: str | None = None,
        execute: Execute = processutils.execute,
        timeout: float = 120.0,
        tables: Sequence[str] = ("filter", "nat"),
        generation: NftGeneration | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"iptables backend {backend!r}: use one of {', '.join(BACKENDS)}")
        self.backend = backend
        self._netns = netns
        self._execute = execute
        self._timeout = timeout
        self._tables = tuple(tables)
        self._save_cmd, self._restore_cmd = _COMMANDS[backend]
        self._kernel_backend: str | None = None if backend == "auto" else backend
        self._canary: NftGeneration | LegacyTableShape | None = None
        self._generation = generation
        self._canary_failed = False
        self._nft: NftRules | None = None
        self._handles: bool | None = None

    @property
    def kernel_backend(self) -> str:
        """``nft`` or ``legacy``: what the commands really drive."""
        if self._kernel_backend is None:
            out, err = self._run([self._save_cmd, "--version"])
            self._kernel_backend = "legacy" if "(legacy)" in out + err else "nft"
        return self._kernel_backend

    def watch(self, tables: Sequence[str]) -> None:
        wanted = tuple(dict.fromkeys((*self._tables, *tables)))
        if wanted != self._tables:
            self._tables = wanted
            if isinstance(self._canary, LegacyTableShape):
                self._canary = LegacyTableShape(self._tables, self._netns)

    def save(self, table: str) -> str:
        out, _ = self._run([self._save_cmd, "-t", table])
        return out

    def restore(self, table: str, text: str, learn: bool = True) -> list[RuleHandle] | None:
        nft = self._nft if learn and self.handles() else None
        watching = False
        if nft is not None:
            try:
                nft.watch()
                watching = True
            except OSError as exc:
                LOG.info("cannot watch nf_tables notifications (%s)", exc)
        added: list[RuleHandle] | None = None
        try:
            # -w: wait for the xtables lock (legacy; nft ignores it). --noflush:
            # keep every chain the input does not declare (other programs' rules).
            self._run([self._restore_cmd, "-w", "--noflush"], input=text, log_errors=False)
        except ProcessExecutionError as exc:
            if exc.returncode is None:
                raise
            raise restore_error(exc, text) from None
        finally:
            if nft is not None and watching:
                try:
                    added = nft.added(table)
                except OSError as exc:
                    LOG.info("cannot read nf_tables notifications (%s)", exc)
        return added

    def handles(self) -> bool:
        if self._handles is None:
            canary = self._get_canary()
            token = self.token() if isinstance(canary, NftGeneration) else None
            if isinstance(token, int):
                self._nft = NftRules(self._netns)
                self._handles = self._nft.supported(self._genid(token))
                LOG.debug("nf_tables handles %s", "usable" if self._handles else "unusable")
            elif not isinstance(canary, NftGeneration):
                self._handles = False
            else:
                return False  # the probe failed this time: ask again later
        return self._handles

    def rule_handles(self, table: str, chain: str) -> list[RuleHandle] | None:
        if not self.handles() or self._nft is None:
            return None
        try:
            return self._nft.rules(table, chain)
        except OSError as exc:
            LOG.info("cannot read the rule handles of %s (%s)", chain, exc)
            return None

    def delete_by_handle(self, table: str, batch: HandleBatch, token: Hashable) -> Hashable:
        if self._nft is None or not isinstance(token, int):
            raise HandleError(0, "rule handles are not available")
        try:
            self._nft.delete(table, batch, self._genid(token))
        except (StaleGeneration, HandleError):
            raise
        except OSError as exc:
            raise HandleError(exc.errno or 0, str(exc)) from None
        # Accepted at generation ``token`` under nf_tables' commit mutex: our
        # batch was the very next commit.
        return (token + 1) & 0xFFFFFFFF

    def token(self) -> Hashable | None:
        canary = self._get_canary()
        if canary is None:
            return None
        try:
            return canary.token()
        except OSError as exc:
            LOG.warning("iptables change probe failed (%s): reading the tables instead", exc)
            return None

    def own_commits(self, before: Hashable, after: Hashable, count: int) -> bool:
        canary = self._get_canary()
        return canary is not None and canary.own_commits(before, after, count)

    def token_exact(self) -> bool:
        canary = self._get_canary()
        return canary is not None and canary.exact

    def close(self) -> None:
        if self._canary is not None:
            self._canary.close()
        if self._nft is not None:
            self._nft.close()

    def _genid(self, token: int) -> int:
        """The generation id behind a token (a shared probe hides other writers' commits)."""
        return self._canary.genid(token) if isinstance(self._canary, NftGeneration) else token

    def _get_canary(self) -> NftGeneration | LegacyTableShape | None:
        if self._canary is None and not self._canary_failed:
            try:
                if self.kernel_backend == "nft":
                    self._canary = self._generation or NftGeneration(self._netns)
                else:
                    self._canary = LegacyTableShape(self._tables, self._netns)
            except (OSError, ProcessExecutionError) as exc:
                LOG.warning("no iptables change probe (%s): checks read the tables", exc)
                self._canary_failed = True
        return self._canary

    def _run(self, cmd: Sequence[str], **kw: object) -> tuple[str, str]:
        argv = list(cmd)
        if self._netns is not None:
            # nsenter (util-linux) enters only the network namespace, which
            # is all iptables needs.
            argv = ["nsenter", f"--net=/run/netns/{self._netns}", *argv]
        return self._execute(argv, timeout=self._timeout, **kw)
