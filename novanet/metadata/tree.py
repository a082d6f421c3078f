"""Request paths resolved against the metadata of one instance, as nova served it.

Pure functions: no database, no sockets, no configuration object. The layout
follows nova's metadata service (nova/api/metadata/base.py, stable/newton):

- ``/`` lists the EC2 versions (1.0 .. 2009-04-04) and ``latest`` (the
  newest); ``/<version>/`` lists ``meta-data/`` and, when the instance has
  user data, ``user-data`` (ec2.py: which keys each version has);
- ``/openstack/`` lists the OpenStack versions up to 2016-10-06 and
  ``latest`` (openstack.py: meta_data.json, network_data.json, ...);
- a directory lists its entries one per line, sorted, sub-directories with a
  trailing ``/``; there is no trailing newline; a trailing slash on a leaf is
  ignored (nova normalised the path the same way).

Paths are checked before they are resolved: nothing here reads files, but a
traversal attempt (``..``, ``%2e%2e``, ``//``, NUL) is refused anyway, so no
later change can turn a path segment into a file name by accident.
"""

from __future__ import annotations

from novanet.metadata import ec2, openstack
from novanet.metadata.ec2 import EC2_VERSIONS, ec2_instance_id
from novanet.metadata.model import (
    JSON,
    REASONS,
    TEXT,
    Directory,
    InstanceMetadata,
    Node,
    Reply,
    content,
    error,
    fqdn,
    key_name,
)
from novanet.metadata.openstack import OPENSTACK_VERSIONS

LATEST = "latest"
_HEX = frozenset("0123456789abcdefABCDEF")

__all__ = [
    "EC2_VERSIONS",
    "JSON",
    "LATEST",
    "OPENSTACK_VERSIONS",
    "REASONS",
    "TEXT",
    "Directory",
    "InstanceMetadata",
    "Reply",
    "ec2_instance_id",
    "error",
    "fqdn",
    "key_name",
    "resolve",
    "split_path",
]


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


def listing(directory: Directory) -> bytes:
    lines = []
    for name in sorted(directory.entries):
        node = directory.entries[name]
        if isinstance(node, Directory):
            lines.append(node.label if node.label is not None else f"{name}/")
        else:
            lines.append(name)
    return "\n".join(lines).encode()


def resolve(
    segments: list[str], md: InstanceMetadata, dhcp_domain: str, vendor_data: object = None
) -> Reply:
    """The reply for a checked path (see :func:`split_path`) of this instance.

    ``vendor_data``: the JSON of vendordata_jsonfile_path (``{}`` if None).
    """
    if not segments:
        return content("\n".join((*EC2_VERSIONS, LATEST)))
    head, rest = segments[0], segments[1:]
    if head == "openstack":
        vendor = {} if vendor_data is None else vendor_data
        return openstack.resolve(rest, md, dhcp_domain, vendor)
    if head == LATEST:
        head = EC2_VERSIONS[-1]
    elif head not in EC2_VERSIONS:
        return error(404)
    node: Node = ec2.tree(md, dhcp_domain, head)
    for segment in rest:
        if not isinstance(node, Directory) or segment not in node.entries:
            return error(404)
        node = node.entries[segment]
    if isinstance(node, Directory):
        return content(listing(node))
    return content(node)
