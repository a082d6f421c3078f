"""Each node's nova.conf, in the seed's flagfile format (``--name=value``).

Pure: computed from the topology and the lab's paths. The file starts with
the five lines the seed article shows (``sudo cat /etc/nova/nova.conf``);
what the article hides behind "(more entries omitted)" follows: the node's
identity, where its state lives and how it reaches the broker (the lab's
own RabbitMQ vhost, see :mod:`novanet.lab.broker`). The daemons are started
with ``--flagfile <node dir>/nova.conf``.
"""

from __future__ import annotations

from collections.abc import Mapping

from novanet.lab.broker import vhost_for
from novanet.lab.state import LabPaths
from novanet.lab.topology import CONTROLLER, Topology

# Short periods so the lab notices drift and reports liveness quickly.
CHECK_INTERVAL = 2
# A node without a heartbeat for this long shows as down (5 report intervals).
SERVICE_DOWN_TIME = 10

# The seed's nova.conf, in the article's order (tests/data/seed/controller-nova.conf).
SEED_FLAGS: tuple[tuple[str, str], ...] = (
    ("public_interface", "eth1"),
    ("fixed_range", "10.0.0.0/24"),
    ("flat_interface", "eth2"),
    ("flat_network_bridge", "br100"),
    ("network_manager", "nova.network.manager.FlatDHCPManager"),
)


def nova_conf_flags(
    topology: Topology,
    node_name: str,
    paths: LabPaths,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The flags of one node, in file order; ``extra`` adds or overrides."""
    node = topology.node(node_name)
    if not node.runs_novanet:
        raise ValueError(f"node {node_name} runs no novanet daemon")
    controller = topology.controller
    flags: dict[str, str] = dict(SEED_FLAGS)
    flags.update(
        {
            "my_ip": node.management_ip,
            "host": node.name,
            "dmz_cidr": "10.128.0.0/24",
            "state_path": paths.node_dir(node.name),
        }
    )
    if node.role == CONTROLLER:
        # Four slashes: sqlite:/// plus an absolute path.
        flags["sql_connection"] = f"sqlite:///{paths.node_dir(controller.name)}/novanet.sqlite"
    flags.update(
        {
            "rabbit_host": controller.management_ip,
            "rabbit_virtual_host": vhost_for(topology.lab_id),
            "iptables_check_interval": str(CHECK_INTERVAL),
            "dnsmasq_check_interval": str(CHECK_INTERVAL),
            "bridge_check_interval": str(CHECK_INTERVAL),
            "report_interval": str(CHECK_INTERVAL),
            "service_down_time": str(SERVICE_DOWN_TIME),
        }
    )
    flags.update(extra or {})
    return flags


def render_nova_conf(
    topology: Topology,
    node_name: str,
    paths: LabPaths,
    extra: Mapping[str, str] | None = None,
) -> str:
    """The text of a node's nova.conf: the seed's five lines first, then the rest."""
    flags = nova_conf_flags(topology, node_name, paths, extra)
    lines = [f"--{name}={flags[name]}" for name, _ in SEED_FLAGS]
    lines.append(f"# the rest: {node_name} in novanet-lab {topology.lab_id} (generated)")
    seed_names = {name for name, _ in SEED_FLAGS}
    lines += [f"--{name}={value}" for name, value in flags.items() if name not in seed_names]
    return "\n".join(lines) + "\n"
