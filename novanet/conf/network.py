"""The FlatDHCP network: manager, bridge, interfaces, NAT."""

from __future__ import annotations

from oslo_config import cfg

from novanet.conf import types

SUPPORTED_MANAGERS = [
    "nova.network.manager.FlatDHCPManager",
    "novanet.network.manager.FlatDHCPManager",
]

network_opts = [
    cfg.Opt(
        "network_manager",
        type=types.Choice(SUPPORTED_MANAGERS, "FlatDHCPManager"),
        default="novanet.network.manager.FlatDHCPManager",
        help="Network manager class. novanet implements FlatDHCP only; nova's class "
        "path is accepted so an existing nova.conf loads unchanged. Any other "
        "manager (FlatManager, VlanManager) is refused at start.",
    ),
    cfg.StrOpt(
        "flat_network_bridge",
        help="Bridge the instances are attached to (br100 in the seed). Default of "
        "'novanet-manage network create --bridge'.",
    ),
    cfg.StrOpt(
        "flat_interface",
        help="Physical interface of the VM network, enslaved to the bridge on every "
        "node (eth2 in the seed). It should be up and in promiscuous mode. Any IPv4 "
        "addresses and routes it holds are moved to the bridge. Unset: the bridge "
        "gets no physical port (a single-host setup).",
    ),
    cfg.IntOpt(
        "bridge_check_interval",
        default=10,
        min=1,
        help="Seconds between checks that each bridge is as novanet set it up, on "
        "the controller and on compute hosts. A bridge deleted or changed by hand "
        "(ip link del br100) is made again with its flat interface; on the "
        "controller its gateway address is put back first and dnsmasq is restarted "
        "when that address had gone (with --bind-interfaces it cannot re-bind a "
        "vanished address); on a compute host every instance's device is attached "
        "to it again, unchanged (a tap QEMU holds open keeps working). A check "
        "costs a few netlink requests per bridge.",
    ),
    cfg.StrOpt(
        "flat_network_dns",
        default="8.8.4.4",
        help="DNS server stored as dns1 of a network created without --dns1. Given to "
        "dnsmasq as upstream only with use_network_dns_servers; guests always use "
        "dnsmasq on the gateway address as their resolver.",
    ),
    cfg.Opt(
        "fixed_range",
        type=types.IPv4Network(),
        help="Default CIDR for 'novanet-manage network create' when --fixed_range_v4 "
        "is not given (nova's legacy flag, kept because the seed's nova.conf sets "
        "it). Unset: the CIDR must be given.",
    ),
    cfg.IntOpt(
        "num_networks",
        default=1,
        min=1,
        help="Default number of networks 'network create' splits the range into.",
    ),
    cfg.IntOpt(
        "network_size",
        min=4,
        help="Default number of addresses per network for 'network create'. Unset: "
        "the range divided by the number of networks.",
    ),
    cfg.IntOpt(
        "max_network_size",
        default=65536,
        min=4,
        help="Most addresses one 'novanet-manage network create' may create (one "
        "network, or all of them with --num_networks), a /16 by default. Each address "
        "is a row of the fixed_ips table: a /16 is written in about a second, a /8 "
        "would be 16.7 million rows. A larger request is refused at once, before "
        "anything is written; raise this only for a network that really needs it "
        "(dnsmasq then serves it from the hostsdir, see dhcp_hostsdir_threshold).",
    ),
    cfg.StrOpt(
        "public_interface",
        default="eth0",
        help="Interface holding routing_source_ip, the controller's outside address "
        "(eth1 in the seed). Used for the SNAT of the fixed range.",
    ),
    cfg.IPOpt(
        "routing_source_ip",
        version=4,
        default="$my_ip",
        help="Source address the controller SNATs instance traffic leaving the fixed range to.",
    ),
    cfg.ListOpt(
        "dmz_cidr",
        item_type=types.IPv4Network(),
        default=[],
        help="Comma-separated CIDRs that instances reach without SNAT (each gets a "
        "POSTROUTING ACCEPT rule). Empty by default.",
    ),
    cfg.MultiStrOpt(
        "forward_bridge_interface",
        default=["all"],
        help="Interfaces a network's bridge may forward traffic to (nova's option, "
        "repeat it per interface). 'all' (the default) gives the seed's "
        "'-i br100 -j ACCEPT' and '-o br100 -j ACCEPT'; otherwise forwarding is "
        "accepted between the bridge and each listed interface and within the "
        "bridge, and everything else from or to the bridge gets "
        "iptables_drop_action.",
    ),
    cfg.IntOpt(
        "create_unique_mac_address_attempts",
        default=5,
        min=1,
        help="How many random MAC addresses (fa:16:3e:xx:xx:xx) are tried for an "
        "instance before the allocation fails because each was taken.",
    ),
    cfg.IntOpt(
        "fixed_ip_disassociate_timeout",
        default=600,
        min=0,
        help="Seconds after deallocation before a fixed IP whose lease dnsmasq never "
        "released goes back to the pool. Until then the address is not handed to "
        "another instance, so a guest still holding the old lease cannot clash "
        "with a new one.",
    ),
    cfg.BoolOpt(
        "multi_host",
        default=False,
        help="Accepted for nova compatibility; novanet runs single-host FlatDHCP "
        "(one controller serves DHCP and the gateway). A network created with "
        "--multi_host T is refused.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(network_opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", network_opts)]
