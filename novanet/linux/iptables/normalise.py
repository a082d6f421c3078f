"""Rule text in the exact form ``iptables -S`` / ``iptables-save`` prints it.

The model stores rules the way the kernel will print them back, so comparing
the model with ``iptables-save`` output is a plain string comparison. iptables
rewrites rules on the way in; the rewrites handled here were measured with
iptables 1.8.9 and are the same for the nft and the legacy backend:

- generic options print in the order ``-s -d -i -o -p -f`` whatever the input
  order; addresses get their prefix length (``10.0.0.1`` -> ``10.0.0.1/32``)
  and lose their host bits (``10.0.0.5/24`` -> ``10.0.0.0/24``); ``0.0.0.0/0``
  and ``-p all`` disappear; protocol numbers print as names;
- ``--dport`` after ``-p tcp`` loads the tcp match implicitly: ``-m tcp`` is
  printed where the first tcp option appeared; tcp/udp options print as
  ``--sport --dport --tcp-option --tcp-flags``; ``--syn`` is
  ``--tcp-flags FIN,SYN,RST,ACK SYN``; service names print as numbers;
- ``--state``/``--ctstate`` lists print in a fixed bit order
  (``ESTABLISHED,RELATED`` -> ``RELATED,ESTABLISHED``);
- ``--icmp-type echo-request`` prints as ``8``; type 255 (xt_icmp's wildcard) as ``any``;
- ``-j REJECT`` gains ``--reject-with icmp-port-unreachable``; ``-j MARK
  --set-mark 1`` prints as ``--set-xmark 0x1/0xffffffff``; ``-j LOG`` drops the
  default ``--log-level 4``;
- strings of comment/log-prefix are double-quoted unless made only of
  letters, digits, ``_`` and ``-`` (xtables_save_string()).

Anything else is kept as written; the manager learns the kernel's spelling
of a rule it could not predict (see IptablesManager) instead of rewriting it
on every check.
"""

from __future__ import annotations

import functools
import ipaddress
import shlex
import socket
import string
from dataclasses import dataclass, field
from typing import Final

from novanet.exception import NovanetError


class InvalidRule(NovanetError, ValueError):
    """Rule text novanet cannot turn into what iptables will print."""


# Option spellings of the generic matches -> their key (also read by the explainer).
GENERIC_OPTIONS: Final = {
    "-s": "s", "--source": "s", "--src": "s",
    "-d": "d", "--destination": "d", "--dst": "d",
    "-i": "i", "--in-interface": "i",
    "-o": "o", "--out-interface": "o",
    "-p": "p", "--protocol": "p",
    "-f": "f", "--fragment": "f",
}  # fmt: skip
_GENERIC_ORDER: Final = ("s", "d", "i", "o", "p", "f")

PROTO_NAMES: Final = {
    "0": "all", "1": "icmp", "2": "igmp", "4": "ipencap", "6": "tcp", "17": "udp",
    "33": "dccp", "41": "ipv6", "47": "gre", "50": "esp", "51": "ah", "132": "sctp",
    "136": "udplite",
}  # fmt: skip

# Options that load the protocol's match implicitly after `-p PROTO`.
_PROTO_OPTIONS: Final[dict[str, frozenset[str]]] = {
    "tcp": frozenset(
        {"--sport", "--source-port", "--dport", "--destination-port", "--tcp-flags",
         "--syn", "--tcp-option"}
    ),
    "udp": frozenset({"--sport", "--source-port", "--dport", "--destination-port"}),
    "icmp": frozenset({"--icmp-type"}),
}  # fmt: skip
_PORT_OPTION_ORDER: Final = {"--sport": 0, "--dport": 1, "--tcp-option": 2, "--tcp-flags": 3}
_TCP_FLAGS: Final = ("FIN", "SYN", "RST", "PSH", "ACK", "URG")

_STATE_ORDER: Final = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")

ICMP_TYPES: Final = {
    "echo-reply": "0", "pong": "0", "destination-unreachable": "3",
    "network-unreachable": "3/0", "host-unreachable": "3/1", "protocol-unreachable": "3/2",
    "port-unreachable": "3/3", "fragmentation-needed": "3/4", "source-route-failed": "3/5",
    "network-unknown": "3/6", "host-unknown": "3/7", "network-prohibited": "3/9",
    "host-prohibited": "3/10", "TOS-network-unreachable": "3/11",
    "TOS-host-unreachable": "3/12", "communication-prohibited": "3/13",
    "host-precedence-violation": "3/14", "precedence-cutoff": "3/15", "source-quench": "4",
    "redirect": "5", "network-redirect": "5/0", "host-redirect": "5/1",
    "TOS-network-redirect": "5/2", "TOS-host-redirect": "5/3", "echo-request": "8",
    "ping": "8", "router-advertisement": "9", "router-solicitation": "10",
    "time-exceeded": "11", "ttl-exceeded": "11", "ttl-zero-during-transit": "11/0",
    "ttl-zero-during-reassembly": "11/1", "parameter-problem": "12", "ip-header-bad": "12/0",
    "required-option-missing": "12/1", "timestamp-request": "13", "timestamp-reply": "14",
    "address-mask-request": "17", "address-mask-reply": "18",
}  # fmt: skip

# Options whose value iptables prints through xtables_save_string().
_SAVE_STRING_OPTIONS: Final = frozenset({"--comment", "--log-prefix", "--nflog-prefix"})
_NO_QUOTE_CHARS: Final = frozenset("_-" + string.digits + string.ascii_letters)


@dataclass
class _Option:
    negated: bool
    name: str
    values: list[str]


@dataclass
class _Match:
    name: str
    options: list[_Option] = field(default_factory=list)


@dataclass
class _Rule:
    generic: dict[str, tuple[bool, str | None]] = field(default_factory=dict)
    matches: list[_Match] = field(default_factory=list)
    target: str | None = None
    target_options: list[_Option] = field(default_factory=list)
    goto: str | None = None


@functools.lru_cache(maxsize=8192)
def normalise_rule(rule: str) -> str:
    """Return ``rule`` as ``iptables -S`` would print it (without ``-A CHAIN``).

    Cached: the per-instance chains repeat the same few rule texts thousands
    of times.
    """
    if any(ch in rule for ch in "'\"\\"):
        try:
            tokens = shlex.split(rule)
        except ValueError as exc:
            raise InvalidRule(f"iptables rule {rule!r}: {exc}") from None
    else:
        tokens = rule.split()
    if not tokens:
        raise InvalidRule("empty iptables rule")
    if tokens[0] in ("-A", "-I", "-D", "-N", "-X", "-F", "-P", "-R"):
        raise InvalidRule(f"iptables rule {rule!r}: give the rule only, without {tokens[0]}")
    parsed = _parse(tokens, rule)
    return " ".join(_render(parsed))


def save_string(value: str) -> str:
    """Quote a string the way xtables_save_string() prints it."""
    if value and all(ch in _NO_QUOTE_CHARS for ch in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")
    return f'"{escaped}"'


def _is_option(token: str) -> bool:
    return token == "!" or (len(token) > 1 and token[0] == "-" and not token[1].isdigit())


def _parse(tokens: list[str], rule: str) -> _Rule:
    parsed = _Rule()
    current: _Match | None = None
    in_target = False
    negated = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            negated = True
            i += 1
            continue
        if tok in GENERIC_OPTIONS:
            key = GENERIC_OPTIONS[tok]
            if key == "f":
                parsed.generic[key] = (negated, None)
                i += 1
            else:
                parsed.generic[key] = (negated, _value(tokens, i, rule))
                i += 2
            negated = False
            continue
        if tok in ("-m", "--match", "-j", "--jump", "-g", "--goto"):
            value = _value(tokens, i, rule)
            if negated:
                raise InvalidRule(f"iptables rule {rule!r}: '!' cannot negate {tok}")
            if tok in ("-m", "--match"):
                current = _Match(value)
                parsed.matches.append(current)
            elif tok in ("-j", "--jump"):
                parsed.target, in_target = value, True
            else:
                parsed.goto = value
            i += 2
            continue
        if not _is_option(tok):
            raise InvalidRule(f"iptables rule {rule!r}: unexpected {tok!r}")
        j = i + 1
        while j < len(tokens) and not _is_option(tokens[j]):
            j += 1
        option = _Option(negated, tok, tokens[i + 1 : j])
        negated = False
        i = j
        if in_target:
            parsed.target_options.append(option)
            continue
        proto_match = _protocol_match(parsed, current, tok)
        if proto_match is not None:
            proto_match.options.append(option)
        elif current is not None:
            current.options.append(option)
        else:
            raise InvalidRule(f"iptables rule {rule!r}: option {tok} belongs to no match")
    if negated:
        raise InvalidRule(f"iptables rule {rule!r}: dangling '!'")
    return parsed


def _value(tokens: list[str], i: int, rule: str) -> str:
    if i + 1 >= len(tokens):
        raise InvalidRule(f"iptables rule {rule!r}: {tokens[i]} needs a value")
    return tokens[i + 1]


def _protocol_match(parsed: _Rule, current: _Match | None, option: str) -> _Match | None:
    """The tcp/udp/icmp match an option goes to (created where iptables would load it)."""
    negated, proto = parsed.generic.get("p", (False, None))
    if negated or proto is None:
        return None
    proto = _protocol(proto)
    if option not in _PROTO_OPTIONS.get(proto, ()):
        return None
    # iptables hands an option it does not find in the loaded matches to the
    # protocol's match, loading it at that point; an option given after an
    # explicit `-m tcp` goes to that match. The common matches (state,
    # conntrack, multiport, comment...) define none of these option names.
    if current is not None and current.name == proto:
        return current
    for match in parsed.matches:
        if match.name == proto:
            return match
    match = _Match(proto)
    parsed.matches.append(match)
    return match


def _render(parsed: _Rule) -> list[str]:
    parts: list[str] = []
    proto: str | None = None
    for key in _GENERIC_ORDER:
        if key not in parsed.generic:
            continue
        negated, value = parsed.generic[key]
        if key in ("s", "d"):
            assert value is not None
            value = _address(value)
            if value == "0.0.0.0/0" and not negated:
                continue
        elif key == "p":
            assert value is not None
            value = _protocol(value)
            if value == "all" and not negated:
                continue
            if not negated:
                proto = value
        parts.extend(["!"] if negated else [])
        parts.append(f"-{key}")
        if value is not None:
            parts.append(value)
    for match in parsed.matches:
        parts.extend(["-m", match.name])
        parts.extend(_render_match(match, proto))
    if parsed.target is not None:
        parts.extend(["-j", parsed.target])
        parts.extend(_render_target(parsed.target, parsed.target_options))
    elif parsed.goto is not None:
        parts.extend(["-g", parsed.goto])
    return parts


def _render_match(match: _Match, proto: str | None) -> list[str]:
    options = match.options
    if match.name in ("tcp", "udp"):
        options = [_port_option(opt, match.name) for opt in options]
        options.sort(key=lambda opt: _PORT_OPTION_ORDER.get(opt.name, 9))
    elif match.name == "icmp":
        options = [_icmp_option(opt) for opt in options]
    elif match.name in ("state", "conntrack"):
        options = [_state_option(opt) for opt in options]
    return _render_options(options)


def _render_target(target: str, options: list[_Option]) -> list[str]:
    names = {opt.name for opt in options}
    if target == "REJECT" and "--reject-with" not in names:
        options = [*options, _Option(False, "--reject-with", ["icmp-port-unreachable"])]
    elif target == "MARK":
        options = [_mark_option(opt) for opt in options]
    elif target == "LOG":
        default_level = ("4", "warning", "warn")
        options = [
            opt
            for opt in options
            if not (opt.name == "--log-level" and opt.values and opt.values[0] in default_level)
        ]
        options.sort(key=lambda opt: opt.name != "--log-prefix")
    return _render_options(options)


def _render_options(options: list[_Option]) -> list[str]:
    parts: list[str] = []
    for opt in options:
        if opt.negated:
            parts.append("!")
        parts.append(opt.name)
        if opt.name in _SAVE_STRING_OPTIONS:
            parts.extend(save_string(value) for value in opt.values)
        else:
            parts.extend(_plain(value) for value in opt.values)
    return parts


def _plain(value: str) -> str:
    if value and not any(ch.isspace() or ch in "\"'\\" for ch in value):
        return value
    return save_string(value)


def _address(value: str) -> str:
    if "," in value:
        raise InvalidRule(f"address list {value!r}: give one address per rule")
    try:
        net = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        raise InvalidRule(f"{value!r} is not an IPv4 address or network") from None
    return f"{net.network_address}/{net.prefixlen}"


def _protocol(value: str) -> str:
    value = value.lower()
    return PROTO_NAMES.get(value, value)


def _port_option(opt: _Option, proto: str) -> _Option:
    name = {"--source-port": "--sport", "--destination-port": "--dport"}.get(opt.name, opt.name)
    if name == "--syn":
        return _Option(opt.negated, "--tcp-flags", ["FIN,SYN,RST,ACK", "SYN"])
    if name in ("--sport", "--dport") and len(opt.values) == 1:
        return _Option(opt.negated, name, [_port_range(opt.values[0], proto)])
    if name == "--tcp-flags" and len(opt.values) == 2:
        return _Option(opt.negated, name, [_tcp_flags(v) for v in opt.values])
    return _Option(opt.negated, name, opt.values)


def _port_range(value: str, proto: str) -> str:
    if ":" not in value:
        return str(_port(value, proto))
    low_text, _, high_text = value.partition(":")
    low = _port(low_text, proto) if low_text else 0
    high = _port(high_text, proto) if high_text else 65535
    return str(low) if low == high else f"{low}:{high}"


def _port(value: str, proto: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return socket.getservbyname(value, proto)
    except OSError:
        raise InvalidRule(f"unknown {proto} service {value!r}") from None


def _tcp_flags(value: str) -> str:
    flags = set(value.upper().split(","))
    if "ALL" in flags:
        flags = set(_TCP_FLAGS)
    if flags == {"NONE"}:
        return "NONE"
    return ",".join(flag for flag in _TCP_FLAGS if flag in flags)


def _icmp_option(opt: _Option) -> _Option:
    if opt.name == "--icmp-type" and len(opt.values) == 1:
        kind = ICMP_TYPES.get(opt.values[0], opt.values[0])
        return _Option(opt.negated, opt.name, ["any" if kind.split("/")[0] == "255" else kind])
    return opt


def _state_option(opt: _Option) -> _Option:
    if opt.name not in ("--state", "--ctstate") or len(opt.values) != 1:
        return opt
    states = opt.values[0].upper().split(",")
    known = [s for s in _STATE_ORDER if s in states]
    return _Option(opt.negated, opt.name, [",".join(known + [s for s in states if s not in known])])


def _mark_option(opt: _Option) -> _Option:
    if opt.name != "--set-mark" or len(opt.values) != 1 or "/" in opt.values[0]:
        return opt
    try:
        value = int(opt.values[0], 0)
    except ValueError:
        return opt
    return _Option(opt.negated, "--set-xmark", [f"{value:#x}/0xffffffff"])
