"""One netfilter hook on one node: iptables evaluated, NAT applied, conntrack kept.

The pieces the path walker (:mod:`.paths`) strings together. A drop or an
unpredictable rule ends the walk by raising :class:`Stop` with the verdict
and the reason the operator reads (``dropped at NODE TABLE CHAIN rule N
`rule```).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from novanet.explain.iptables_eval import ChainResult, EvalContext, Ruleset
from novanet.explain.packet import DROPPED, UNKNOWN, Hop, Packet
from novanet.explain.topology import NodeView

Key = tuple[str, str, str, "int | None", "int | None"]


class Stop(Exception):
    """The walk ends here: dropped or unknown, with the reason."""

    def __init__(self, verdict: str, reason: str) -> None:
        super().__init__(reason)
        self.verdict = verdict
        self.reason = reason


def key(p: Packet) -> Key:
    return (p.proto, p.src, p.dst, p.sport, p.dport)


def reverse(k: Key) -> Key:
    return (k[0], k[2], k[1], k[4], k[3])


@dataclasses.dataclass
class Entry:
    orig: Key  # the tuple as the node first saw it
    final: Key  # as it left the node (after its NAT)


@dataclasses.dataclass
class Flow:
    """A packet's conntrack lookup on entering a node."""

    node: str
    orig: Key
    new: bool
    undo_dnat: tuple[str, int | None] | None = None  # a reply's source to restore


class Conntrack:
    """Every node's connection entries, as the walk creates them (request, then reply)."""

    def __init__(self) -> None:
        self.entries: dict[str, list[Entry]] = {}

    def enter(self, node: str, p: Packet) -> tuple[Packet, Flow]:
        """The packet with its conntrack state; a reply gets its reverse SNAT here."""
        k = key(p)
        for entry in self.entries.get(node, []):
            if k == entry.orig:
                return p.replace(ctstate="ESTABLISHED"), Flow(node, k, False)
            if k == reverse(entry.final):
                undo = (entry.orig[2], entry.orig[4]) if entry.orig[2] != k[1] else None
                p = p.replace(dst=entry.orig[1], dport=entry.orig[3], ctstate="ESTABLISHED")
                return p, Flow(node, k, False, undo)
        return p.replace(ctstate="NEW"), Flow(node, k, True)

    def leave(self, flow: Flow, p: Packet) -> Packet:
        """Record a new connection; a reply gets its reverse DNAT here."""
        if flow.new:
            self.entries.setdefault(flow.node, []).append(Entry(flow.orig, key(p)))
        if flow.undo_dnat is not None:
            p = p.replace(src=flow.undo_dnat[0], sport=flow.undo_dnat[1])
        return p


class Hooks:
    """iptables on the nodes: parsed once per node, evaluated hook by hook."""

    def __init__(self, hops: list[Hop]) -> None:
        self.hops = hops
        self._rulesets: dict[str, Ruleset] = {}

    def ruleset(self, node: NodeView) -> Ruleset:
        if node.host not in self._rulesets:
            texts = node.facts.get("iptables") or {}
            try:
                self._rulesets[node.host] = Ruleset.parse(
                    {t: texts.get(t) for t in ("raw", "mangle", "nat", "filter") if texts.get(t)}
                )
            except Exception as exc:  # noqa: BLE001 - any unreadable text is "cannot predict"
                raise Stop(UNKNOWN, f"cannot read {node.host}'s iptables: {exc}") from None
        return self._rulesets[node.host]

    def context(self, node: NodeView, **where: Any) -> EvalContext:
        return EvalContext(
            ipsets=dict(node.ipsets), local_addresses=node.local_addresses(), **where
        )

    def run(
        self, node: NodeView, hook: str, tables: tuple[str, ...], p: Packet, ctx: EvalContext
    ) -> Packet:
        """Evaluate ``tables`` (in order) at ``hook``; the packet after their NAT and MARKs."""
        for table in tables:
            if table == "nat" and not p.ctstate.startswith("NEW"):
                continue  # nat sees a connection's first packet only
            if table in ("filter", "nat") and not (node.facts.get("iptables") or {}).get(table):
                errors = "; ".join(node.facts.get("errors") or []) or "not in its facts"
                raise Stop(
                    UNKNOWN,
                    f"unknown at {node.host}: its iptables {table} table could "
                    f"not be read ({errors})",
                )
            result = self.ruleset(node).evaluate(table, hook, p, ctx)
            p = p.replace(mark=result.mark)
            self._judge(node, hook, result)
            if result.nat:
                p = self._translate(node, hook, p, result, ctx)
        return p

    def _judge(self, node: NodeView, hook: str, r: ChainResult) -> None:
        where = f"{r.table} {hook}"
        text = r.rule_text or ""
        if r.verdict == "UNKNOWN":
            why = r.unknown or "unknown"
            hop = Hop(node.host, where, f"cannot predict: {why}", r.table, r.chain, r.rule, text)
            self.hops.append(hop)
            raise Stop(UNKNOWN, f"unknown at {node.host} {where}: {why}")
        path = " -> ".join([chain for chain, _, _ in r.trail] + [r.chain])
        if r.verdict in ("DROP", "REJECT"):
            rule = f"rule {r.rule}" if r.rule is not None else "policy"
            what = f"{r.verdict} ({r.chain} {rule})"
            self.hops.append(Hop(node.host, where, what, r.table, r.chain, r.rule, text or None))
            raise Stop(
                DROPPED,
                f"dropped at {node.host} {r.table} {r.chain} {rule} `{text}` ({path})",
            )
        if r.nat:
            return  # the translation is the hop (Hooks._translate)
        if r.rule is not None or r.trail or r.table == "filter":
            what = f"ACCEPT ({r.chain} rule {r.rule})" if r.rule is not None else "ACCEPT (policy)"
            if r.trail:
                what += f" via {path}"
            self.hops.append(Hop(node.host, where, what, r.table, r.chain, r.rule, text or None))

    def _translate(
        self, node: NodeView, hook: str, p: Packet, r: ChainResult, ctx: EvalContext
    ) -> Packet:
        nat = r.nat or {}
        kind = str(nat.get("kind"))
        to = nat.get("to")
        port = nat.get("port")
        states = p.ctstate.split(",")
        if kind in ("DNAT", "REDIRECT"):
            if to is None:  # REDIRECT: the receiving interface's address
                to = _address_of(node, ctx.in_iface) or "127.0.0.1"
            new = p.replace(dst=str(to), dport=int(port) if port else p.dport)
            states.append("DNAT")
            what = f"{kind} {p.dst} -> {new.dst}"
        else:
            if to is None:  # MASQUERADE: the out interface's address
                to = _address_of(node, ctx.out_iface)
                if to is None:
                    raise Stop(
                        UNKNOWN, f"{node.host}: MASQUERADE on {ctx.out_iface}, which has no address"
                    )
            new = p.replace(src=str(to), sport=int(port) if port else p.sport)
            states.append("SNAT")
            what = f"{kind} {p.src} -> {new.src}"
        self.hops.append(Hop(node.host, f"nat {hook}", what, "nat", r.chain, r.rule, r.rule_text))
        return new.replace(ctstate=",".join(dict.fromkeys(states)))


def _address_of(node: NodeView, dev: str | None) -> str | None:
    for name, iface in node.addresses():
        if name == dev and iface.network.prefixlen < 32:
            return str(iface.ip)
    return None
