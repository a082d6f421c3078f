"""iptables."""

from __future__ import annotations

from oslo_config import cfg

firewall_opts = [
    cfg.StrOpt(
        "iptables_prefix",
        default="nova",
        help="Prefix of every iptables chain novanet owns: <prefix>-<binary>-<CHAIN> "
        "(nova-network-INPUT, nova-compute-inst-9, nova-api-INPUT) and the shared "
        "<prefix>-filter-top and <prefix>-postrouting-bottom. The default keeps "
        "the seed's names. At most 11 characters (iptables chain names are limited "
        "to 28).",
    ),
    cfg.StrOpt(
        "iptables_drop_action",
        default="DROP",
        choices=["DROP", "REJECT", "LOGDROP"],
        help="Target of the sg-fallback chain for traffic to an instance that no rule accepted.",
    ),
    cfg.BoolOpt(
        "allow_same_net_traffic",
        default=True,
        help="Accept all traffic to an instance from its own fixed network "
        "(-s <cidr> -j ACCEPT in its chain). False: only DHCP from the DHCP server "
        "and replies to the instance's own connections get in.",
    ),
    cfg.StrOpt(
        "iptables_backend",
        default="auto",
        choices=["auto", "nft", "legacy"],
        help="Which iptables to drive: 'nft' (iptables-nft-restore), 'legacy' "
        "(iptables-legacy-restore) or 'auto' (whatever iptables-restore on PATH is).",
    ),
    cfg.IntOpt(
        "iptables_check_interval",
        default=10,
        min=1,
        help="Seconds between checks that novanet's chains are intact. A chain that was "
        "flushed, edited or deleted by hand is rewritten, and missing jumps from "
        "the built-in chains are put back.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(firewall_opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", firewall_opts)]
