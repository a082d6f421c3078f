"""The plain data the DHCP layer works on (the caller maps database rows to them)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DhcpNetwork:
    """One FlatDHCP network served by one dnsmasq on ``bridge``.

    ``dhcp_server`` is the address dnsmasq listens on (the gateway in the seed),
    ``dhcp_start`` the first address of the static range, ``dns1``/``dns2`` the
    upstream servers used with ``use_network_dns_servers``. ``more`` holds the
    other networks on the same bridge (``network create --num_networks N``):
    the one dnsmasq of the bridge serves them too.
    """

    id: int
    bridge: str
    cidr: str
    gateway: str
    dhcp_server: str
    dhcp_start: str
    broadcast: str
    netmask: str
    dns1: str | None = None
    dns2: str | None = None
    more: tuple[DhcpNetwork, ...] = field(default=())

    @property
    def subnets(self) -> tuple[DhcpNetwork, ...]:
        """This network and the others on its bridge, in order."""
        return (self, *self.more)


@dataclass(frozen=True)
class DhcpHost:
    """One allocated fixed IP: a hostsfile line ``MAC,HOSTNAME.DOMAIN,IP``.

    ``hostname`` is already a DNS label (see :func:`novanet.dhcp.labels.dns_label`).
    """

    mac: str
    hostname: str
    address: str
