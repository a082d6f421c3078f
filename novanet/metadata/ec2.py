"""The EC2 metadata of one instance, version by version as nova served it.

nova/api/metadata/base.py (stable/newton) is the reference: the versions
1.0 to 2009-04-04 and the keys each added (``get_ec2_metadata``). Keys whose
value nova took from services novanet does not have (images, flavors,
reservations, block devices) get fixed, truthful stand-ins, listed in the
README: cloud images read them at boot and expect them to be there.
"""

from __future__ import annotations

from novanet.metadata.model import Directory, InstanceMetadata, Node, fqdn, key_name

EC2_VERSIONS = (
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
)
AVAILABILITY_ZONE = "nova"
# novanet has no image service: nova's "ami-%08x" of the image's id, for none.
AMI_ID = "ami-00000000"
# nova served its own placeholder for the manifest path of every image.
AMI_MANIFEST_PATH = "FIXME"
# novanet has no flavors; m1.tiny is nova's smallest default flavor, what the
# seed's cirros ran as.
INSTANCE_TYPE = "m1.tiny"
# nova's mapping for a libvirt instance without volumes (root_device_name
# /dev/vda): block_device.instance_block_mapping.
BLOCK_DEVICE_MAPPING = {"ami": "vda", "root": "/dev/vda"}


def ec2_instance_id(instance_id: int) -> str:
    return f"i-{instance_id:08x}"


def reservation_id(uuid: str) -> str:
    """nova's ``r-`` and eight characters, stable per instance (nova drew them at boot)."""
    return "r-" + uuid.replace("-", "")[:8]


def _since(version: str, first: str) -> bool:
    return EC2_VERSIONS.index(version) >= EC2_VERSIONS.index(first)


def meta_data(md: InstanceMetadata, dhcp_domain: str, version: str) -> dict[str, Node]:
    """``/<version>/meta-data/``; ``version`` is one of EC2_VERSIONS."""
    hostname = fqdn(md.hostname, dhcp_domain)
    meta: dict[str, Node] = {
        "ami-id": AMI_ID,
        "ami-launch-index": "0",
        "ami-manifest-path": AMI_MANIFEST_PATH,
        "instance-id": ec2_instance_id(md.id),
        "hostname": hostname,
        "local-ipv4": md.fixed_ip,
        "reservation-id": reservation_id(md.uuid),
        # a list: one group name per line, as nova printed lists
        "security-groups": "\n".join(md.security_groups),
    }
    if md.public_key:
        # nova: public-keys/ lists "0=<keyname>" (no slash), public-keys/0/ "openssh-key"
        meta["public-keys"] = Directory(
            {"0": Directory({"openssh-key": md.public_key}, label=f"0={key_name(md.public_key)}")}
        )
    if _since(version, "2007-01-19"):
        meta["local-hostname"] = hostname
        meta["public-hostname"] = hostname
        # nova: the first floating IP; empty for an instance without one
        meta["public-ipv4"] = md.floating_ips[0] if md.floating_ips else ""
    if _since(version, "2007-08-29"):
        meta["instance-type"] = INSTANCE_TYPE
    if _since(version, "2007-12-15"):
        meta["block-device-mapping"] = Directory(dict(BLOCK_DEVICE_MAPPING))
    if _since(version, "2008-02-01"):
        meta["placement"] = Directory({"availability-zone": AVAILABILITY_ZONE})
    if _since(version, "2008-09-01"):
        meta["instance-action"] = "none"
    return meta


def tree(md: InstanceMetadata, dhcp_domain: str, version: str) -> Directory:
    """``/<version>/``: ``meta-data/`` and, when the instance has some, ``user-data``."""
    top: dict[str, Node] = {"meta-data": Directory(meta_data(md, dhcp_domain, version))}
    if md.user_data is not None:
        top["user-data"] = md.user_data
    return Directory(top)
