"""What travels over RPC: an instance's network description, as plain data."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from novanet.exception import BadRequest
from novanet.rpc import payloads
from novanet.secrules import from_compact

MAX_RULES = 1000  # security-group rules of one instance
MAX_MEMBERS = 65536  # addresses of one source group (the ipset's maxelem)


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
    # Security-group rules (novanet.secrules compact form, sorted): compute
    # API 1.1; a 1.0 payload has none (the seed's chain).
    rules: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["rules"] = list(self.rules)
        return data

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
            rules=rules_from(d.get("rules", ()), "instance.rules"),
        )


# -- security groups (compute API 1.1) ------------------------------------------------


def rules_from(data: Any, field: str) -> tuple[str, ...]:
    """Compact rules from a payload, each checked (BadRequest names the bad one)."""
    if not isinstance(data, list | tuple) or len(data) > MAX_RULES:
        raise BadRequest(f"{field} must be a list of at most {MAX_RULES} rules")
    return tuple(from_compact(text, field).compact() for text in data)


def members_from(data: Any, field: str = "members") -> dict[int, tuple[str, ...]]:
    """{group id: [addresses]} from a payload (JSON keys are strings)."""
    out: dict[int, tuple[str, ...]] = {}
    for key, addresses in payloads.mapping(data or {}, field).items():
        if not isinstance(key, str | int) or not str(key).isdigit() or int(key) < 1:
            raise BadRequest(f"{field}: {key!r} is not a group id")
        if not isinstance(addresses, list) or len(addresses) > MAX_MEMBERS:
            raise BadRequest(f"{field}[{key}] must be a list of at most {MAX_MEMBERS} addresses")
        out[int(key)] = tuple(payloads.ipv4(a, f"{field}[{key}]") for a in addresses)
    return out


def members_to(members: Mapping[int, Any]) -> dict[str, list[str]]:
    return {str(gid): list(addresses) for gid, addresses in members.items()}
