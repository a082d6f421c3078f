"""novanet-metadata's iptables rules, as data (nova-api's chains in the seed)."""

from __future__ import annotations

from novanet.linux.iptables.declare import Rules


def metadata_rules(*, metadata_host: str, metadata_port: int) -> Rules:
    """Rules of novanet-metadata (binary ``api``): let the guests' requests in."""
    return {
        "filter": {
            "INPUT": [f"-d {metadata_host}/32 -p tcp -m tcp --dport {metadata_port} -j ACCEPT"]
        },
        "nat": {},
    }
