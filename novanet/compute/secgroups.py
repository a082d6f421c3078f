"""Security-group rules as iptables rules and ipsets: pure functions, no kernel.

An instance's rules (compact strings, :mod:`novanet.secrules`) become
``-j ACCEPT`` rules of its chain ``inst-N``, between the DHCP/same-net
accepts and the jump to ``sg-fallback``, spelled as nova-network's
IptablesFirewallDriver spelled them and as ``iptables -S`` prints them
(measured with iptables 1.8.9, nft and legacy):

* ``tcp 22 22 10.0.0.0/24`` -> ``-s 10.0.0.0/24 -p tcp -m tcp --dport 22 -j ACCEPT``
* ``tcp 8000 8080 0.0.0.0/0`` -> ``-p tcp -m multiport --dports 8000:8080 -j ACCEPT``
  (iptables drops ``-s 0.0.0.0/0``; a range of one port is refused by
  multiport, so from == to is always ``--dport``)
* ``icmp 8 -1 ...`` -> ``-p icmp -m icmp --icmp-type 8``; ``icmp 3 4`` ->
  ``--icmp-type 3/4``; ``icmp -1 -1`` -> ``-p icmp`` (no match: any type)
* ``tcp 5432 5432 @7`` -> ``-p tcp -m set --match-set nova-compute-group-7 src
  -m tcp --dport 5432 -j ACCEPT``: where nova wrote one rule per member
  address into every member's chain (a membership change rewrote
  O(members) chains of O(members) rules), the members are one ipset
  ``hash:ip`` per source group, and a membership change is one set update.

ipset names are at most 31 characters (IPSET_MAXNAMELEN 32 with the NUL):
``<iptables_prefix>-compute-group-<gid>``, the head shortened with a hash
of itself when a long iptables_prefix would not leave room for a ten-digit
group id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

from novanet.secrules import Rule, from_compact

MAX_SET_NAME = 31
_ID_DIGITS = 10
_MIDDLE = "-group-"


def set_head(prefix: str) -> str:
    """The part of every set name before ``-group-<gid>`` (same for every gid)."""
    head = f"{prefix}-compute"
    room = MAX_SET_NAME - len(_MIDDLE) - _ID_DIGITS
    if len(head) > room:
        digest = hashlib.sha1(head.encode()).hexdigest()[:4]
        head = f"{head[: room - 5]}-{digest}"
    return head


def set_name(prefix: str, group_id: int) -> str:
    name = f"{set_head(prefix)}{_MIDDLE}{group_id}"
    if len(name) > MAX_SET_NAME:  # a group id of more than ten digits
        raise ValueError(f"group id {group_id} does not fit an ipset name")
    return name


def set_pattern(prefix: str) -> re.Pattern[str]:
    """The names of the sets this agent owns (stale ones among them are removed)."""
    return re.compile("^" + re.escape(set_head(prefix) + _MIDDLE) + "[0-9]+$")


def render_rule(rule: Rule, prefix: str) -> str:
    """One rule as ``iptables -S`` prints it (without ``-A CHAIN``)."""
    parts: list[str] = []
    if rule.cidr is not None and rule.cidr != "0.0.0.0/0":
        parts += ["-s", rule.cidr]
    parts += ["-p", rule.protocol]
    if rule.source_group is not None:
        parts += ["-m", "set", "--match-set", set_name(prefix, rule.source_group), "src"]
    if rule.protocol == "icmp":
        if rule.from_port != -1:
            kind = str(rule.from_port)
            if rule.to_port != -1:
                kind += f"/{rule.to_port}"
            parts += ["-m", "icmp", "--icmp-type", kind]
    elif rule.from_port == rule.to_port:
        parts += ["-m", rule.protocol, "--dport", str(rule.from_port)]
    else:
        parts += ["-m", "multiport", "--dports", f"{rule.from_port}:{rule.to_port}"]
    return " ".join([*parts, "-j", "ACCEPT"])


def render(rules: Iterable[str], prefix: str) -> list[str]:
    """The chain's security-group rules, in the order given (the controller sorts them)."""
    return [render_rule(from_compact(text), prefix) for text in rules]


def source_groups(rules: Iterable[str]) -> set[int]:
    """The group ids the rules take their sources from (compact form: ``... @gid``)."""
    out = set()
    for text in rules:
        _, _, source = text.rpartition(" ")
        if source.startswith("@"):
            out.add(int(source[1:]))
    return out


def wanted_sets(
    rules_by_instance: Iterable[Iterable[str]],
    members: Mapping[int, Iterable[str]],
    prefix: str,
) -> dict[str, frozenset[str]]:
    """Set name -> addresses: one set per group the instances' rules name as source.

    A group the controller has not described yet gets an empty set (the
    rule then admits nobody, which is the safe side).
    """
    groups: set[int] = set()
    for rules in rules_by_instance:
        groups |= source_groups(rules)
    return {set_name(prefix, gid): frozenset(members.get(gid, ())) for gid in sorted(groups)}
