"""The compute agent and instances."""

from __future__ import annotations

from oslo_config import cfg

compute_opts = [
    cfg.StrOpt(
        "instance_name_template",
        default="instance-%08x",
        help="printf template giving an instance's name from its integer id "
        "(instance-00000009). With the netns VIF the instance's network namespace "
        "has this name.",
    ),
    cfg.StrOpt(
        "default_vif_type",
        default="tap",
        choices=["tap", "netns"],
        help="VIF type of 'instance create' when --vif-type is not given: 'tap' (a "
        "persistent tap vnetN for QEMU) or 'netns' (a veth pair into a network "
        "namespace standing in for the guest).",
    ),
    cfg.BoolOpt(
        "vif_antispoof",
        default=True,
        help="Anti-spoofing on every instance port of this compute host (nova-network's "
        "nwfilter nova-base): a frame entering the bridge from an instance's vnetN is "
        "dropped unless its Ethernet source is the instance's MAC; ARP must carry the "
        "instance's MAC and fixed IP (0.0.0.0 for address probes); IPv4 must come from "
        "the fixed IP (0.0.0.0 only for DHCP requests, udp 68 -> 67); DHCP server "
        "traffic (udp from port 67 or to port 68) is always dropped, and so is every "
        "other ethertype (novanet is IPv4-only). Kept in the nftables table 'bridge "
        "novanet' (nft list table bridge novanet), repaired every "
        "iptables_check_interval seconds. False: the table is deleted at start and "
        "guests can send with any address (a warning is logged).",
    ),
    cfg.IntOpt(
        "resync_interval",
        default=60,
        min=1,
        help="Seconds between two resyncs of novanet-compute with the controller: the "
        "instances of this host are read over RPC and every missing device, chain, "
        "set or anti-spoofing entry is made (a restart resyncs at once; a SIGHUP "
        "applies a new value from the next wait on).",
    ),
    cfg.IntOpt(
        "iptables_local_buckets_above",
        default=256,
        min=0,
        help="With more instances than this on the host, nova-compute-local jumps to "
        "one bucket chain per /26 of addresses (-d 10.0.1.0/26 -j nova-compute-l-0a000100) "
        "and each bucket to its instances' chains, so that adding or removing an "
        "instance, and every packet, walks two short chains instead of one per "
        "instance. Below half of it the jumps move back into nova-compute-local (the "
        "seed's listing). 0: never split. Read at start.",
    ),
    cfg.IntOpt(
        "instance_create_timeout",
        default=30,
        min=1,
        help="Seconds the network service waits for the compute host to plug an "
        "instance before it gives up, rolls the allocation back and reports the "
        "failure.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(compute_opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", compute_opts)]
