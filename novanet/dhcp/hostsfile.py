"""dnsmasq's hostsfile: validated lines, deterministic text, atomic writes.

One ``MAC,HOSTNAME.DOMAIN,IP`` line per allocated fixed IP (the seed:
``fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2``), sorted by address, first
address per MAC only (nova's rule: dnsmasq can give a MAC one IPv4 address).
Every field is validated before it is written: a row with a bad MAC or
address is left out and logged, never written, because dnsmasq reads the
whole file again on every SIGHUP and one malformed line (a comma or newline
in a name, a ``tag:`` prefix) would change what it serves to other hosts.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from novanet.dhcp import labels
from novanet.dhcp.models import DhcpHost

LOG = logging.getLogger(__name__)

_MAC = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")
_OCTET = r"(0|[1-9][0-9]{0,2})"
_IPV4 = re.compile(r"\.".join([_OCTET] * 4))


class InvalidHost(ValueError):
    """A host row that must not be written to the hostsfile."""


@dataclass(frozen=True)
class HostEntry:
    """A validated host: lower-case MAC, DNS-label hostname, canonical IPv4."""

    mac: str
    hostname: str
    address: str
    sort_key: int

    def line(self, domain: str, tagged: bool = False) -> str:
        """``MAC,HOSTNAME.DOMAIN,IP``; with ``tagged``, also ``,net:TAG`` (:func:`host_tag`).

        An empty domain gives ``HOSTNAME.`` as nova wrote it (``%s.%s``);
        dnsmasq 2.90 hands out the same name for ``cirros.`` and ``cirros``.
        """
        line = f"{self.mac},{self.hostname}.{domain},{self.address}"
        return f"{line},net:{host_tag(self.mac)}" if tagged else line


def host_tag(mac: str) -> str:
    """The dnsmasq tag of one host for use_single_default_gateway.

    nova tagged each host ``NW-<virtual interface id>``; the MAC names that
    interface just as well, and the hostsfile line already carries it.
    """
    return "NW-" + mac.replace(":", "")


def opts_text(entries: Iterable[HostEntry], gateway: str) -> str:
    """The --dhcp-optsfile of use_single_default_gateway: option 3 (router) per host.

    nova gave the router only to the fixed IP holding the instance's default
    route and an empty option 3 to its other NICs; a novanet instance has one
    NIC, which holds the default route, so every host gets ``TAG,3,GATEWAY``.
    """
    ordered = sorted(entries, key=lambda e: e.sort_key)
    return "".join(f"{host_tag(entry.mac)},3,{gateway}\n" for entry in ordered)


def validate_host(host: DhcpHost, network: ipaddress.IPv4Network | None = None) -> HostEntry:
    """Validate one row; ``network``, when given, must contain the address.

    A hostname that is not a DNS label is relabelled (with a name derived from
    the address as fallback) rather than refused: the instance still gets
    its address, and the hostsfile still gets one safe field.

    :raises InvalidHost: bad MAC or address
    """
    mac = str(host.mac)
    if not _MAC.fullmatch(mac):
        raise InvalidHost(f"invalid MAC address {mac!r}")
    if mac in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff") or int(mac[:2], 16) & 1:
        raise InvalidHost(f"MAC address {mac!r} is not a unicast address")
    text = str(host.address)
    # Canonical dotted quad only ('010.0.0.2' is refused: dnsmasq and the
    # database would not agree on which address that is). A regex instead of
    # ipaddress: startup validates every host of a 50,000-host network.
    match = _IPV4.fullmatch(text)
    octets = [int(part) for part in match.groups()] if match else []
    if not octets or max(octets) > 255:
        raise InvalidHost(f"invalid IPv4 address {text!r}")
    key = (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]
    if network is not None and key & int(network.netmask) != int(network.network_address):
        raise InvalidHost(f"address {text} is outside network {network}")
    hostname = str(host.hostname)
    if not labels.is_dns_label(hostname):
        fallback = "host-" + text.replace(".", "-")
        relabelled = labels.dns_label(hostname, fallback)
        LOG.warning("hostname %r of %s is not a DNS label; using %r", hostname, text, relabelled)
        hostname = relabelled
    return HostEntry(mac.lower(), hostname, text, key)


def select_hosts(
    hosts: Iterable[DhcpHost],
    network: ipaddress.IPv4Network | None = None,
    on_reject: Callable[[DhcpHost, str], None] | None = None,
) -> list[HostEntry]:
    """The hostsfile entries for ``hosts``: valid rows, one per MAC and per address.

    The list is in no particular order (:func:`hostsfile_text` sorts). Rows
    left out are reported to ``on_reject`` (default: an error in the log).
    """
    reject = on_reject or log_reject
    entries = []
    for host in hosts:
        try:
            entries.append(validate_host(host, network))
        except InvalidHost as exc:
            reject(host, str(exc))
    return one_per_mac_and_ip(entries, reject)


def one_per_mac_and_ip(
    entries: list[HostEntry], on_reject: Callable[[DhcpHost, str], None]
) -> list[HostEntry]:
    """One entry per address (lowest MAC), then one per MAC (lowest address).

    Two MACs on one address is an allocation bug upstream; dnsmasq would
    refuse the second line anyway ("duplicate dhcp-host IP address"), so the
    choice is made here, deterministically and loudly. A MAC with several
    addresses keeps its first (lowest) one: nova's rule, as a DHCP client
    gets one IPv4 address. O(n) without sorting: a reload of a large network
    only needs the set; the text is sorted when it is written.
    """
    by_ip: dict[int, HostEntry] = {}
    for entry in entries:
        other = by_ip.get(entry.sort_key)
        if other is None:
            by_ip[entry.sort_key] = entry
            continue
        if entry == other:
            continue
        keep, drop = (
            (other, entry)
            if (other.mac, other.hostname) <= (entry.mac, entry.hostname)
            else (entry, other)
        )
        by_ip[entry.sort_key] = keep
        on_reject(
            DhcpHost(drop.mac, drop.hostname, drop.address),
            f"address {drop.address} is already given to {keep.mac}",
        )
    by_mac: dict[str, HostEntry] = {}
    for entry in by_ip.values():
        other = by_mac.get(entry.mac)
        if other is None or entry.sort_key < other.sort_key:
            by_mac[entry.mac] = entry
    return list(by_mac.values())


def log_reject(host: DhcpHost, reason: str) -> None:
    LOG.error("host %r left out of the dnsmasq hostsfile: %s", host, reason)


def hostsfile_text(entries: Iterable[HostEntry], domain: str, tagged: bool = False) -> str:
    """The file's text: one line per entry sorted by address, each ending in a newline.

    No entries: the empty string (the seed's empty file).
    """
    ordered = sorted(entries, key=lambda e: e.sort_key)
    return "".join(entry.line(domain, tagged) + "\n" for entry in ordered)


def render(hosts: Iterable[DhcpHost], domain: str) -> str:
    """Hostsfile text for raw rows (validation, order and dedup included)."""
    return hostsfile_text(select_hosts(hosts), domain)


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text``: temp file in the same directory, fsync, rename.

    dnsmasq may read the file at any moment (SIGHUP, inotify); it must see the
    old or the new content, never a half-written file. The temp file's name
    starts with '.', which dnsmasq's --dhcp-hostsdir watcher ignores.
    """
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
