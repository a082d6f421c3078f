"""The metadata service's iptables rules, as data (nova-api's chains in the seed).

novanet-network installs them (binary ``api``) next to the 169.254.169.254
DNAT it owns; novanet-metadata runs unprivileged and touches no firewall.
"""

from __future__ import annotations

import ipaddress

from novanet.linux.iptables.declare import Rules


def metadata_rules(*, metadata_host: str, metadata_port: int) -> Rules:
    """Rules of binary ``api``: let the guests' requests in.

    For a loopback metadata_host the requests arrive REDIRECTed to the
    address of the bridge they came in on, so the accept matches every local
    address (nova's ``-m addrtype --dst-type LOCAL``).
    """
    if ipaddress.ip_address(metadata_host).is_loopback:
        rule = f"-p tcp -m tcp --dport {metadata_port} -m addrtype --dst-type LOCAL -j ACCEPT"
    else:
        rule = f"-d {metadata_host}/32 -p tcp -m tcp --dport {metadata_port} -j ACCEPT"
    return {"filter": {"INPUT": [rule]}, "nat": {}}
