"""The controller's rules for floating IPs, as data: nova-network's, one group per association.

Pure functions of the associations (:class:`novanet.db.floating.Mapping`, in
association order) and the configuration; novanet.network.host merges them
into the controller's rules (:func:`with_floating`) and the iptables manager
applies the difference. Rules are in the form ``iptables -S`` prints.

Per association of ADDRESS with FIXED on interface IF (nova's
``floating_forward_rules``, in its final form, Grizzly..Newton):

- ``nova-network-PREROUTING -d ADDRESS/32 -j DNAT --to-destination FIXED``:
  the outside reaches the instance, its own source address intact;
- ``nova-network-OUTPUT`` the same: the controller itself reaches it;
- ``nova-network-float-snat -s FIXED/32 -d FIXED/32 -j SNAT --to-source ADDRESS``
  (Grizzly: an instance reaching its own floating address gets the reply
  from it, not from its fixed address) and ``-s FIXED/32 -o IF -j SNAT
  --to-source ADDRESS`` (Folsom: the instance leaves through IF with its
  floating address; other destinations keep the fixed-range SNAT). Essex
  had the single ``-s FIXED/32 -j SNAT``;
- ``nova-network-POSTROUTING -s FIXED/32 -m conntrack --ctstate DNAT -j SNAT
  --to-source ADDRESS`` (Newton, "Reverse path SNAT for DNAT floating-ip"):
  an instance reaching another one's floating address is seen by it with
  its own floating address, so the reply comes back through the
  controller's DNAT instead of straight over the bridge (where the
  sender would drop it: wrong source).

nova also put an ebtables ``redirect`` on the bridge when the floating
interface is not the bridge, for networks whose guests' gateway is an
outside router on the flat network (``external_gateway``); novanet's guests
route through the controller (the seed's 10.0.0.1), so their traffic
reaches iptables already and that rule is not needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from novanet.linux.iptables.declare import Rules

FLOATING_CHAINS = ("PREROUTING", "OUTPUT", "POSTROUTING", "float-snat")


class MappingLike(Protocol):
    @property
    def address(self) -> str: ...

    @property
    def fixed_address(self) -> str: ...

    @property
    def interface(self) -> str: ...


def mapping_rules(m: MappingLike) -> dict[str, list[str]]:
    """The nat rules of one association, by wrapped chain."""
    dnat = f"-d {m.address}/32 -j DNAT --to-destination {m.fixed_address}"
    snat = f"-j SNAT --to-source {m.address}"
    src = f"-s {m.fixed_address}/32"
    return {
        "PREROUTING": [dnat],
        "OUTPUT": [dnat],
        "POSTROUTING": [f"{src} -m conntrack --ctstate DNAT {snat}"],
        "float-snat": [f"{src} -d {m.fixed_address}/32 {snat}", f"{src} -o {m.interface} {snat}"],
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
