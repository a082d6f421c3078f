"""ebtables rules of share_dhcp_address: the DHCP server address kept off the wire.

nova's isolate_dhcp_address (linux_net.py): with share_dhcp_address every
host holds the same DHCP server address for its own instances, so that
address must not be seen, or answer, across ``flat_interface``: ARP for it
is dropped in and out of the interface, and DHCP is not bridged across it.
The rules are applied as nova applied them, each deleted and then inserted
at the top of its chain, so a rule is never there twice and always first.

iptables cannot do this (ARP and bridged frames never reach it), hence the
``ebtables`` program; on Debian it is ebtables-nft from the iptables package.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from novanet.linux.process import Execute
from novanet.linux.processutils import execute as default_execute

LOG = logging.getLogger(__name__)

Rule = tuple[str, ...]  # chain, then the match and target arguments


def dhcp_isolation_rules(interface: str, address: str) -> list[Rule]:
    """nova's four rules for one interface and DHCP server address (filter table)."""
    return [
        ("INPUT", "-p", "ARP", "-i", interface, "--arp-ip-dst", address, "-j", "DROP"),
        ("OUTPUT", "-p", "ARP", "-o", interface, "--arp-ip-src", address, "-j", "DROP"),
        ("FORWARD", "-p", "IPv4", "-i", interface, "--ip-protocol", "udp")
        + ("--ip-destination-port", "67:68", "-j", "DROP"),
        ("FORWARD", "-p", "IPv4", "-o", interface, "--ip-protocol", "udp")
        + ("--ip-destination-port", "67:68", "-j", "DROP"),
    ]


class Ebtables:
    """Puts rules in place or takes them away (``--concurrent``: libvirt uses ebtables too)."""

    def __init__(self, execute: Execute = default_execute, table: str = "filter") -> None:
        self._execute = execute
        self._table = table

    def ensure(self, rules: Sequence[Rule]) -> None:
        for rule in rules:
            self._delete(rule)
            self._execute(["ebtables", "--concurrent", "-t", self._table, "-I", *rule])

    def remove(self, rules: Sequence[Rule]) -> None:
        for rule in rules:
            self._delete(rule)

    def _delete(self, rule: Rule) -> None:
        # Fails when the rule is not there ("Bad rule (does a matching rule
        # exist in that chain?)"), which is the usual case.
        self._execute(["ebtables", "--concurrent", "-t", self._table, "-D", *rule], check=False)
