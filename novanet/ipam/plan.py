"""Planning networks: how a range splits into networks and which addresses are reserved.

Pure functions, nova's semantics (reference: nova-network's create_networks):
the range ``fixed_range_v4`` is split into ``num_networks`` networks of
``network_size`` addresses each, all on the one ``bridge`` (nova's FlatDHCP
did not number bridges; one dnsmasq serves the networks of a bridge); every
network reserves its network address, gateway (first host unless given),
DHCP server (the gateway) and broadcast address; ``fixed_cidr`` further
bounds the addresses handed out (those outside it are reserved);
``allowed_start``/``allowed_end`` reserve the addresses below/above them
(the gateway then defaults to ``allowed_start``); ``dhcp_start`` is the
address after the gateway.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import re
import uuid as uuidlib

from novanet.exception import UsageError

MIN_NETWORK_SIZE = 4


@dataclasses.dataclass(frozen=True)
class NetworkPlan:
    label: str
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    dhcp_server: ipaddress.IPv4Address
    dhcp_start: ipaddress.IPv4Address
    bridge: str
    bridge_interface: str | None
    dns1: str | None
    dns2: str | None
    fixed_cidr: ipaddress.IPv4Network | None
    allowed_start: ipaddress.IPv4Address | None = None
    allowed_end: ipaddress.IPv4Address | None = None
    project_id: str | None = None
    priority: int | None = None
    uuid: str | None = None  # None: a new random one

    @property
    def netmask(self) -> str:
        return str(self.cidr.netmask)

    @property
    def broadcast(self) -> ipaddress.IPv4Address:
        return self.cidr.broadcast_address

    def reserved(self, address: ipaddress.IPv4Address) -> bool:
        """Whether ``address`` is never handed out (novanet.ipam.bulk computes the same in SQL)."""
        if address in (self.cidr.network_address, self.broadcast, self.gateway, self.dhcp_server):
            return True
        if self.allowed_start is not None and address < self.allowed_start:
            return True
        if self.allowed_end is not None and address > self.allowed_end:
            return True
        return self.fixed_cidr is not None and address not in self.fixed_cidr


def parse_cidr(value: str, what: str = "--fixed_range_v4") -> ipaddress.IPv4Network:
    text = (value or "").strip()
    if "/" not in text:
        raise UsageError(f"{what}: {value!r} is not a CIDR (expected ADDRESS/PREFIX)")
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise UsageError(f"{what}: {value!r} is not a valid IPv4 CIDR ({exc})") from None


def parse_ip(value: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise UsageError(f"{what}: {value!r} is not an IPv4 address") from None


_IFNAME = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")


def check_ifname(value: str, what: str) -> str:
    # The kernel's IFNAMSIZ is 16 including the NUL; '/', ':' and spaces are refused.
    if not _IFNAME.match(value or ""):
        raise UsageError(
            f"{what}: {value!r} is not a valid interface name (1-15 characters, letters, digits, "
            "'-', '_', '.')"
        )
    return value


def check_uuid(value: str, what: str = "--uuid") -> str:
    try:
        return str(uuidlib.UUID(value.strip()))
    except ValueError:
        raise UsageError(f"{what}: {value!r} is not a UUID") from None


def check_project(value: str, what: str = "--project_id") -> str:
    # nova's projects.id is a String(255); a newline or comma would corrupt the listing.
    if not value or len(value) > 255 or not value.isprintable():
        raise UsageError(f"{what}: {value!r} is not a project id (1-255 printable characters)")
    return value


def plan_networks(
    *,
    label: str,
    fixed_range_v4: str,
    bridge: str,
    bridge_interface: str | None = None,
    num_networks: int = 1,
    network_size: int | None = None,
    gateway: str | None = None,
    dns1: str | None = None,
    dns2: str | None = None,
    fixed_cidr: str | None = None,
    multi_host: bool = False,
    allowed_start: str | None = None,
    allowed_end: str | None = None,
    project_id: str | None = None,
    priority: int | None = None,
    uuid: str | None = None,
    max_network_size: int | None = None,
) -> list[NetworkPlan]:
    """The networks `network create` would make, or a UsageError saying why not.

    ``max_network_size``: the most addresses one command may create (the
    option of that name: one network, or all of them with --num_networks);
    checked before anything proportional to the range is computed, so a /8
    is refused at once.
    """
    if not label or not label.strip():
        raise UsageError("--label must not be empty")
    if len(label) > 255:
        raise UsageError("--label is longer than 255 characters")
    if multi_host:
        raise UsageError(
            "--multi_host T is not supported: novanet runs single-host FlatDHCP "
            "(one network host serves DHCP and the gateway)"
        )
    check_ifname(bridge, "--bridge")
    if bridge_interface is not None:
        check_ifname(bridge_interface, "--bridge_interface")
    whole = parse_cidr(fixed_range_v4)
    if num_networks < 1:
        raise UsageError(f"--num_networks must be at least 1, not {num_networks}")
    if network_size is None:
        network_size = whole.num_addresses // num_networks
    if network_size < MIN_NETWORK_SIZE or network_size & (network_size - 1):
        raise UsageError(
            f"--network_size must be a power of two of at least {MIN_NETWORK_SIZE}, "
            f"not {network_size}"
        )
    if num_networks * network_size > whole.num_addresses:
        raise UsageError(
            f"{whole} is not big enough for {num_networks} networks of {network_size} addresses"
        )
    if max_network_size is not None and num_networks * network_size > max_network_size:
        what = (
            f"{whole} is {network_size:,} addresses"
            if num_networks == 1
            else f"{num_networks} networks of {network_size:,} addresses are "
            f"{num_networks * network_size:,}"
        )
        raise UsageError(
            f"{what}, more than max_network_size ({max_network_size:,}): give a smaller "
            "--fixed_range_v4 or --network_size, or raise max_network_size"
        )
    single = {"--gateway": gateway, "--allowed_start": allowed_start, "--allowed_end": allowed_end}
    given = [flag for flag, value in single.items() if value] + (["--uuid"] if uuid else [])
    if num_networks > 1 and given:
        # nova took them for every network: the second one's gateway outside
        # its subnet, or a uuid twice (a database error).
        raise UsageError(
            f"{', '.join(given)} apply to a single network; create the networks one at "
            "a time to give each its own"
        )
    prefix = 32 - (network_size.bit_length() - 1)
    # islice: a /8 split into /30s has four million subnets; only the first few are used.
    subnets = list(itertools.islice(whole.subnets(new_prefix=prefix), num_networks))
    limit = parse_cidr(fixed_cidr, "--fixed_cidr") if fixed_cidr else None
    if limit is not None and not limit.subnet_of(whole):
        raise UsageError(f"--fixed_cidr {limit} is not inside {whole}")
    if dns1 is not None:
        parse_ip(dns1, "--dns1")
    if dns2 is not None:
        parse_ip(dns2, "--dns2")
    extras = {
        "project_id": check_project(project_id) if project_id is not None else None,
        "priority": priority,
        "uuid": check_uuid(uuid) if uuid else None,
    }
    plans = []
    for index, subnet in enumerate(subnets):
        start, end = _allowed_range(subnet, allowed_start, allowed_end)
        gw = _gateway(subnet, gateway, start)
        plans.append(
            NetworkPlan(
                label=label if num_networks == 1 else f"{label}_{index}",
                cidr=subnet,
                gateway=gw,
                dhcp_server=gw,
                dhcp_start=_dhcp_start(subnet, gw),
                bridge=bridge,
                bridge_interface=bridge_interface,
                dns1=dns1,
                dns2=dns2,
                fixed_cidr=limit,
                allowed_start=start,
                allowed_end=end,
                **extras,  # type: ignore[arg-type]
            )
        )
    return plans


def _allowed_range(
    subnet: ipaddress.IPv4Network, start: str | None, end: str | None
) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv4Address | None]:
    """--allowed_start/--allowed_end, checked: host addresses of the subnet, in order."""
    bounds: list[ipaddress.IPv4Address | None] = []
    for flag, value in (("--allowed_start", start), ("--allowed_end", end)):
        if value is None:
            bounds.append(None)
            continue
        address = parse_ip(value, flag)
        if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
            raise UsageError(f"{flag} {address} is not a host address of {subnet}")
        bounds.append(address)
    low, high = bounds
    if low is not None and high is not None and high <= low:
        raise UsageError(f"--allowed_end {high} must come after --allowed_start {low}")
    return low, high


def _gateway(
    subnet: ipaddress.IPv4Network, given: str | None, allowed_start: ipaddress.IPv4Address | None
) -> ipaddress.IPv4Address:
    if given is None:
        # nova: the first allowed address, the first host without --allowed_start
        return allowed_start if allowed_start is not None else subnet.network_address + 1
    gw = parse_ip(given, "--gateway")
    if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
        raise UsageError(f"--gateway {gw} is not a host address of {subnet}")
    return gw


def _dhcp_start(
    subnet: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address
) -> ipaddress.IPv4Address:
    after = gateway + 1
    if after >= subnet.broadcast_address:
        return subnet.network_address + 1
    return after


def overlapping(new: ipaddress.IPv4Network, existing: list[str]) -> str | None:
    """The first existing CIDR that overlaps ``new``, if any."""
    for cidr in existing:
        if new.overlaps(ipaddress.IPv4Network(cidr)):
            return cidr
    return None
