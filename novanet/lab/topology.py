"""The seed's datacenter as plain data: nodes, segments, addresses, names.

Nothing here touches the kernel. The fabric, the mounts and the nova.conf
renderer all read this description, and ``down`` recomputes every name from
the lab id alone, so a lab can be removed even when its state file is lost.

Naming (the lab id keeps several labs apart on one machine):

- node network namespaces ``nl-<labid>-<node>`` and the fabric namespace
  ``nl-<labid>-fabric`` live in the machine's /run/netns;
- inside the fabric namespace the two L2 segments are bridges ``br-mgmt``
  and ``br-vm``, and every node NIC has its peer there, named
  ``<short>-<nic>`` (``ctl1-eth1``); interface names stay under the
  kernel's 15-character limit (IFNAMSIZ 16 with the NUL).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re

NETNS_PREFIX = "nl-"
IFNAMSIZ = 15
LAB_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")

MANAGEMENT = "management"
VM_NETWORK = "vm"

CONTROLLER = "controller"
COMPUTE = "compute"
GATEWAY = "gateway"
# Floating IPs (beyond the seed): a pool on the management segment, bound to
# controller-1's eth1 (the seed's public_interface) when associated.
FLOATING_RANGE = "192.168.56.224/28"
FLOATING_INTERFACE = "eth1"
FLOATING_POOL_ARGS = (
    "floating", "create", "--ip_range", FLOATING_RANGE, "--interface", FLOATING_INTERFACE,
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Segment:
    """An L2 segment: one bridge in the fabric namespace."""

    name: str
    bridge: str
    cidr: str | None  # the L3 network the seed runs on it, for documentation/status


@dataclasses.dataclass(frozen=True)
class Nic:
    """A node's network card plugged into a segment."""

    name: str
    segment: str
    mac: str
    address: str | None = None  # "192.168.56.200/24"
    promisc: bool = False


@dataclasses.dataclass(frozen=True)
class Route:
    dst: str  # "0.0.0.0/0"
    dev: str
    via: str | None = None
    metric: int = 0


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    role: str
    short: str  # used in fabric interface names
    nics: tuple[Nic, ...]
    routes: tuple[Route, ...] = ()

    def nic(self, name: str) -> Nic:
        for nic in self.nics:
            if nic.name == name:
                return nic
        raise KeyError(f"node {self.name} has no NIC {name}")

    @property
    def management_ip(self) -> str:
        """The node's address on the management segment (nova's my_ip)."""
        for nic in self.nics:
            if nic.segment == MANAGEMENT and nic.address:
                return str(ipaddress.IPv4Interface(nic.address).ip)
        raise KeyError(f"node {self.name} has no management address")

    @property
    def runs_novanet(self) -> bool:
        return self.role in (CONTROLLER, COMPUTE)


@dataclasses.dataclass(frozen=True)
class Topology:
    lab_id: str
    segments: tuple[Segment, ...]
    nodes: tuple[Node, ...]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise KeyError(f"no node {name!r} in lab {self.lab_id} (nodes: {known})")

    def segment(self, name: str) -> Segment:
        for segment in self.segments:
            if segment.name == name:
                return segment
        raise KeyError(f"no segment {name!r}")

    @property
    def controller(self) -> Node:
        return next(n for n in self.nodes if n.role == CONTROLLER)

    @property
    def computes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == COMPUTE)

    @property
    def fabric_netns(self) -> str:
        return f"{NETNS_PREFIX}{self.lab_id}-fabric"

    def netns(self, node: str) -> str:
        """Name of a node's network namespace in the machine's /run/netns."""
        self.node(node)
        return f"{NETNS_PREFIX}{self.lab_id}-{node}"

    def all_netns(self) -> list[str]:
        """Every namespace of the lab, nodes first, the fabric last."""
        return [self.netns(n.name) for n in self.nodes] + [self.fabric_netns]

    @staticmethod
    def fabric_port(node: Node, nic: Nic) -> str:
        """Name of the fabric-side end of a node NIC's veth pair."""
        return f"{node.short}-{nic.name}"


def lab_id_for(name: str) -> str:
    """The lab id for a lab name (the name itself, validated)."""
    if not LAB_ID_RE.match(name):
        raise ValueError(
            f"invalid lab name {name!r}: use 1-24 characters a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return name


def seed_topology(lab_id: str) -> Topology:
    """The seed article's datacenter: a controller, two computes, a gateway.

    MAC addresses are the article's where it shows them (controller eth1/eth2,
    compute-1 eth1/eth2); the others are invented in the same 08:00:27 range.
    Routes mirror the article's ``route -n``: a default route via
    192.168.56.101 (metric 100) and 169.254.0.0/16 on eth1 (metric 1000).
    """
    lab_id_for(lab_id)
    segments = (
        Segment(MANAGEMENT, "br-mgmt", "192.168.56.0/24"),
        Segment(VM_NETWORK, "br-vm", "10.0.0.0/24"),
    )
    host_routes = (
        Route("0.0.0.0/0", "eth1", via="192.168.56.101", metric=100),
        Route("169.254.0.0/16", "eth1", metric=1000),
    )

    def host(name: str, role: str, short: str, octet: int, mac1: str, mac2: str) -> Node:
        ip = f"192.168.56.{octet}"
        mac1, mac2 = f"08:00:27:{mac1}", f"08:00:27:{mac2}"
        return Node(
            name=name,
            role=role,
            short=short,
            nics=(
                Nic("eth1", MANAGEMENT, mac1, f"{ip}/24"),
                # eth2 carries only bridged VM traffic: up, promiscuous, no
                # address (the seed's "ifconfig eth2 0.0.0.0 up promisc").
                Nic("eth2", VM_NETWORK, mac2, None, promisc=True),
            ),
            routes=host_routes,
        )

    hosts = (
        # name, role, short, 192.168.56.x, eth1 and eth2 MACs after 08:00:27
        ("controller-1", CONTROLLER, "ctl1", 200, "9d:c4:b0", "8f:87:fa"),
        ("compute-1", COMPUTE, "cmp1", 202, "ee:49:bd", "15:85:17"),
        ("compute-2", COMPUTE, "cmp2", 203, "4a:7e:21", "b3:52:6c"),
    )
    nodes = (
        *(host(*spec) for spec in hosts),
        # The outside world: answers on the management segment and needs no
        # route to 10.0.0.0/24 because the controller SNATs instance traffic.
        Node(
            name="gateway",
            role=GATEWAY,
            short="gw",
            nics=(Nic("eth1", MANAGEMENT, "08:00:27:0c:65:01", "192.168.56.101/24"),),
        ),
    )
    topology = Topology(lab_id, segments, nodes)
    _check_names(topology)
    return topology


def _check_names(topology: Topology) -> None:
    for node in topology.nodes:
        for nic in node.nics:
            for ifname in (nic.name, Topology.fabric_port(node, nic)):
                if len(ifname) > IFNAMSIZ:
                    raise ValueError(f"interface name {ifname!r} is longer than {IFNAMSIZ}")
    for segment in topology.segments:
        if len(segment.bridge) > IFNAMSIZ:
            raise ValueError(f"bridge name {segment.bridge!r} is longer than {IFNAMSIZ}")
