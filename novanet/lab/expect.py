"""What the lab must show: the seed's listings adapted to the lab's configuration.

Pure functions of a few facts (:class:`Setup`: paths, lease time, whether
novanet-metadata runs, allow_same_net_traffic, the instance's id); the
text itself comes from :mod:`novanet.lab.seeddata`, never from the code
under test, so a regression in the daemons makes a comparison fail.

Adaptations, each one what the article itself says would differ:

- the article's instance had id 9 (chain ``nova-compute-inst-9``); ours has
  the id novanet gave it;
- dnsmasq's paths follow ``networks_path`` and ``dhcpbridge``, and its lease
  time ``dhcp_lease_time`` (86400 s today, 120 s in the article's era);
- the controller's ``nova-api-*`` chains are there whether or not
  novanet-metadata runs: novanet-network installs them (the metadata
  service runs unprivileged);
- with allow_same_net_traffic=false the instance chain has no
  ``-s 10.0.0.0/24 -j ACCEPT`` (the article's NOTE says so).
"""

from __future__ import annotations

import dataclasses
import re

from novanet.lab import seeddata

# dnsmasq arguments novanet appends to the seed's, and the nova-network bug each fixes.
DNSMASQ_EXTRAS = {
    "--no-hosts": "dnsmasq served the controller's /etc/hosts to the guests",
    "--dhcp-authoritative": "after a dnsmasq restart, renewals were NAKed and guests "
    "lost their address",
}


@dataclasses.dataclass(frozen=True)
class Setup:
    """The facts of one lab the expectations depend on."""

    networks_path: str
    dhcpbridge: str
    lease_time: int = 86400
    metadata: bool = True
    allow_same_net_traffic: bool = True


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def route_rows(text: str) -> list[str]:
    """``route -n`` rows without the Ref and Use columns (always 0), spaces collapsed."""
    rows = []
    for line in lines(text):
        fields = line.split()
        if len(fields) == 8 and fields[0][0].isdigit():
            rows.append(" ".join(fields[:5] + fields[7:]))
    return rows


# -- controller-1 ---------------------------------------------------------------------


def controller_interfaces() -> list[str]:
    """eth1 with its address, eth2 promiscuous in br100 without one, br100 with 10.0.0.1/24."""
    flags = {"eth1": "<UP>", "eth2": "<UP,PROMISC> master br100", "br100": "<UP>"}
    out = []
    for name, (mac, inet) in seeddata.CONTROLLER_IP_A.items():
        out += [f"{name}: {flags[name]}", f"    link/ether {mac}"]
        if inet:
            out.append(f"    {inet}")
    return out


def controller_bridges() -> list[str]:
    return [" ".join(seeddata.CONTROLLER_BRCTL_SHOW.split())]


def controller_routes() -> list[str]:
    return route_rows(seeddata.CONTROLLER_ROUTE_N)


def dnsmasq_argv(setup: Setup) -> list[str]:
    """The seed's dnsmasq command line with the lab's paths and lease time."""
    argv = []
    for arg in lines(seeddata.CONTROLLER_DNSMASQ_ARGV):
        arg = arg.replace(seeddata.SEED_NETWORKS_PATH, setup.networks_path.rstrip("/"))
        arg = arg.replace(seeddata.SEED_DHCPBRIDGE, setup.dhcpbridge)
        arg = arg.replace(seeddata.SEED_LEASE_TIME, f"{setup.lease_time}s")
        argv.append(arg)
    return argv


def hostsfile() -> list[str]:
    return lines(seeddata.CONTROLLER_HOSTSFILE_AFTER_BOOT)


def controller_filter(setup: Setup) -> list[str]:
    return lines(seeddata.CONTROLLER_IPTABLES_FILTER)


def controller_nat(setup: Setup) -> list[str]:
    return lines(seeddata.CONTROLLER_IPTABLES_NAT)


def nova_conf_head() -> list[str]:
    return lines(seeddata.CONTROLLER_NOVA_CONF)


# -- compute-1 and the instance ---------------------------------------------------------

_SEED_CHAIN = re.compile(rf"\bnova-compute-inst-{seeddata.SEED_INSTANCE_ID}\b")
_SAME_NET = f"-s {seeddata.FIXED_RANGE} -j ACCEPT"


def compute_filter(setup: Setup, instance_id: int) -> list[str]:
    """The seed's compute-1 listing for our instance id (and allow_same_net_traffic)."""
    out = []
    for line in lines(seeddata.COMPUTE_1_IPTABLES_FILTER):
        line = _SEED_CHAIN.sub(f"nova-compute-inst-{instance_id}", line)
        if not setup.allow_same_net_traffic and line.endswith(_SAME_NET):
            continue
        out.append(line)
    return out


def compute_interfaces() -> list[str]:
    """br100 up without an IPv4 address; vnet0 in it with the MAC the article shows."""
    return [
        "br100: <UP>",
        f"    link/ether {seeddata.COMPUTE_1_ETH2_MAC}",
        "vnet0: <UP> master br100",
        f"    link/ether {seeddata.COMPUTE_1_VNET0_MAC}",
    ]


def compute_bridges() -> list[str]:
    """brctl show on compute-1: br100 (id from eth2's MAC, its first port) with eth2 and vnet0."""
    bridge_id = "8000." + seeddata.COMPUTE_1_ETH2_MAC.replace(":", "")
    return [f"br100 {bridge_id} no eth2 vnet0"]


def guest_interface() -> list[str]:
    """eth0 of the instance: the instance's MAC, 10.0.0.2/24 from DHCP."""
    return [f"eth0: link/ether {seeddata.CIRROS_MAC}", seeddata.GUEST_INET]


def guest_routes() -> list[str]:
    return route_rows(seeddata.GUEST_ROUTE_N)


def instance_id_text(instance_id: int) -> str:
    """The EC2-style id the metadata service gives (the seed's i-00000009 for id 9)."""
    return f"i-{instance_id:08x}"


def cloud_setup_line(iid: str, tries: int, uptime: float, max_tries: int = 30) -> str:
    """Our guest's counterpart of the seed's cloud-setup console line."""
    return f"cloud-setup: successful after {tries}/{max_tries} tries: up {uptime:.2f}. iid={iid}"
