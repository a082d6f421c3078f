"""The metadata of one instance as nova served it, and request paths resolved against it.

Pure functions: no database, no sockets, no configuration object. The layout
follows nova's EC2 metadata for version 2009-04-04 (nova/api/metadata/base.py):

- a directory lists its entries one per line, sorted, sub-directories with a
  trailing ``/``; there is no trailing newline;
- ``public-keys/`` exists only when the instance has a key; it lists
  ``0=<keyname>`` (no slash), ``public-keys/0/`` lists ``openssh-key``;
- ``/`` lists the EC2 versions, ``/<version>/`` lists ``meta-data/`` and,
  when the instance has user data, ``user-data``;
- ``latest`` is an alias of the newest version; a trailing slash on a
  leaf is ignored (nova normalised the path the same way).

``/openstack/<version>/meta_data.json`` is the OpenStack document
(uuid, name, hostname, launch_index, availability_zone, public_keys).

Paths are checked before they are resolved: nothing here reads files, but a
traversal attempt (``..``, ``%2e%2e``, ``//``, NUL) is refused anyway, so no
later change can turn a path segment into a file name by accident.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import TypeAlias

EC2_VERSIONS = ("2009-04-04",)
OPENSTACK_VERSIONS = ("2012-08-10",)
LATEST = "latest"
AVAILABILITY_ZONE = "nova"
FALLBACK_KEY_NAME = "default"

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
OCTETS = "application/octet-stream"

# A key comment short and plain enough to serve as the key's name in
# ``public-keys/`` (it ends up in a line-oriented listing).
_KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclasses.dataclass(frozen=True)
class InstanceMetadata:
    """What the metadata of an instance is made of (one row of the lookup)."""

    id: int
    uuid: str
    name: str  # the display name
    hostname: str  # a DNS label
    fixed_ip: str
    user_data: bytes | None = None
    public_key: str | None = None


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes


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


def ec2_instance_id(instance_id: int) -> str:
    return f"i-{instance_id:08x}"


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


def split_path(raw_path: str) -> list[str] | Reply:
    """Check a request path (still percent-encoded) and split it into segments.

    Returns the segments (``[]`` for ``/``; one trailing slash is dropped) or
    the error reply: 400 for what is no valid path at all (no leading slash,
    control characters, NUL, backslash, non-ASCII, bad or slash-producing
    percent escapes), 404 for ``.``/``..`` segments and empty ones (``//``).
    """
    if not raw_path.startswith("/") or not _plain_ascii(raw_path):
        return error(400)
    decoded = _percent_decode(raw_path)
    if decoded is None:
        return error(400)
    segments = decoded.split("/")[1:]
    if segments and segments[-1] == "":
        segments.pop()
    for segment in segments:
        if segment in ("", ".", ".."):
            return error(404)
    return segments


def _plain_ascii(text: str) -> bool:
    return all(0x20 < ord(c) < 0x7F and c != "\\" for c in text)


def _percent_decode(raw: str) -> str | None:
    """Decode %XX escapes; None if one is malformed or decodes to something forbidden."""
    if "%" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char != "%":
            out.append(char)
            i += 1
            continue
        digits = raw[i + 1 : i + 3]
        if len(digits) != 2 or not set(digits) <= _HEX:
            return None
        decoded = chr(int(digits, 16))
        # An escaped slash would split a segment differently than the client
        # meant; an escaped control character or non-ASCII byte names nothing.
        if decoded == "/" or not _plain_ascii(decoded):
            return None
        out.append(decoded)
        i += 3
    return "".join(out)


def ec2_tree(md: InstanceMetadata, dhcp_domain: str) -> Directory:
    """``/<version>/`` of the EC2 API for 2009-04-04 (``latest`` is the same)."""
    hostname = fqdn(md.hostname, dhcp_domain)
    meta: dict[str, Node] = {
        "ami-launch-index": "0",
        "hostname": hostname,
        "instance-action": "none",
        "instance-id": ec2_instance_id(md.id),
        "local-hostname": hostname,
        "local-ipv4": md.fixed_ip,
        "placement": Directory({"availability-zone": AVAILABILITY_ZONE}),
        "public-hostname": hostname,
        # nova served an empty value when the instance had no floating IP;
        # novanet has none.
        "public-ipv4": "",
    }
    if md.public_key:
        meta["public-keys"] = Directory(
            {"0": Directory({"openssh-key": md.public_key}, label=f"0={key_name(md.public_key)}")}
        )
    top: dict[str, Node] = {"meta-data": Directory(meta)}
    if md.user_data is not None:
        top["user-data"] = md.user_data
    return Directory(top)


def openstack_meta_data(md: InstanceMetadata, dhcp_domain: str) -> dict[str, object]:
    """The document of ``/openstack/<version>/meta_data.json``."""
    doc: dict[str, object] = {
        "uuid": md.uuid,
        "name": md.name,
        "hostname": fqdn(md.hostname, dhcp_domain),
        "launch_index": 0,
        "availability_zone": AVAILABILITY_ZONE,
    }
    if md.public_key:
        doc["public_keys"] = {key_name(md.public_key): md.public_key}
    return doc


def listing(directory: Directory) -> bytes:
    lines = []
    for name in sorted(directory.entries):
        node = directory.entries[name]
        if isinstance(node, Directory):
            lines.append(node.label if node.label is not None else f"{name}/")
        else:
            lines.append(name)
    return "\n".join(lines).encode()


def _text(body: bytes | str) -> Reply:
    if isinstance(body, str):
        return Reply(200, TEXT, body.encode())
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        # Binary user data (a gzip'd cloud-config...) is served as it is, not as text.
        return Reply(200, OCTETS, body)
    return Reply(200, TEXT, body)


def resolve(segments: list[str], md: InstanceMetadata, dhcp_domain: str) -> Reply:
    """The reply for a checked path (see :func:`split_path`) of this instance."""
    if not segments:
        return _text("\n".join((*EC2_VERSIONS, LATEST)))
    head, rest = segments[0], segments[1:]
    if head == "openstack":
        return _resolve_openstack(rest, md, dhcp_domain)
    if head != LATEST and head not in EC2_VERSIONS:
        return error(404)
    node: Node = ec2_tree(md, dhcp_domain)
    for segment in rest:
        if not isinstance(node, Directory) or segment not in node.entries:
            return error(404)
        node = node.entries[segment]
    if isinstance(node, Directory):
        return _text(listing(node))
    return _text(node)


def _resolve_openstack(rest: list[str], md: InstanceMetadata, dhcp_domain: str) -> Reply:
    if not rest:
        return _text("\n".join((*OPENSTACK_VERSIONS, LATEST)))
    version, rest = rest[0], rest[1:]
    if version != LATEST and version not in OPENSTACK_VERSIONS:
        return error(404)
    if not rest:
        names = ["meta_data.json"] + (["user_data"] if md.user_data is not None else [])
        return _text("\n".join(names))
    if len(rest) != 1:
        return error(404)
    if rest[0] == "meta_data.json":
        body = json.dumps(openstack_meta_data(md, dhcp_domain), sort_keys=True).encode()
        return Reply(200, JSON, body)
    if rest[0] == "user_data" and md.user_data is not None:
        return _text(md.user_data)
    return error(404)
