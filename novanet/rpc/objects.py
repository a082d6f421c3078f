"""What travels over RPC: an instance's network description, as plain data."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from novanet.rpc import payloads


@dataclasses.dataclass(frozen=True)
class InstanceNetwork:
    """Everything a compute host needs to plug and filter one instance.

    Sent by novanet-network (which owns the database) to the compute agent,
    which keeps no database credentials.
    """

    id: int
    uuid: str
    name: str  # instance_name_template % id, also the netns name
    display_name: str
    host: str
    vif_type: str
    mac: str
    address: str
    cidr: str
    dhcp_server: str
    bridge: str
    devname: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> InstanceNetwork:
        """Build from an RPC payload, refusing anything malformed (BadRequest)."""
        d: Mapping[str, Any] = payloads.mapping(data, "instance")
        return cls(
            id=payloads.integer(d.get("id"), "instance.id"),
            uuid=payloads.uuid(d.get("uuid"), "instance.uuid"),
            name=payloads.netns_name(d.get("name"), "instance.name"),
            display_name=payloads.text(d.get("display_name"), "instance.display_name"),
            host=payloads.host(d.get("host"), "instance.host"),
            vif_type=payloads.vif_type(d.get("vif_type")),
            mac=payloads.mac(d.get("mac"), "instance.mac"),
            address=payloads.ipv4(d.get("address"), "instance.address"),
            cidr=payloads.cidr(d.get("cidr"), "instance.cidr"),
            dhcp_server=payloads.ipv4(d.get("dhcp_server"), "instance.dhcp_server"),
            bridge=payloads.devname(d.get("bridge"), "instance.bridge") or "",
            devname=payloads.devname(d.get("devname"), "instance.devname"),
        )
