"""One iptables rule (as ``iptables-save`` prints it) turned into typed matches.

The evaluator (:mod:`.iptables_eval`) asks each match whether a packet
matches. A match either answers ``True``/``False`` or raises
:class:`Unpredictable` with the reason: a match or option this module does
not model, or a fact the caller did not give (an ipset's members, an icmp
code). The rule is never guessed: a rule whose known matches all pass and
that holds one unpredictable match makes the whole evaluation UNKNOWN.

Parsing never fails: what cannot be read becomes a match that always raises,
so a ruleset with one odd rule still evaluates everything before it.
"""

from __future__ import annotations

import functools
import ipaddress
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from novanet.explain.packet import Packet
from novanet.linux.iptables.normalise import GENERIC_OPTIONS, ICMP_TYPES, PROTO_NAMES


class Unpredictable(Exception):
    """The match cannot be decided from what the evaluator knows."""


@dataclass
class EvalContext:
    """Where the packet is when a chain sees it (all optional, see interface (2)).

    ``in_iface``/``out_iface`` are what ``-i``/``-o`` compare (None: no such
    device at this hook, e.g. ``-i`` in OUTPUT); ``physdev_*`` the bridge
    ports for a bridged packet (br_netfilter); ``ipsets`` the members of each
    ipset by name (addresses or CIDRs); ``local_addresses`` the node's own
    addresses (``-m addrtype --dst-type LOCAL``).
    """

    in_iface: str | None = None
    out_iface: str | None = None
    physdev_in: str | None = None
    physdev_out: str | None = None
    bridged: bool = False
    ipsets: dict[str, list[str]] = field(default_factory=dict)
    local_addresses: list[str] = field(default_factory=list)


Check = Callable[[Packet, EvalContext], bool]


@dataclass(frozen=True)
class Rule:
    """A parsed rule: its matches (all must hold), target and target options."""

    text: str  # without "-A CHAIN"
    matches: tuple[Check, ...] = ()
    target: str | None = None  # None: no -j/-g (the rule only counts)
    target_args: tuple[str, ...] = ()
    goto: bool = False


PROTOCOLS: Final = PROTO_NAMES  # "-p 6" is "-p tcp"
# "--source" is "-s"...; "-f" (fragments) is not modelled: it stays an unknown option.
_GENERIC: Final = {alias: f"-{key}" for alias, key in GENERIC_OPTIONS.items() if key != "f"}
# Every option a modelled match knows, with the number of values it takes.
_OPTIONS: Final[dict[str, dict[str, int]]] = {
    "tcp": {"--sport": 1, "--source-port": 1, "--dport": 1, "--destination-port": 1,
            "--tcp-flags": 2, "--syn": 0},
    "udp": {"--sport": 1, "--source-port": 1, "--dport": 1, "--destination-port": 1},
    "icmp": {"--icmp-type": 1},
    "multiport": {"--dports": 1, "--destination-ports": 1, "--sports": 1,
                  "--source-ports": 1, "--ports": 1},
    "state": {"--state": 1},
    "conntrack": {"--ctstate": 1},
    "set": {"--match-set": 2},
    "mark": {"--mark": 1},
    "physdev": {"--physdev-in": 1, "--physdev-out": 1, "--physdev-is-bridged": 0,
                "--physdev-is-in": 0, "--physdev-is-out": 0},
    "comment": {"--comment": 1},
    "addrtype": {"--dst-type": 1, "--src-type": 1},
}  # fmt: skip
_SYN_FLAGS: Final = ("FIN,SYN,RST,ACK", "SYN")
_QUOTING: Final = frozenset("\"'\\")


@functools.lru_cache(maxsize=65536)
def parse_rule(text: str) -> Rule:
    """Parse one rule (``iptables -S`` text without ``-A CHAIN``); never raises.

    Cached: a compute host's instance chains repeat the same rules thousands
    of times, and a parsed rule is never changed afterwards.
    """
    matches: list[Check] = []
    try:
        # shlex only where iptables-save quoted something (comments, log prefixes).
        tokens = shlex.split(text) if _QUOTING & set(text) else text.split()
    except ValueError as exc:
        matches.append(_always_unknown(f"rule not readable ({exc})"))
        words = text.split()
        at = _skip_to_target(words, 0)
        guess = words[at + 1] if at + 1 < len(words) else "?"  # a target: never skipped unseen
        return Rule(text, tuple(matches), guess)
    target: str | None = None
    target_args: tuple[str, ...] = ()
    goto = False
    module: str | None = None
    proto: str | None = None
    negate = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            negate, i = True, i + 1
            continue
        if tok in ("-j", "--jump", "-g", "--goto"):
            goto = tok in ("-g", "--goto")
            target = tokens[i + 1] if i + 1 < len(tokens) else None
            target_args = tuple(tokens[i + 2 :])
            break
        value = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in ("-m", "--match"):
            module, i = value, i + 2
            if module not in _OPTIONS:
                matches.append(_always_unknown(f"unknown match {module}"))
            continue
        if tok in _GENERIC:
            option = _GENERIC[tok]
            if option == "-p":
                proto = PROTOCOLS.get(value, value)
            matches.append(_generic(option, value, negate))
            negate, i = False, i + 2
            continue
        owner = module
        if owner is None and proto in ("tcp", "udp", "icmp"):
            owner = proto  # "-p tcp --dport 22": the protocol's match, loaded implicitly
        if owner is not None and owner not in _OPTIONS:
            i += 1  # an option of an unknown match: already reported
            continue
        if owner is None or tok not in _OPTIONS[owner]:
            what = f"option {tok} of match {owner}" if owner else f"option {tok}"
            matches.append(_always_unknown(f"unknown {what}"))
            i = _skip_to_target(tokens, i + 1)
            continue
        count = _OPTIONS[owner][tok]
        values = tokens[i + 1 : _skip_to_target(tokens, i + 1)][:count]
        try:
            if len(values) < count:
                raise ValueError("value missing")
            matches.append(_module_option(owner, tok, values, negate))
        except ValueError as exc:
            matches.append(_always_unknown(f"option {tok} of match {owner} ({exc})"))
        negate, i = False, i + 1 + len(values)
    return Rule(text, tuple(matches), target, target_args, goto)


def _skip_to_target(tokens: list[str], i: int) -> int:
    while i < len(tokens) and tokens[i] not in ("-j", "--jump", "-g", "--goto"):
        i += 1
    return i


def _always_unknown(message: str) -> Check:
    def check(packet: Packet, ctx: EvalContext) -> bool:
        raise Unpredictable(message)

    return check


def _negated(check: Check, negate: bool) -> Check:
    if not negate:
        return check
    return lambda packet, ctx: not check(packet, ctx)


def _generic(option: str, value: str, negate: bool) -> Check:
    if option in ("-s", "-d"):
        try:
            net = ipaddress.IPv4Network(value, strict=False)
        except ValueError:
            return _always_unknown(f"unknown address {option} {value}")
        if option == "-s":
            return _negated(lambda p, c: address(p.src) in net, negate)
        return _negated(lambda p, c: address(p.dst) in net, negate)
    if option == "-i":
        return _negated(lambda p, c: iface_matches(value, c.in_iface), negate)
    if option == "-o":
        return _negated(lambda p, c: iface_matches(value, c.out_iface), negate)
    name = PROTOCOLS.get(value, value)
    return _negated(lambda p, c: name == "all" or p.proto == name, negate)


def address(text: str) -> ipaddress.IPv4Address:
    """The packet's address; one that is not IPv4 cannot be matched."""
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise Unpredictable(f"{text!r} is not an IPv4 address") from None


def iface_matches(pattern: str, name: str | None) -> bool:
    """``-i``/``-o``/``--physdev-*`` comparison: ``+`` at the end is a prefix wildcard."""
    name = name or ""
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _module_option(module: str, option: str, values: list[str], negate: bool) -> Check:
    if module in ("tcp", "udp", "multiport"):
        return _port_option(module, option, values, negate)
    if module == "icmp":
        return _icmp_type(values[0], negate)
    if module in ("state", "conntrack"):
        wanted = frozenset(values[0].split(","))
        return _negated(lambda p, c: bool(wanted & ct_states(p)), negate)
    if module == "set":
        return _set_match(values[0], values[1], negate)
    if module == "mark":
        value, _, mask = values[0].partition("/")
        v, m = int(value, 0), int(mask, 0) if mask else 0xFFFFFFFF
        return _negated(lambda p, c: (p.mark & m) == v, negate)
    if module == "physdev":
        return _physdev(option, values[0] if values else "", negate)
    if module == "addrtype":
        return _addrtype(option, values[0], negate)
    return lambda p, c: True  # comment


def ct_states(packet: Packet) -> frozenset[str]:
    """The conntrack states of the packet: ``"NEW"`` or e.g. ``"NEW,DNAT"``.

    The virtual states SNAT/DNAT (``-m conntrack --ctstate DNAT``) say the
    connection's original direction was translated; a caller that knows it
    adds them to ``Packet.ctstate`` with a comma.
    """
    return frozenset(s for s in packet.ctstate.upper().split(",") if s)


def _port_option(module: str, option: str, values: list[str], negate: bool) -> Check:
    if option == "--syn" or option == "--tcp-flags":
        if option == "--tcp-flags" and tuple(values) != _SYN_FLAGS:
            return _always_unknown(f"unknown option --tcp-flags {' '.join(values)} of match tcp")
        return _negated(lambda p, c: p.proto == "tcp" and "NEW" in ct_states(p), negate)
    try:
        ranges = [_port_range(part) for part in values[0].split(",")]
    except ValueError:
        return _always_unknown(f"unknown port {values[0]} of match {module}")
    source = option in ("--sport", "--source-port", "--sports", "--source-ports")
    either = option == "--ports"
    protos = ("tcp", "udp") if module == "multiport" else (module,)

    def check(p: Packet, c: EvalContext) -> bool:
        if p.proto not in protos:
            return False  # a port match never holds for other protocols, negated or not
        ports = [p.sport, p.dport] if either else [p.sport if source else p.dport]
        if any(port is None for port in ports):
            raise Unpredictable(f"the packet's {p.proto} ports are not known")
        hit = any(lo <= port <= hi for port in ports if port is not None for lo, hi in ranges)
        return hit != negate

    return check


def _port_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    if not sep:
        return int(lo), int(lo)
    return int(lo or 0), int(hi or 65535)


def _icmp_type(value: str, negate: bool) -> Check:
    spec = ICMP_TYPES.get(value, value)
    if spec == "any":
        return _negated(lambda p, c: p.proto == "icmp", negate)
    kind_text, _, code_text = spec.partition("/")
    try:
        kind, code = int(kind_text), int(code_text) if code_text else None
    except ValueError:
        return _always_unknown(f"unknown icmp type {value}")

    def check(p: Packet, c: EvalContext) -> bool:
        if p.proto != "icmp":
            return False  # xt_icmp: never for other protocols, negated or not
        if p.icmp_type is None:
            raise Unpredictable("the packet's icmp type is not known")
        if code is None or p.icmp_type != kind:
            return (p.icmp_type == kind) != negate
        packet_code = getattr(p, "icmp_code", None)
        if packet_code is None and p.icmp_type in (0, 8):
            packet_code = 0  # echo request/reply have code 0 only
        if packet_code is None:
            raise Unpredictable(f"the packet's icmp code is not known (rule wants {spec})")
        return (packet_code == code) != negate

    return check


def _set_match(name: str, flags: str, negate: bool) -> Check:
    direction = flags.split(",")[0]

    def check(p: Packet, c: EvalContext) -> bool:
        if name not in c.ipsets:
            raise Unpredictable(f"members of ipset {name} are not known")
        wanted = address(p.src if direction == "src" else p.dst)
        try:
            members = [ipaddress.IPv4Network(m, strict=False) for m in c.ipsets[name]]
        except ValueError as exc:
            raise Unpredictable(f"ipset {name} holds an entry not understood ({exc})") from None
        return any(wanted in m for m in members) != negate

    return check


def _physdev(option: str, value: str, negate: bool) -> Check:
    """xt_physdev: a packet that was not bridged matches only inverted options."""

    def check(p: Packet, c: EvalContext) -> bool:
        if not c.bridged:
            return negate
        if option == "--physdev-in":
            hit = c.physdev_in is not None and iface_matches(value, c.physdev_in)
        elif option == "--physdev-out":
            hit = c.physdev_out is not None and iface_matches(value, c.physdev_out)
        elif option == "--physdev-is-in":
            hit = c.physdev_in is not None
        else:  # --physdev-is-out, --physdev-is-bridged (both: leaves by a bridge port)
            hit = c.physdev_out is not None
        return hit != negate

    return check


def _addrtype(option: str, kind: str, negate: bool) -> Check:
    if kind != "LOCAL":
        return _always_unknown(f"unknown address type {kind} of match addrtype")
    source = option == "--src-type"

    def check(p: Packet, c: EvalContext) -> bool:
        addr = p.src if source else p.dst
        return (addr in c.local_addresses or addr.startswith("127.")) != negate

    return check
