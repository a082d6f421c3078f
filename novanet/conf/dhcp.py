"""dnsmasq and the dhcp-script."""

from __future__ import annotations

from oslo_config import cfg

from novanet.conf import types

dhcp_opts = [
    cfg.IntOpt(
        "dhcp_lease_time",
        default=86400,
        min=120,
        help="DHCP lease time in seconds (dnsmasq --dhcp-range=...,<N>s). nova used "
        "120 s until 2014; that made every guest renew each minute and loaded "
        "dnsmasq and the dhcp-script, hence the one-day default. dnsmasq's minimum "
        "is 120. Changing it restarts dnsmasq (a SIGHUP does not reload it).",
    ),
    cfg.StrOpt(
        "dhcp_domain",
        default="novalocal",
        help="DNS domain of the instances: hostsfile names are <label>.<domain> and "
        "dnsmasq gets --domain. Empty: no domain (nova then produced a broken "
        "'--domain=' argument; novanet leaves the argument out).",
    ),
    cfg.StrOpt(
        "dhcpbridge",
        default="$bindir/novanet-dhcpbridge",
        help="Path of the program dnsmasq runs as --dhcp-script on every lease change.",
    ),
    cfg.MultiStrOpt(
        "dhcpbridge_flagfile",
        default=[],
        help="Configuration files novanet-dhcpbridge reads (passed to dnsmasq's "
        "environment). Empty: the files the network daemon itself was started with.",
    ),
    cfg.StrOpt(
        "dnsmasq_config_file",
        default="",
        help="Extra dnsmasq configuration file, passed as --conf-file. Empty gives "
        "the seed's '--conf-file=' (no file: dnsmasq must not read /etc/dnsmasq.conf).",
    ),
    cfg.BoolOpt(
        "force_dhcp_release",
        default=True,
        help="On deallocation, after the hostsfile is rewritten and dnsmasq reloaded, "
        "send a DHCPRELEASE for the lease with dhcp_release (dnsmasq-utils) so the "
        "address is freed at once instead of when the lease expires.",
    ),
    cfg.MultiOpt(
        "dns_server",
        item_type=types.DnsServer(),
        default=None,  # none (oslo checks a default list against the item type)
        help="Upstream DNS servers of dnsmasq (nova's option: repeat it for each "
        "server). When any is set (here or through use_network_dns_servers), "
        "dnsmasq gets --no-resolv and one --server= per server, in this order, and "
        "no longer reads the controller's /etc/resolv.conf. Each value is an address, "
        "optionally ADDRESS#PORT or /DOMAIN/ADDRESS. Changing it restarts dnsmasq.",
    ),
    cfg.BoolOpt(
        "use_network_dns_servers",
        default=False,
        help="Give dnsmasq the network's dns1/dns2 as upstream servers too (after "
        "dns_server; --server, with --no-resolv). Default: dnsmasq forwards with the "
        "host's resolv.conf.",
    ),
    cfg.BoolOpt(
        "use_single_default_gateway",
        default=False,
        help="nova's option for instances with several NICs: only the fixed IP that "
        "holds the instance's default route gets the router option (3) by DHCP, the "
        "others get an empty one. dnsmasq then tags every host (net:NW-<MAC> in "
        "the hostsfile; nova used the VIF's id) and reads the options per tag from "
        "<networks_path>/nova-<bridge>.opts (--dhcp-optsfile). A novanet instance "
        "has one NIC, which holds the default route: guests see the same router.",
    ),
    cfg.BoolOpt(
        "share_dhcp_address",
        default=False,
        deprecated_for_removal=True,
        help="nova's (deprecated) option for multi-host networks: the DHCP server "
        "address is cut off from flat_interface (ebtables drops ARP for it and DHCP "
        "across it), so that every host can hold the same address for its own "
        "instances. novanet runs one network host: only instances on the "
        "controller itself can then reach the gateway (an all-in-one host).",
    ),
    cfg.IntOpt(
        "dhcp_lease_max",
        default=0,
        min=0,
        help="dnsmasq --dhcp-lease-max. 0: 256 for networks up to /24 (the seed's "
        "value), otherwise the number of addresses of the network (dnsmasq refuses "
        "leases beyond it, its own default being 1,000).",
    ),
    cfg.IntOpt(
        "dhcp_hostsdir_threshold",
        default=256,
        min=0,
        help="Networks with more allocated addresses than this get new hosts through "
        "a --dhcp-hostsdir file (read by dnsmasq with inotify, no reload) instead of "
        "a hostsfile rewrite and SIGHUP, which takes dnsmasq 0.25 s at 10,000 hosts "
        "and 5 s at 50,000 while it answers no DHCP. A network keeps the hostsdir "
        "until it falls below 90% of the threshold (switching restarts dnsmasq). "
        "dnsmasq's cost per change also grows with the leases it holds: on every "
        "SIGHUP it runs the dhcp-script once per lease (1 ms each), so a network of "
        "a few hundred leased instances already gains from the hostsdir. 0 disables "
        "the hostsdir. Smaller networks (the seed's /24 holds at most 253 instances) "
        "keep the seed's exact command line.",
    ),
    cfg.FloatOpt(
        "dnsmasq_reload_delay",
        default=0.05,
        min=0,
        help="An isolated change is applied to dnsmasq at once; changes arriving "
        "within this many seconds of a reload are gathered into one more reload, "
        "so a burst of allocations costs a few reloads instead of one each.",
    ),
    cfg.IntOpt(
        "dnsmasq_check_interval",
        default=5,
        min=1,
        help="Seconds between checks that each network's dnsmasq is alive; a dead one "
        "is restarted (leases survive: the dhcp-script's 'init' reloads them).",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(dhcp_opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", dhcp_opts)]
