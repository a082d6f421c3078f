"""The WSGI application of novanet-metadata.

Order of checks: method (405), path (400/404), then the instance by the TCP
peer address (404 when there is none: the same body as any other 404, so a
stranger learns nothing, not even whether the path exists), then the tree.
The request body is never read.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from novanet.metadata import tree
from novanet.metadata.tree import InstanceMetadata, Reply

LOG = logging.getLogger(__name__)

METHODS = ("GET", "HEAD")
Lookup = Callable[[str], InstanceMetadata | None]
StartResponse = Callable[..., Any]


class MetadataApp:
    """WSGI application serving each instance its own metadata.

    :param lookup: source address -> the instance holding it, or None
    :param dhcp_domain: the domain of the instances' hostnames ("" for none)
    :param vendor_data: the JSON of vendordata_jsonfile_path (None: ``{}``)
    """

    def __init__(self, lookup: Lookup, *, dhcp_domain: str, vendor_data: object = None) -> None:
        self.lookup = lookup
        self.dhcp_domain = dhcp_domain
        self.vendor_data = vendor_data

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", ""))
        reply = self.handle(method, _raw_path(environ), str(environ.get("REMOTE_ADDR", "")))
        headers = [
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
        ]
        if reply.status == 405:
            headers.append(("Allow", ", ".join(METHODS)))
        start_response(f"{reply.status} {tree.REASONS[reply.status]}", headers)
        return [b""] if method == "HEAD" else [reply.body]

    def handle(self, method: str, raw_path: str, remote_addr: str) -> Reply:
        """The reply to ``method raw_path`` from ``remote_addr`` (the TCP peer)."""
        if method not in METHODS:
            return tree.error(405)
        segments = tree.split_path(raw_path)
        if isinstance(segments, Reply):
            return segments
        try:
            instance = self.lookup(remote_addr)
        except Exception:  # noqa: BLE001 - a database failure must not kill the server
            LOG.exception("cannot look up the instance of %s", remote_addr)
            return tree.error(500)
        if instance is None:
            LOG.debug("no instance has address %s (%s %s)", remote_addr, method, raw_path)
            return tree.error(404)
        return tree.resolve(segments, instance, self.dhcp_domain, self.vendor_data)


def _raw_path(environ: dict[str, Any]) -> str:
    """The path as the client sent it (still percent-encoded), without the query.

    eventlet.wsgi provides it as RAW_PATH_INFO; other servers only give the
    decoded PATH_INFO (WSGI's latin-1 string), which is encoded back so the
    checks see escapes the same way.
    """
    raw = environ.get("RAW_PATH_INFO")
    if isinstance(raw, str):
        return raw
    path = str(environ.get("PATH_INFO", ""))
    return urllib.parse.quote(path, safe="/:@!$&'()*+,;=-._~", encoding="latin-1")
