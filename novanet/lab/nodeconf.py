"""Each node's nova.conf, in the seed's flagfile format (``--name=value``).

Pure: computed from the topology and the lab's paths. The daemons of later
phases are started with ``--config-file <node dir>/nova.conf``; the loader
recognises a flagfile by its first meaningful line starting with ``--``.
"""

from __future__ import annotations

from collections.abc import Mapping

from novanet.lab.state import LabPaths
from novanet.lab.topology import CONTROLLER, Topology

# Short periods so the lab notices drift and reports liveness quickly.
CHECK_INTERVAL = 2


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
    flags: dict[str, str] = {
        "my_ip": node.management_ip,
        "host": node.name,
        "public_interface": "eth1",
        "flat_interface": "eth2",
        "flat_network_bridge": "br100",
        "fixed_range": "10.0.0.0/24",
        "dmz_cidr": "10.128.0.0/24",
        "network_manager": "nova.network.manager.FlatDHCPManager",
        "state_path": paths.node_dir(node.name),
    }
    if node.role == CONTROLLER:
        # Four slashes: sqlite:/// plus an absolute path.
        flags["sql_connection"] = f"sqlite:///{paths.node_dir(controller.name)}/novanet.sqlite"
    flags.update(
        {
            "rabbit_host": controller.management_ip,
            "iptables_check_interval": str(CHECK_INTERVAL),
            "dnsmasq_check_interval": str(CHECK_INTERVAL),
            "report_interval": str(CHECK_INTERVAL),
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
    """The text of a node's nova.conf."""
    lines = [f"# nova.conf of {node_name} in novanet-lab {topology.lab_id} (generated)"]
    lines += [
        f"--{name}={value}"
        for name, value in nova_conf_flags(topology, node_name, paths, extra).items()
    ]
    return "\n".join(lines) + "\n"
