"""Floating IPs: pools, automatic assignment, gratuitous ARP, forced SNAT ranges.

Names, defaults and meanings are nova-network's (Newton's nova/conf/network.py),
so that a nova.conf carrying them loads unchanged.
"""

from __future__ import annotations

from oslo_config import cfg

from novanet.conf import types

floating_opts = [
    cfg.StrOpt(
        "default_floating_pool",
        default="nova",
        help="Pool of 'novanet-manage floating create' when --pool is not given, and "
        "the pool automatically assigned addresses (auto_assign_floating_ip) and "
        "'instance create --floating-ip' without an address come from.",
    ),
    cfg.BoolOpt(
        "auto_assign_floating_ip",
        default=False,
        help="Give every new instance a floating IP from default_floating_pool. An "
        "instance is created without one (and a warning is logged) when the pool is "
        "empty; its address goes back to the pool when the instance is deleted.",
    ),
    cfg.BoolOpt(
        "send_arp_for_ha",
        default=False,
        help="Send gratuitous ARP for a floating IP when it is associated, so that "
        "the neighbours on its interface (routers, the outside gateway) update their "
        "ARP caches at once instead of when their entry expires.",
    ),
    cfg.IntOpt(
        "send_arp_for_ha_count",
        default=3,
        min=0,
        help="How many gratuitous ARP packets to send, one per second, the first at "
        "once (with send_arp_for_ha). 0: none.",
    ),
    cfg.MultiOpt(
        "force_snat_range",
        item_type=types.IPv4Network(),
        help="Destination CIDRs that traffic from the fixed ranges without a floating "
        "IP is SNATed to routing_source_ip for: one rule per range in "
        "nova-network-snat. Empty (the default): all such traffic, with the seed's "
        "single rule '-s <fixed range> -j SNAT --to-source <routing_source_ip>'. "
        "Repeatable; each value is a CIDR.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(floating_opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", floating_opts)]
