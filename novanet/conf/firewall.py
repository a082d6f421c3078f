"""iptables."""

from __future__ import annotations

from oslo_config import cfg

from novanet.conf import types

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
    cfg.Opt(
        "iptables_top_regex",
        default="",
        type=types.Regex(),
        help="Regular expression (Python syntax, searched in each rule as "
        "iptables-save prints it: '-A INPUT -j fail2ban-ssh') selecting rules of other "
        "programs that stay above novanet's rules in the chains novanet shares "
        "with them (INPUT, FORWARD, nova-filter-top...). novanet never moves "
        "other programs' rules; its own are placed below the last match. Empty: "
        "novanet's rules come first, as in nova.",
    ),
    cfg.Opt(
        "iptables_bottom_regex",
        type=types.Regex(),
        default="",
        help="Regular expression selecting rules of other programs that must stay "
        "below novanet's rules. Every other program's rule already is (novanet "
        "inserts its own above them and never moves theirs), so this only "
        "matters together with iptables_top_regex: a rule matching both counts "
        "as top, as in nova.",
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
        "the built-in chains are put back. On the controller, floating IP addresses "
        "removed from their interface by hand are put back too.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(firewall_opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", firewall_opts)]
