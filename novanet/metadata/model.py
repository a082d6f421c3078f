"""What the metadata service knows of an instance, and the shapes of its replies."""

from __future__ import annotations

import dataclasses
import re
from typing import TypeAlias

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
OCTETS = "application/octet-stream"
FALLBACK_KEY_NAME = "default"

# A key comment short and plain enough to serve as the key's name in
# ``public-keys/`` (it ends up in a line-oriented listing).
_KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


@dataclasses.dataclass(frozen=True)
class InstanceMetadata:
    """What the metadata of an instance is made of (one row of the lookup).

    The network fields describe the instance's one NIC (for
    ``network_data.json``); ``security_groups`` and ``floating_ips`` come from
    :func:`novanet.metadata.lookup.security_groups` and ``floating_ips``.
    """

    id: int
    uuid: str
    name: str  # the display name
    hostname: str  # a DNS label
    fixed_ip: str
    user_data: bytes | None = None  # as given at create: any bytes
    public_key: str | None = None
    mac: str | None = None
    vif_uuid: str | None = None
    devname: str | None = None  # the host side of the NIC (vnet0)
    network_uuid: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    dhcp_server: str | None = None
    security_groups: tuple[str, ...] = ("default",)
    floating_ips: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes


def content(body: bytes | str) -> Reply:
    """A 200 reply: text, or binary user data (a gzip'd cloud-config...) served as it is."""
    if isinstance(body, str):
        return Reply(200, TEXT, body.encode())
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return Reply(200, OCTETS, body)
    return Reply(200, TEXT, body)


@dataclasses.dataclass(frozen=True)
class Directory:
    """A directory of the EC2 tree; ``label`` is how its parent lists it (nova's ``_name``)."""

    entries: dict[str, Node]
    label: str | None = None


Node: TypeAlias = Directory | str | bytes

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


def error(status: int) -> Reply:
    """A reply that names nothing but the status (the same for every cause)."""
    return Reply(status, TEXT, f"{status} {REASONS[status]}\n".encode())


def fqdn(hostname: str, dhcp_domain: str) -> str:
    """nova's hostname in the metadata: ``<hostname>.<dhcp_domain>``, no dot without a domain."""
    return f"{hostname}.{dhcp_domain}" if dhcp_domain else hostname


def key_name(public_key: str) -> str:
    """The name a key is listed under: its comment when that is a plain word.

    novanet stores the key without nova's keypair name; the comment
    (``ssh-ed25519 AAAA... alice@laptop``) is what an operator recognises.
    """
    fields = public_key.split()
    if len(fields) >= 3 and _KEY_NAME_RE.match(fields[2]):
        return fields[2]
    return FALLBACK_KEY_NAME
