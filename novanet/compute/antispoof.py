"""Anti-spoofing on the instance ports (``vif_antispoof``): what is filtered, as data.

nova-network's guests were held by libvirt's nwfilter ``nova-base``
(no-mac-spoofing, no-ip-spoofing, no-arp-spoofing, allow-dhcp-server). On a
novanet compute host every frame entering the bridge from an instance port
(the host end ``vnetN`` of a tap or netns VIF) goes through the table
below, in the ``bridge`` family's prerouting hook. It is dropped unless:

- its Ethernet source is the instance's MAC;
- it is ARP (Ethernet/IPv4, request or reply) whose sender is the
  instance's MAC and fixed IP, or a probe (request from 0.0.0.0) from the
  instance's MAC;
- it is IPv4 from the fixed IP, or a DHCP client message from 0.0.0.0 to
  255.255.255.255 (udp 68 -> 67) before the guest has its address;
- and it is not DHCP server traffic: udp from port 67, or to a client's
  port 68, is dropped whatever its source (a rogue DHCP server in a guest);
  nor a DHCP client message (udp to port 67) for another client hardware
  address than the instance's MAC (releasing or declining another
  instance's lease at dnsmasq, which knows clients by that field).

Every other ethertype (IPv6, VLAN tags, STP...) is dropped: novanet is
IPv4-only. Frames from ports that are not instance ports (``flat_interface``,
ports of other bridges) never match ``@vif_ports`` and are left alone.

Why the prerouting hook, at priority -300: it runs before the bridge learns
the frame's source MAC (so a spoofed MAC cannot steal another port's
forwarding entry), before br_netfilter hands IPv4 to iptables at priority 0
(so a spoofed packet creates no conntrack entry and never meets the
per-instance chains), and for frames to the host as well as forwarded ones.

Per-port data lives in four sets keyed by the port name, so the rules are
the same thirteen whatever the number of ports and each lookup is a hash:
``vif_ports`` (the port is an instance port), ``vif_macs``
(port . MAC), ``vif_ips`` (port . fixed IP) and ``vif_chaddr`` (port . MAC,
for the DHCP field). A port's four elements are added in one transaction
before its device is attached to the bridge, and removed after the device
is gone (:class:`PortFilter`, called by the agent).
How the table is kept (netlink, atomic rewrites, drift repair, coexistence
with iptables-nft, br_netfilter and share_dhcp_address's ebtables rules):
:mod:`novanet.linux.nftables`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from novanet.compute.resync_plan import Attach, ResyncPlan
from novanet.exception import NovanetError, ProcessExecutionError
from novanet.linux.nftables.spec import Element, SetSpec, TableSpec
from novanet.linux.nftables.table import REWRITE, NftTable
from novanet.rpc.objects import InstanceNetwork

LOG = logging.getLogger(__name__)

PORTS = SetSpec("vif_ports", ("ifname",))
MACS = SetSpec("vif_macs", ("ifname", "ether_addr"))
IPS = SetSpec("vif_ips", ("ifname", "ipv4_addr"))
# A DHCP message's chaddr, 28 bytes into it, after the 8-byte UDP header.
CHADDR = SetSpec("vif_chaddr", ("ifname", "raw48"), typeof="iifname . @th,288,48")
# ARP for Ethernet and IPv4 only: other hardware or protocol lengths would
# put the sender fields somewhere else than where the set lookups read them.
_ARP = "arp htype 1 arp ptype ip arp hlen 6 arp plen 4"
CHAINS = f"""
\tchain prerouting {{
\t\ttype filter hook prerouting priority -300; policy accept;
\t\tiifname @vif_ports jump vif
\t}}
\tchain vif {{
\t\tiifname . ether saddr != @vif_macs counter drop comment "source MAC is not the instance's"
\t\tether type vmap {{ ip : jump vif_ip, arp : jump vif_arp }}
\t\tcounter drop comment "neither IPv4 nor ARP"
\t}}
\tchain vif_arp {{
\t\t{_ARP} arp operation {{ request, reply }} iifname . arp saddr ether @vif_macs iifname . arp saddr ip @vif_ips accept
\t\t{_ARP} arp operation request arp saddr ip 0.0.0.0 iifname . arp saddr ether @vif_macs accept
\t\tcounter drop comment "ARP for another MAC or address"
\t}}
\tchain vif_ip {{
\t\tudp sport 67 counter drop comment "DHCP server"
\t\tudp dport 68 counter drop comment "to a DHCP client"
\t\tudp dport 67 iifname . @th,288,48 != @vif_chaddr counter drop comment "DHCP for another MAC"
\t\tiifname . ip saddr @vif_ips accept
\t\tip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept
\t\tcounter drop comment "source IP is not the instance's"
\t}}
"""  # noqa: E501 - nft rules read best on one line each
TABLE = TableSpec("bridge", "novanet", (PORTS, MACS, IPS, CHADDR), CHAINS)


def port_elements(port: str, mac: str, address: str) -> frozenset[Element]:
    """The elements that let ``port`` pass the frames of the instance with ``mac``/``address``."""
    return frozenset(
        {
            (PORTS.name, PORTS.encode(port)),
            (MACS.name, MACS.encode(port, mac)),
            (IPS.name, IPS.encode(port, address)),
            (CHADDR.name, CHADDR.encode(port, mac)),
        }
    )


def ports_in_place(
    plan: ResyncPlan, instances: Iterable[InstanceNetwork]
) -> dict[str, InstanceNetwork]:
    """port -> instance for the devices a resync keeps: in place, or re-attached."""
    by_uuid = {inst.uuid: inst for inst in instances}
    ports = {device: by_uuid[uuid] for uuid, device in plan.in_place.items() if uuid in by_uuid}
    ports.update({step.device: step.instance for step in plan.steps if isinstance(step, Attach)})
    return ports


def ports_of(instances: Iterable[InstanceNetwork]) -> dict[str, InstanceNetwork]:
    """port -> instance for the instances that have a device."""
    return {inst.devname: inst for inst in instances if inst.devname}


class PortFilter:
    """The anti-spoofing filter of this host's instance ports: one port per instance.

    The agent calls it under its lock; the table (its own lock) also serves
    the periodic drift check. A failure is a NovanetError naming the port.
    """

    def __init__(self, table: NftTable) -> None:
        self.table = table
        self._ports: dict[str, tuple[str, str]] = {}  # port -> (instance MAC, fixed IP)
        self._by_mac: dict[str, str] = {}  # instance MAC -> port

    def filter(self, port: str, inst: InstanceNetwork) -> None:
        """``port`` passes only ``inst``'s frames from now on (call before attaching it)."""
        self._apply(f"filter {port} for {inst.name}", self._assign({port: inst}))
        LOG.info(
            "anti-spoofing: %s passes only %s %s (%s)", port, inst.mac, inst.address, inst.name
        )

    def ensure(self, ports: Mapping[str, InstanceNetwork]) -> None:
        """Filter several ports at once (a resync's devices that stay), removing nothing else."""
        if ports:
            self._apply(f"filter {len(ports)} port(s)", self._assign(ports), logging.INFO)

    def unfilter(self, mac: str) -> None:
        """Remove the filter of the instance with ``mac`` (call after its device is gone).

        A failure is logged, not raised: with the device gone the elements
        filter nothing, and the next check or resync removes them (a port
        name reused meanwhile gets its new elements in place of the old).
        """
        port = self._by_mac.pop(mac.lower(), None)
        if port is None:
            return
        self._ports.pop(port, None)
        try:
            self._apply(f"unfilter {port}", {port: None})
        except NovanetError as exc:
            LOG.error("%s", exc)

    def converge(self, ports: Mapping[str, InstanceNetwork]) -> None:
        """Exactly these ports are filtered: the end of a resync (stale entries go)."""
        wanted = {port: (inst.mac.lower(), inst.address) for port, inst in ports.items()}
        try:
            if wanted == self._ports and self.table.complete:
                # The usual periodic resync: nothing changed here, so this is
                # the drift check (a probe), not 20,000 keys encoded again.
                report = self.table.check_and_repair()
            else:
                self._ports, self._by_mac = {}, {}
                changes = self._assign(ports)
                desired = {port: elems for port, elems in changes.items() if elems is not None}
                report = self.table.replace(desired)
        except (OSError, ProcessExecutionError) as exc:
            raise NovanetError(f"anti-spoofing: cannot converge {self.table.name}: {exc}") from None
        for line in report:
            LOG.info("anti-spoofing: %s", line)

    def check(self) -> list[str]:
        """The periodic drift check (iptables_check_interval); repairs are logged as warnings."""
        try:
            report = self.table.check_and_repair()
        except (OSError, ProcessExecutionError) as exc:
            raise NovanetError(f"anti-spoofing: cannot check {self.table.name}: {exc}") from None
        for line in report:
            LOG.warning("anti-spoofing repair: %s", line)
        return report

    def disable(self) -> None:
        """``vif_antispoof = False``: the table goes, and nothing is filtered."""
        try:
            if self.table.remove():
                LOG.warning("anti-spoofing: %s deleted (vif_antispoof is off)", self.table.name)
        except OSError as exc:
            LOG.error("anti-spoofing: cannot delete %s: %s", self.table.name, exc)

    def _assign(self, ports: Mapping[str, InstanceNetwork]) -> dict[str, frozenset[Element] | None]:
        changes: dict[str, frozenset[Element] | None] = {}
        for port, inst in ports.items():
            mac = inst.mac.lower()
            previous = self._by_mac.get(mac)
            if previous is not None and previous != port and previous not in ports:
                changes[previous] = None  # the instance's old device (replaced)
                self._ports.pop(previous, None)
            owner = self._ports.get(port)
            if owner is not None and owner[0] != mac:
                self._by_mac.pop(owner[0], None)  # the port's previous instance
            self._ports[port] = (mac, inst.address)
            self._by_mac[mac] = port
            changes[port] = port_elements(port, mac, inst.address)
        return changes

    def _apply(
        self,
        what: str,
        changes: Mapping[str, frozenset[Element] | None],
        level: int = logging.DEBUG,  # one port: the agent logs it already
    ) -> None:
        try:
            report = self.table.update(changes)
        except (OSError, ProcessExecutionError, ValueError) as exc:
            raise NovanetError(f"anti-spoofing: cannot {what}: {exc}") from None
        for line in report:
            # A whole rewrite (the first look after a start) is always worth a line.
            LOG.log(logging.INFO if REWRITE in line else level, "anti-spoofing: %s", line)
