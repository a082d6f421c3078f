"""The controller's rules for floating IPs, as data: nova-network's, one group per association.

Pure functions of the associations (:class:`novanet.db.floating.Mapping`, in
association order) and the configuration; novanet.network.host merges them
into the controller's rules (:func:`with_floating`) and the iptables manager
applies the difference. Rules are in the form ``iptables -S`` prints.

Per association of ADDRESS with FIXED (nova's ``floating_forward_rules``):

- ``nova-network-PREROUTING -d ADDRESS/32 -j DNAT --to-destination FIXED``:
  the outside reaches the instance, its own source address intact;
- ``nova-network-OUTPUT`` the same: the controller itself reaches it;
- ``nova-network-float-snat -s FIXED/32 -j SNAT --to-source ADDRESS``: what
  the instance sends through the controller leaves with ADDRESS.

This is the Essex form, which the seed's era ran. Later releases split the
SNAT: Folsom added ``-o IF`` (bug 1048765: setups whose guests' gateway is
an outside router, and an instance with floating IPs of pools on different
interfaces), which then needed Grizzly's ``-s FIXED -d FIXED`` (an instance
reaching its own floating address, bug 1096259) and Newton's
``POSTROUTING -s FIXED -m conntrack --ctstate DNAT -j SNAT`` (an instance
reaching another one's floating address). novanet's guests route through
the controller, and the one Essex rule already covers both of those cases
(it is reached for DNATed traffic too: the POSTROUTING accepts of the seed
let only non-DNATed traffic within the network through). It also keeps
three rules per association instead of five: nf_tables' restore cost grows
with the rules in the table (BENCHMARKS.md). The price: an instance with
floating IPs on two interfaces leaves with the first one on both.

That covering holds while the controller routes those packets. With
br_netfilter on the controller (bridge-nf-call-iptables=1) a guest's packet
to a floating address is DNATed at the bridge, br_netfilter then bridges it
towards its ingress port (eth2), and the bridge drops it: no guest reaches a
floating address, its own included (found by trace's acceptance matrix,
tests/e2e/test_trace_matrix.py; open work).

nova also put an ebtables ``redirect`` on the bridge when the floating
interface is not the bridge, for guests whose gateway is an outside router
on the flat network; novanet's guests route through the controller (the
seed's 10.0.0.1), so their traffic reaches iptables already.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from novanet.linux.iptables.declare import Rules

FLOATING_CHAINS = ("PREROUTING", "OUTPUT", "float-snat")


class MappingLike(Protocol):
    @property
    def address(self) -> str: ...

    @property
    def fixed_address(self) -> str: ...


def mapping_rules(m: MappingLike) -> dict[str, list[str]]:
    """The nat rules of one association, by wrapped chain."""
    dnat = f"-d {m.address}/32 -j DNAT --to-destination {m.fixed_address}"
    return {
        "PREROUTING": [dnat],
        "OUTPUT": [dnat],
        "float-snat": [f"-s {m.fixed_address}/32 -j SNAT --to-source {m.address}"],
    }


def floating_rules(mappings: Sequence[MappingLike]) -> Rules:
    """The nat rules of every association, in association order (appends stay appends)."""
    chains: dict[str, list[str]] = {chain: [] for chain in FLOATING_CHAINS}
    for mapping in mappings:
        for chain, rules in mapping_rules(mapping).items():
            chains[chain].extend(rules)
    return {"nat": chains}


def with_floating(base: Rules, floating: Rules) -> Rules:
    """``base`` with ``floating``'s rules after its own in each chain (a new Rules)."""
    merged = {
        table: {chain: list(rules) for chain, rules in chains.items()}
        for table, chains in base.items()
    }
    for table, chains in floating.items():
        target = merged.setdefault(table, {})
        for chain, rules in chains.items():
            target.setdefault(chain, []).extend(rules)
    return merged


def snat_rules(cidr: str, routing_source_ip: str, force_snat_range: Sequence[str]) -> list[str]:
    """The fixed range's SNAT to routing_source_ip (nova's add_snat_rule).

    No force_snat_range: the seed's single rule. With it (Havana, bug
    1182143): only traffic to those ranges is SNATed, so that traffic
    bridged towards another gateway keeps its address.
    """
    if not force_snat_range:
        return [f"-s {cidr} -j SNAT --to-source {routing_source_ip}"]
    return [
        f"-s {cidr} -d {dest} -j SNAT --to-source {routing_source_ip}" for dest in force_snat_range
    ]
