"""Chain names: wrapping, validation and the canonical order of nova jumps.

Several novanet daemons (``network``, ``compute``, ``api``) may share one
network namespace. Each owns the chains ``<prefix>-<binary>-*``; the built-in
chains and the unwrapped ``<prefix>-filter-top`` / ``<prefix>-postrouting-bottom``
are shared with the other daemons and with foreign programs. The order of the
nova jumps in those shared chains is fixed by :meth:`Naming.order_key`, so the
result does not depend on which daemon started first.
"""

from __future__ import annotations

import re
import sys
from typing import Final

from novanet.exception import NovanetError

# XT_EXTENSION_MAXNAMELEN is 29 including the NUL byte: iptables refuses
# longer chain names ("chain name `...' too long (must be under 29 chars)").
MAX_CHAIN_NAME: Final = 28

TABLES: Final = ("filter", "nat", "mangle", "raw")

# Built-in chains of each table, in the kernel's hook order (the order
# `iptables -S` prints them).
BUILTIN_CHAINS: Final[dict[str, tuple[str, ...]]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}

# Built-in chains that get a wrapped twin per binary (as nova did; nova never
# wrapped nat INPUT, and the seed's nat listing has none).
WRAPPED_BUILTINS: Final[dict[str, tuple[str, ...]]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "OUTPUT", "POSTROUTING"),
    # nova wrapped only mangle POSTROUTING (for its DHCP CHECKSUM rule)
    "mangle": ("POSTROUTING",),
    "raw": ("PREROUTING", "OUTPUT"),
}

# network < compute < api < any other binary (alphabetical): reproduces the
# seed, where the controller runs network and api in one namespace.
BINARY_RANK: Final[dict[str, int]] = {"network": 0, "compute": 1, "api": 2}
_OTHER_RANK: Final = len(BINARY_RANK)

_BINARY_RE = re.compile(r"^[a-z0-9_]+$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_]+$")
_JUMP_RE = re.compile(r"(?:^|\s)-[jg]\s+(\S+)")
_BAD_CHAIN_RE = re.compile(r"^[-!]|[\s'\"]")
_TARGET_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")

# Ordering keys of rules in a shared chain (smaller first).
_KEY_TOP: Final = (0, 0, "")
_KEY_BOTTOM: Final = (2, 0, "")
KEY_FOREIGN: Final = (3, 0, "")


class InvalidChainName(NovanetError, ValueError):
    """A chain name iptables would refuse (too long, bad characters)."""


def check_chain_name(name: str) -> str:
    """Return ``name`` if iptables accepts it as a chain name, else raise."""
    if not name or len(name) > MAX_CHAIN_NAME:
        raise InvalidChainName(
            f"iptables chain name {name!r} is {len(name)} characters long; "
            f"iptables allows 1 to {MAX_CHAIN_NAME}"
        )
    if _BAD_CHAIN_RE.search(name):
        raise InvalidChainName(f"iptables chain name {name!r} has characters iptables refuses")
    return name


def jump_target(rule: str) -> str | None:
    """The chain or target after ``-j``/``-g`` in a rule, if any."""
    match = _JUMP_RE.search(rule)
    return match.group(1) if match else None


def is_target_extension(name: str) -> bool:
    """ACCEPT, DROP, RETURN and extension targets (SNAT, LOG...): upper case, not chains.

    (A user chain may be named in upper case too; callers that must not miss
    one fall back to a scan.)
    """
    return _TARGET_RE.match(name) is not None


class Naming:
    """The chain names of one binary (``nova-compute-*``) and the shared ones."""

    def __init__(
        self, prefix: str, binary: str, top_regex: str = "", bottom_regex: str = ""
    ) -> None:
        if not _PREFIX_RE.match(prefix):
            raise InvalidChainName(f"iptables prefix {prefix!r}: use letters, digits and _")
        if not _BINARY_RE.match(binary):
            # A hyphen would make `<prefix>-<binary>-<chain>` ambiguous when
            # another daemon reads our chain names back.
            raise InvalidChainName(f"binary name {binary!r}: use a-z, 0-9 and _ (no hyphen)")
        self.prefix = prefix
        self.binary = binary
        self.wrap_prefix = f"{prefix}-{binary}-"
        self.filter_top = check_chain_name(f"{prefix}-filter-top")
        self.postrouting_bottom = check_chain_name(f"{prefix}-postrouting-bottom")
        self._nova_prefix = f"{prefix}-"
        self.own_key = self._binary_key(binary)
        # nova's iptables_top_regex / iptables_bottom_regex (see floor()).
        self._top = re.compile(top_regex) if top_regex else None
        self._bottom = re.compile(bottom_regex) if bottom_regex else None

    def floor(self, chain: str, foreign_rules: list[str]) -> int:
        """How many of a shared chain's other rules stay above ours.

        0 unless iptables_top_regex is set: then ours go below the last rule
        matching it, but above the first rule matching only
        iptables_bottom_regex (a rule matching both is a top rule, as in
        nova). Other programs' rules are never moved, so this is the best
        place their current order allows. The expressions see each rule as
        iptables-save prints it (``-A INPUT -i eth0 -j fail2ban``), as nova's did.
        """
        if self._top is None:
            return 0
        floor = 0
        for index, rule in enumerate(foreign_rules):
            line = f"-A {chain} {rule}"
            if self._top.search(line):
                floor = index + 1
            elif self._bottom is not None and self._bottom.search(line):
                break
        return floor

    def wrap(self, chain: str) -> str:
        """``local`` -> ``nova-compute-local`` (checked against the length limit)."""
        # Interned: the name is a key of several dicts of the model and the view.
        return sys.intern(check_chain_name(self.wrap_prefix + chain))

    def owns(self, chain: str) -> bool:
        """True for the wrapped chains of this binary."""
        return chain.startswith(self.wrap_prefix)

    def expand(self, rule: str) -> str:
        """nova's ``$chain`` expansion: ``-j $local`` -> ``-j nova-compute-local``."""
        if "$" not in rule:
            return rule
        return " ".join(
            self.wrap(tok[1:]) if tok.startswith("$") and len(tok) > 1 else tok
            for tok in rule.split(" ")
        )

    def binary_of(self, chain: str) -> str | None:
        """The binary a wrapped chain name belongs to (``nova-api-local`` -> ``api``)."""
        if not chain.startswith(self._nova_prefix):
            return None
        rest = chain[len(self._nova_prefix) :]
        binary, sep, tail = rest.partition("-")
        if not sep or not tail or not _BINARY_RE.match(binary):
            return None
        if chain in (self.filter_top, self.postrouting_bottom):
            return None
        return binary

    def order_key(self, rule: str, own_rules: frozenset[str] | set[str]) -> tuple[int, int, str]:
        """Where a rule of a shared chain belongs: nova jumps first, foreign last.

        ``<prefix>-filter-top`` first, then the binaries' jumps ranked network <
        compute < api < others (alphabetical), then ``<prefix>-postrouting-bottom``;
        rules of this binary that are not jumps count as this binary's.
        """
        target = jump_target(rule)
        if target == self.filter_top:
            return _KEY_TOP
        if target == self.postrouting_bottom:
            return _KEY_BOTTOM
        if target is not None:
            binary = self.binary_of(target)
            if binary is not None:
                return self._binary_key(binary)
        if rule in own_rules:
            return self.own_key
        return KEY_FOREIGN

    @staticmethod
    def _binary_key(binary: str) -> tuple[int, int, str]:
        rank = BINARY_RANK.get(binary)
        if rank is None:
            return (1, _OTHER_RANK, binary)
        return (1, rank, "")
