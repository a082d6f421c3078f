"""Evaluate a packet through iptables rules the way the kernel would.

Shared interface (2) of issue 15::

    ruleset = Ruleset.parse({"filter": text, "nat": text})   # iptables-save texts
    result = ruleset.evaluate("filter", "FORWARD", packet, EvalContext(...))

The rules are the ones actually in the kernel (``iptables-save``), not the
ones novanet meant to program, so a trace explains what the kernel does.
Rule numbers count from 1 per chain, as ``iptables -L --line-numbers`` shows,
and rule texts read as ``iptables -S`` prints them.

Where the evaluator meets a match or target it does not model, or a fact it
was not given, it stops with verdict UNKNOWN and says why ("cannot predict
past rule 3 of CHAIN: unknown match limit") instead of guessing. A rule whose
target cannot change the packet's fate (LOG, TRACE, CHECKSUM, no target) is
skipped even when its matches are unknown: either way the outcome is the same.

Pure: no kernel access; the caller gathers the texts, ipsets and addresses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from novanet.exception import NovanetError
from novanet.explain.iptables_rules import EvalContext, Rule, Unpredictable, parse_rule
from novanet.explain.packet import Packet
from novanet.linux.iptables.parse import parse_save

__all__ = ["BUILTIN_CHAINS", "ChainResult", "EvalContext", "EvalError", "Ruleset"]

BUILTIN_CHAINS: Final = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
_TERMINAL: Final = frozenset({"ACCEPT", "DROP", "REJECT"})
# Targets that leave the verdict alone and let the packet go on to the next rule.
_NO_EFFECT: Final = frozenset({"LOG", "NFLOG", "TRACE", "CHECKSUM"})
_NAT: Final = frozenset({"DNAT", "SNAT", "MASQUERADE", "REDIRECT"})
_MAX_STEPS: Final = 100_000  # the kernel refuses loops; a bound keeps odd input finite


class EvalError(NovanetError, ValueError):
    """The caller asked for a table or chain that is not a built-in one."""


@dataclass
class ChainResult:
    """The outcome of one built-in chain for one packet.

    ``chain``/``rule``/``rule_text`` name the deciding rule (``rule`` None:
    the built-in chain's policy, ``rule_text`` then ``-P CHAIN POLICY``);
    ``trail`` the jumps and gotos taken from the built-in chain down to it.
    ``nat`` the translation a nat-table rule chose: ``{"kind", "to"[, "port"]}``
    (``to`` is None for MASQUERADE and REDIRECT: the address of the out or in
    interface, which the caller knows). ``mark`` the packet's mark after the
    chain (MARK targets change it for the later rules and hooks).
    """

    verdict: str  # ACCEPT | DROP | REJECT | UNKNOWN
    table: str
    chain: str
    rule: int | None = None
    rule_text: str | None = None
    trail: list[tuple[str, int, str]] = field(default_factory=list)
    nat: dict[str, Any] | None = None
    unknown: str | None = None
    mark: int = 0


@dataclass
class _Table:
    chains: dict[str, list[Rule]]
    policies: dict[str, str]


@dataclass
class _Frame:
    chain: str
    index: int  # 0-based index of the next rule to look at
    trail_mark: int  # trail length to restore when this chain returns


class Ruleset:
    """Every table's chains, policies and parsed rules."""

    def __init__(self, tables: dict[str, _Table]) -> None:
        self._tables = tables

    @classmethod
    def parse(cls, texts: Mapping[str, str | None]) -> Ruleset:
        """Parse ``{table: iptables-save -t table text}``; a None or empty text is no table.

        Raises novanet.linux.iptables.parse.SaveParseError for lines that are
        not iptables-save output; rules themselves are never refused.
        """
        tables: dict[str, _Table] = {}
        for name, text in texts.items():
            if name not in BUILTIN_CHAINS:
                raise EvalError(f"unknown iptables table {name!r}")
            dump = parse_save(text or "", name)
            chains = {chain: [parse_rule(r) for r in rules] for chain, rules in dump.chains.items()}
            tables[name] = _Table(chains, dict(dump.policies))
        return cls(tables)

    def chains(self, table: str) -> dict[str, list[str]]:
        """The rule texts of every chain of ``table`` (empty if it is absent)."""
        found = self._tables.get(table)
        if found is None:
            return {}
        return {chain: [r.text for r in rules] for chain, rules in found.chains.items()}

    def evaluate(
        self, table: str, chain: str, packet: Packet, ctx: EvalContext | None = None
    ) -> ChainResult:
        """The verdict of built-in ``chain`` of ``table`` for ``packet``.

        A table or chain the kernel does not have (iptables-nft creates them
        on first use) lets the packet through: ACCEPT by an implicit policy.
        """
        if chain not in BUILTIN_CHAINS.get(table, ()):
            raise EvalError(f"{table} {chain} is not a built-in iptables chain")
        return _Walk(self._tables.get(table), table, packet, ctx or EvalContext()).run(chain)


class _Walk:
    """One packet's way through one table, from a built-in chain."""

    def __init__(self, table: _Table | None, name: str, packet: Packet, ctx: EvalContext):
        self.table = table or _Table({}, {})
        self.name = name
        self.packet = packet
        self.ctx = ctx
        self.trail: list[tuple[str, int, str]] = []
        self.builtin = ""

    def run(self, builtin: str) -> ChainResult:
        self.builtin = builtin
        stack = [_Frame(builtin, 0, 0)]
        for _ in range(_MAX_STEPS):
            frame = stack[-1]
            rules = self.table.chains.get(frame.chain, [])
            if frame.index >= len(rules):
                if len(stack) == 1:
                    return self._policy()
                self._return(stack)
                continue
            rule, number = rules[frame.index], frame.index + 1
            frame.index += 1
            text = f"-A {frame.chain} {rule.text}".rstrip()
            try:
                matched = _matches(rule, self.packet, self.ctx)
            except Unpredictable as exc:
                if rule.target in _NO_EFFECT or rule.target is None:
                    continue  # matched or not, the outcome is the same
                return self._unknown(frame.chain, number, text, str(exc))
            if not matched or rule.target is None:
                continue
            outcome = self._target(stack, frame, rule, number, text)
            if outcome is not None:
                return outcome
        return self._unknown(builtin, None, None, f"jumps more than {_MAX_STEPS} times (a loop)")

    def _target(
        self, stack: list[_Frame], frame: _Frame, rule: Rule, number: int, text: str
    ) -> ChainResult | None:
        """Apply the target; a result when the walk ends here, None to go on."""
        target = rule.target or ""
        if target in _TERMINAL:
            return self._result(target, frame.chain, number, text)
        if target == "RETURN":
            if len(stack) == 1:
                return self._policy()
            self._return(stack)
            return None
        if target in self.table.chains:
            self.trail.append((frame.chain, number, text))
            if rule.goto:
                stack[-1] = _Frame(target, 0, frame.trail_mark)
            else:
                stack.append(_Frame(target, 0, len(self.trail) - 1))
            return None
        if target in _NO_EFFECT:
            return None
        try:
            if target in ("MARK", "CONNMARK"):
                self._mark(target, rule.target_args)
                return None
            if target in _NAT:
                result = self._result("ACCEPT", frame.chain, number, text)
                result.nat = _nat(target, rule.target_args)
                return result
        except Unpredictable as exc:
            return self._unknown(frame.chain, number, text, str(exc))
        return self._unknown(frame.chain, number, text, f"unknown target {target}")

    def _mark(self, target: str, args: tuple[str, ...]) -> None:
        if target == "CONNMARK":
            if "--restore-mark" in args:
                raise Unpredictable("CONNMARK --restore-mark: the connection's mark is not known")
            return  # saving or setting the connection's mark leaves the packet's alone
        option, value = (*args, "", "")[:2]
        bits, _, mask_text = value.partition("/")
        try:
            v = int(bits, 0)
            m = int(mask_text, 0) if mask_text else 0xFFFFFFFF
        except ValueError:
            raise Unpredictable(f"MARK {option} {value} not understood") from None
        mark = self.packet.mark
        if option == "--set-xmark":
            mark = (mark & ~m) ^ v
        elif option == "--set-mark":
            mark = (mark & ~m) | v
        elif option == "--and-mark":
            mark &= v
        elif option == "--or-mark":
            mark |= v
        elif option == "--xor-mark":
            mark ^= v
        else:
            raise Unpredictable(f"MARK option {option} not understood")
        self.packet = self.packet.replace(mark=mark & 0xFFFFFFFF)

    def _return(self, stack: list[_Frame]) -> None:
        frame = stack.pop()
        del self.trail[frame.trail_mark :]

    def _policy(self) -> ChainResult:
        """The end of the built-in chain (also after a goto from it): its policy."""
        chain = self.builtin
        self.trail.clear()
        policy = self.table.policies.get(chain, "ACCEPT")
        return self._result(policy, chain, None, f"-P {chain} {policy}")

    def _unknown(self, chain: str, number: int | None, text: str | None, why: str) -> ChainResult:
        result = self._result("UNKNOWN", chain, number, text)
        where = chain if number is None else f"past rule {number} of {chain}"
        result.unknown = f"cannot predict {where}: {why}"
        return result

    def _result(
        self, verdict: str, chain: str, number: int | None, text: str | None
    ) -> ChainResult:
        return ChainResult(
            verdict, self.name, chain, number, text, list(self.trail), mark=self.packet.mark
        )


def _matches(rule: Rule, packet: Packet, ctx: EvalContext) -> bool:
    """All matches hold; one known non-match wins over an unknown match (AND)."""
    unknown: Unpredictable | None = None
    for check in rule.matches:
        try:
            if not check(packet, ctx):
                return False
        except Unpredictable as exc:
            unknown = unknown or exc
    if unknown is not None:
        raise unknown
    return True


def _nat(target: str, args: tuple[str, ...]) -> dict[str, Any]:
    """The translation of a DNAT/SNAT/MASQUERADE/REDIRECT target's options."""
    options = dict(zip(args[::2], args[1::2], strict=False))
    if target in ("MASQUERADE", "REDIRECT"):
        nat: dict[str, Any] = {"kind": target, "to": None}
        ports = options.get("--to-ports")
        if ports is not None:
            if not ports.isdigit():
                raise Unpredictable(f"{target} to the port range {ports}: the port is chosen")
            nat["port"] = int(ports)
        return nat
    value = options.get("--to-destination" if target == "DNAT" else "--to-source")
    if value is None or len(args) != 2:
        raise Unpredictable(f"{target} {' '.join(args)} not understood")
    address, _, port = value.partition(":")
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise Unpredictable(f"{target} to {value}: the address is chosen from a range") from None
    nat = {"kind": target, "to": address}
    if port:
        if not port.isdigit():
            raise Unpredictable(f"{target} to {value}: the port is chosen from a range")
        nat["port"] = int(port)
    return nat
