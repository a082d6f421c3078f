"""dnsmasq's command line, as a pure function of the configuration and the network.

For the seed's configuration (networks_path=/var/lib/nova/networks,
dhcpbridge=/usr/bin/nova-dhcpbridge, dhcp_lease_time=120) the first arguments
are exactly the seed's (CONTRACT section 4)::

    /usr/sbin/dnsmasq --strict-order --bind-interfaces --conf-file= --domain=novalocal
    --pid-file=/var/lib/nova/networks/nova-br100.pid --listen-address=10.0.0.1
    --except-interface=lo --dhcp-range=10.0.0.2,static,120s --dhcp-lease-max=256
    --dhcp-hostsfile=/var/lib/nova/networks/nova-br100.conf
    --dhcp-script=/usr/bin/nova-dhcpbridge --leasefile-ro

Arguments novanet adds, always after the seed's (see :data:`EXTRA_ARGUMENTS_DOC`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from oslo_config import cfg

from novanet.dhcp.models import DhcpNetwork
from novanet.exception import UsageError

DNSMASQ = "/usr/sbin/dnsmasq"

# What the README should say about each argument novanet adds (copy as is).
EXTRA_ARGUMENTS_DOC = """\
novanet starts dnsmasq with the seed's arguments, in the seed's order, and
appends only arguments that fix a known nova-network bug:

* ``--no-hosts``: dnsmasq otherwise reads the controller's /etc/hosts and
  answers the instances' DNS queries with the controller's private names and
  addresses (nova-network bug: the host's /etc/hosts leaked to guests).
* ``--dhcp-authoritative``: after a dnsmasq restart its in-memory lease table
  starts from the dhcp-script's ``init`` output; without this flag a renewal
  dnsmasq has no lease for is NAKed and the guest drops its address
  (nova-network bug: guests lost their address after a dnsmasq restart).
* ``--no-resolv`` and one ``--server=ADDR`` per ``dns_server`` and then per
  distinct dns1/dns2 of the network with ``use_network_dns_servers = True``
  (nova's options, nova's order): dnsmasq then forwards the instances'
  queries to those servers instead of the controller's resolv.conf.
* ``--listen-address`` and ``--dhcp-range`` of each further network on the
  same bridge (``network create --num_networks N`` puts them there, as nova
  did; nova then served only one of them): one dnsmasq serves them all.
* ``--dhcp-optsfile=<networks_path>/nova-<bridge>.opts``, only with
  ``use_single_default_gateway = True`` (nova's option; nova passed it
  always): the router option per host tag (``net:NW-...`` in the hostsfile).
* ``--dhcp-hostsdir=<networks_path>/nova-<bridge>.d``, only for networks with
  more hosts than ``dhcp_hostsdir_threshold``: new hosts are written there as
  small files that dnsmasq reads through inotify, instead of a SIGHUP that
  re-reads the whole hostsfile with a quadratic duplicate check (0.25 s at
  10,000 hosts, 5 s at 50,000) during which no DHCP request is answered.
  Smaller networks keep exactly the seed's command line.

``--domain`` is left out when ``dhcp_domain`` is empty (as nova did from
2013: an empty ``--domain=`` made dnsmasq refuse to start), and ``--dhcp-lease-max`` is 256 for
networks up to /24 (the seed's value) and the number of addresses above, or
``dhcp_lease_max`` when set: dnsmasq refuses leases beyond it (its own
default is 1,000).
"""

_DOMAIN_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class NetworkFiles:
    """The per-bridge files under networks_path."""

    pid_file: str
    hostsfile: str
    hostsdir: str
    opts_file: str


@dataclass(frozen=True)
class DnsmasqCommand:
    """What to run: ``argv`` and the environment for dnsmasq (and its dhcp-script).

    dnsmasq runs its --dhcp-script with its own environment, so ``env`` is how
    the script learns which configuration files and network it works for.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def uses_hostsdir(self) -> bool:
        return any(arg.startswith("--dhcp-hostsdir=") for arg in self.argv)


def network_files(conf: cfg.ConfigOpts, bridge: str) -> NetworkFiles:
    """``<networks_path>/nova-<bridge>.pid``, ``.conf`` (hostsfile) and ``.d`` (hostsdir)."""
    if not bridge or "/" in bridge or bridge in (".", ".."):
        raise UsageError(f"invalid bridge name {bridge!r} for the dnsmasq files")
    base = os.path.join(conf.networks_path, f"nova-{bridge}")
    return NetworkFiles(
        pid_file=base + ".pid",
        hostsfile=base + ".conf",
        hostsdir=base + ".d",
        opts_file=base + ".opts",
    )


def check_domain(domain: str) -> str:
    """Validate ``dhcp_domain``: empty, or dot-separated DNS labels.

    A comma or space in it would split dnsmasq's ``--domain`` argument and
    every hostsfile line.

    :raises UsageError: naming the option and value
    """
    if domain and not all(_DOMAIN_LABEL.fullmatch(part) for part in domain.split(".")):
        raise UsageError(f"dhcp_domain={domain!r} is not a DNS domain name (labels a-z, 0-9, '-')")
    return domain


def lease_max(conf: cfg.ConfigOpts, network: DhcpNetwork) -> int:
    """dnsmasq's --dhcp-lease-max for ``network`` (see :data:`EXTRA_ARGUMENTS_DOC`)."""
    if conf.dhcp_lease_max:
        return int(conf.dhcp_lease_max)
    size = sum(ipaddress.IPv4Network(n.cidr, strict=False).num_addresses for n in network.subnets)
    return max(256, size)


def build_command(
    conf: cfg.ConfigOpts,
    network: DhcpNetwork,
    *,
    hostsdir: bool = False,
    script_env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    dnsmasq: str = DNSMASQ,
) -> DnsmasqCommand:
    """The dnsmasq command for ``network``.

    :param hostsdir: add ``--dhcp-hostsdir`` (the large-network fast path)
    :param script_env: environment for the dhcp-script, added to (and winning
        over) the defaults ``NOVANET_NETWORK_ID`` (the network's id) and, when
        ``dhcpbridge_flagfile`` is set, ``NOVANET_CONFIG_FILES`` (a JSON list of
        ``["config", ABSOLUTE_PATH]`` pairs, as novanet-dhcpbridge reads it);
        the daemon passes the files it was started with
    :param extra_args: appended last, for debugging and tests only (e.g.
        ``--log-facility=FILE``, ``--log-dhcp``); never in production
    :param dnsmasq: the binary (argv[0]); the seed's ps shows /usr/sbin/dnsmasq
    """
    files = network_files(conf, network.bridge)
    domain = check_domain(conf.dhcp_domain or "")
    lease = int(conf.dhcp_lease_time)
    argv = [
        dnsmasq,
        "--strict-order",
        "--bind-interfaces",
        f"--conf-file={conf.dnsmasq_config_file or ''}",
    ]
    if domain:
        argv.append(f"--domain={domain}")
    argv += [
        f"--pid-file={files.pid_file}",
        f"--listen-address={_ipv4(network.dhcp_server, 'dhcp_server')}",
        "--except-interface=lo",
        f"--dhcp-range={_ipv4(network.dhcp_start, 'dhcp_start')},static,{lease}s",
        f"--dhcp-lease-max={lease_max(conf, network)}",
        f"--dhcp-hostsfile={files.hostsfile}",
        f"--dhcp-script={conf.dhcpbridge}",
        "--leasefile-ro",
    ]
    # Extras: each fixes a nova-network bug or follows a nova option (EXTRA_ARGUMENTS_DOC).
    argv += ["--no-hosts", "--dhcp-authoritative"]
    servers = dns_servers(conf, network)
    if servers:
        argv.append("--no-resolv")
        argv += [f"--server={server}" for server in servers]
    for other in network.more:
        argv.append(f"--listen-address={_ipv4(other.dhcp_server, 'dhcp_server')}")
        argv.append(f"--dhcp-range={_ipv4(other.dhcp_start, 'dhcp_start')},static,{lease}s")
    if conf.use_single_default_gateway:
        argv.append(f"--dhcp-optsfile={files.opts_file}")
    if hostsdir:
        argv.append(f"--dhcp-hostsdir={files.hostsdir}")
    argv += list(extra_args)
    return DnsmasqCommand(tuple(argv), script_environment(conf, network, script_env))


def dns_servers(conf: cfg.ConfigOpts, network: DhcpNetwork) -> list[str]:
    """dnsmasq's upstream servers: dns_server, then the network's dns1/dns2 (nova's order).

    nova appended dns1/dns2 to the list even when they were already in it;
    dnsmasq would then ask the same server twice, so each appears once here.
    """
    servers = list(conf.dns_server or [])
    if conf.use_network_dns_servers:
        servers += [_ipv4(s, "dns") for s in (network.dns1, network.dns2) if s]
    return list(dict.fromkeys(servers))


def script_environment(
    conf: cfg.ConfigOpts, network: DhcpNetwork, script_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables the dhcp-script needs (see :func:`build_command`)."""
    env = {"NOVANET_NETWORK_ID": str(network.id)}
    if conf.dhcpbridge_flagfile:
        files = [["config", os.path.abspath(path)] for path in conf.dhcpbridge_flagfile]
        env["NOVANET_CONFIG_FILES"] = json.dumps(files)
    env.update(script_env or {})
    return env


def _ipv4(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        raise UsageError(f"network {what} {value!r} is not an IPv4 address") from None
