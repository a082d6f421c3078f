"""The OpenStack metadata of one instance: ``/openstack/<version>/...`` up to 2016-10-06.

nova/api/metadata/base.py (stable/newton) is the reference for the versions,
what each lists and what ``meta_data.json`` holds; nova/virt/netutils.py's
get_network_metadata for ``network_data.json``. One deliberate difference
(README): nova described a DHCP network as ``"type": "ipv4_dhcp"``; novanet
gives the instance's fixed address, netmask, default route and DNS server,
so that cloud-init configures the NIC statically and the guest does not
depend on dnsmasq after its first boot. The values are the ones the DHCP
server hands out (router: the network's gateway; DNS: dnsmasq itself).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from novanet.metadata.model import JSON, InstanceMetadata, Reply, content, error, fqdn, key_name

FOLSOM = "2012-08-10"
GRIZZLY = "2013-04-04"
HAVANA = "2013-10-17"
LIBERTY = "2015-10-15"
NEWTON_ONE = "2016-06-30"
NEWTON_TWO = "2016-10-06"
OPENSTACK_VERSIONS = (FOLSOM, GRIZZLY, HAVANA, LIBERTY, NEWTON_ONE, NEWTON_TWO)
LATEST = "latest"
AVAILABILITY_ZONE = "nova"
# nova's kind of NIC for a Linux bridge port; cloud-init treats it as physical.
LINK_TYPE = "bridge"


def _since(version: str, first: str) -> bool:
    return OPENSTACK_VERSIONS.index(version) >= OPENSTACK_VERSIONS.index(first)


def listing(md: InstanceMetadata, version: str) -> list[str]:
    """What ``/openstack/<version>/`` lists (nova's _handle_version)."""
    names = ["meta_data.json"]
    if md.user_data is not None:
        names.append("user_data")
    if _since(version, GRIZZLY):
        names.append("password")
    if _since(version, HAVANA):
        names.append("vendor_data.json")
    if _since(version, LIBERTY):
        names.append("network_data.json")
    if _since(version, NEWTON_TWO):
        names.append("vendor_data2.json")
    return names


def meta_data(md: InstanceMetadata, dhcp_domain: str, version: str) -> dict[str, object]:
    """The document of ``/openstack/<version>/meta_data.json``."""
    doc: dict[str, object] = {
        "uuid": md.uuid,
        "name": md.name,
        "hostname": fqdn(md.hostname, dhcp_domain),
        "launch_index": 0,
        "availability_zone": AVAILABILITY_ZONE,
    }
    if md.public_key:
        name = key_name(md.public_key)
        doc["public_keys"] = {name: md.public_key}
        doc["keys"] = [{"name": name, "type": "ssh", "data": md.public_key}]
    if _since(version, GRIZZLY):
        # nova: 512 random bytes for the guest's entropy pool, new on every read
        doc["random_seed"] = base64.b64encode(os.urandom(512)).decode()
    if _since(version, LIBERTY):
        doc["project_id"] = None  # novanet's instances belong to no project
    if _since(version, NEWTON_ONE):
        doc["devices"] = []  # nova listed tagged devices; novanet has no tags
    return doc


def network_data(md: InstanceMetadata) -> dict[str, Any]:
    """``network_data.json``: the NIC (link), its static IPv4 config, the DNS server."""
    if not (md.mac and md.netmask):
        return {}  # nova: {} when it knew no network for the instance
    link = md.devname or "interface0"
    network: dict[str, Any] = {
        "id": "network0",
        "type": "ipv4",
        "link": link,
        "ip_address": md.fixed_ip,
        "netmask": md.netmask,
        "routes": [],
        "network_id": md.network_uuid,
    }
    if md.gateway:
        network["routes"].append(
            {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": md.gateway}
        )
    return {
        "links": [
            {
                "id": link,
                "vif_id": md.vif_uuid,
                "type": LINK_TYPE,
                "mtu": None,
                "ethernet_mac_address": md.mac,
            }
        ],
        "networks": [network],
        "services": [{"type": "dns", "address": md.dhcp_server}] if md.dhcp_server else [],
    }


def resolve(rest: list[str], md: InstanceMetadata, dhcp_domain: str, vendor_data: object) -> Reply:
    """``/openstack/...``: ``rest`` are the segments after ``openstack``."""
    if not rest:
        return content("\n".join((*OPENSTACK_VERSIONS, LATEST)))
    version, rest = rest[0], rest[1:]
    if version == LATEST:
        version = OPENSTACK_VERSIONS[-1]
    elif version not in OPENSTACK_VERSIONS:
        return error(404)
    names = listing(md, version)
    if not rest:
        return content("\n".join(names))
    if len(rest) != 1 or rest[0] not in names:
        return error(404)
    name = rest[0]
    if name == "user_data":
        return content(md.user_data or b"")
    if name == "password":
        return content(b"")  # nova: '' until the guest posted one (novanet takes no POST)
    doc: object
    if name == "meta_data.json":
        doc = meta_data(md, dhcp_domain, version)
    elif name == "network_data.json":
        doc = network_data(md)
    elif name == "vendor_data.json":
        doc = vendor_data  # vendordata_jsonfile_path's JSON, {} without one
    else:  # vendor_data2.json: nova's StaticJSON provider's section
        doc = {"static": vendor_data} if vendor_data != {} else {}
    return Reply(200, JSON, json.dumps(doc, sort_keys=True).encode())
