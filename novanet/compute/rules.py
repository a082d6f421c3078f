"""A compute host's iptables rules, as data (the seed's compute-1 listing).

Only traffic TO an instance is filtered (nova-network's model): the shared
``nova-filter-top`` jumps to ``local``, which sends packets for each fixed IP
to that instance's chain ``inst-<integer id>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from novanet.compute import dispatch
from novanet.linux.iptables.declare import Rules
from novanet.network.rules import gateway_rules


@dataclass(frozen=True)
class InstanceFilter:
    """What an instance's chain needs: its id, address and network."""

    id: int
    address: str
    cidr: str
    dhcp_server: str
    # Its security-group rules, rendered (novanet.compute.secgroups.render).
    accepts: tuple[str, ...] = ()


def base_rules(
    bridges: Iterable[str], drop_action: str = "DROP", forward_interfaces: Iterable[str] = ("all",)
) -> Rules:
    """The agent's rules without instances: bridge forwarding, provider, sg-fallback.

    Bridge forwarding follows forward_bridge_interface on compute hosts too:
    nova's compute plugged its bridge with the same gateway rules.
    """
    forward: list[str] = []
    for bridge in bridges:
        forward += gateway_rules(bridge, list(forward_interfaces), _drop(drop_action))
    chains = {
        "FORWARD": forward,
        # Admin rules applying to every instance go here (empty by default).
        "provider": [],
        "sg-fallback": [_drop(drop_action)],
    }
    if drop_action == "LOGDROP":
        chains["logdrop"] = ['-j LOG --log-prefix "novanet-drop: "', "-j DROP"]
    return {"filter": chains}


def _drop(action: str) -> str:
    if action == "REJECT":
        return "-j REJECT --reject-with icmp-port-unreachable"
    if action == "LOGDROP":
        return "-j $logdrop"
    return "-j DROP"


def chain_name(instance_id: int) -> str:
    return f"inst-{instance_id}"


def instance_chain(inst: InstanceFilter, allow_same_net_traffic: bool = True) -> list[str]:
    """The rules of chain ``inst-N``, in the seed's order."""
    rules = [
        "-m state --state INVALID -j DROP",
        "-m state --state RELATED,ESTABLISHED -j ACCEPT",
        "-j $provider",
        f"-s {inst.dhcp_server}/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT",
    ]
    if allow_same_net_traffic:
        rules.append(f"-s {inst.cidr} -j ACCEPT")
    rules.extend(inst.accepts)  # security groups: none keeps the seed's chain
    rules.append("-j $sg-fallback")
    return rules


def local_jump(inst: InstanceFilter) -> str:
    """The rule of chain ``local`` sending traffic for the instance to its chain."""
    return dispatch.jump(inst.address, chain_name(inst.id))
