"""Validation of RPC payloads: a bad request is refused before anything changes.

RPC arguments arrive as JSON-ish data from another process; every endpoint
checks them here and raises :class:`~novanet.exception.BadRequest` with a
one-line reason instead of failing half-way through.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import re
import uuid as uuidlib
from collections.abc import Mapping
from typing import Any

from novanet.exception import BadRequest
from novanet.explain.packet import PROTOCOLS, Packet

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
DEVNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")
VIF_TYPES = ("tap", "netns")

MAX_NAME = 255
MAX_USER_DATA = 65536
MAX_PUBLIC_KEY = 16384


def text(value: Any, field: str, *, max_len: int = MAX_NAME, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string, not {type(value).__name__}")
    if not value and not allow_empty:
        raise BadRequest(f"{field} must not be empty")
    if len(value) > max_len:
        raise BadRequest(f"{field} is longer than {max_len} characters")
    return value


def optional_text(value: Any, field: str, max_len: int) -> str | None:
    return None if value is None else text(value, field, max_len=max_len, allow_empty=True)


def base64_bytes(value: Any, field: str, max_bytes: int) -> bytes:
    """Bytes sent as base64 text (JSON has no bytes), at most ``max_bytes`` once decoded."""
    raw = text(value, field, max_len=4 * ((max_bytes + 2) // 3), allow_empty=True)
    try:
        data = base64.b64decode(raw.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise BadRequest(f"{field} is not base64") from None
    if len(data) > max_bytes:
        raise BadRequest(f"{field} is larger than {max_bytes} bytes")
    return data


def integer(value: Any, field: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{field} must be an integer, not {type(value).__name__}")
    if value < minimum:
        raise BadRequest(f"{field} must be at least {minimum}")
    return value


def host(value: Any, field: str = "host") -> str:
    name = text(value, field)
    if not HOST_RE.match(name):
        raise BadRequest(f"{field} {name!r} is not a valid host name")
    return name


def uuid(value: Any, field: str = "uuid") -> str:
    raw = text(value, field, max_len=36)
    try:
        return str(uuidlib.UUID(raw))
    except ValueError:
        raise BadRequest(f"{field} {raw!r} is not a UUID") from None


def mac(value: Any, field: str = "mac") -> str:
    raw = text(value, field, max_len=17).lower()
    if not MAC_RE.match(raw):
        raise BadRequest(f"{field} {raw!r} is not a MAC address")
    return raw


def ipv4(value: Any, field: str) -> str:
    raw = text(value, field, max_len=15)
    try:
        return str(ipaddress.IPv4Address(raw))
    except ValueError:
        raise BadRequest(f"{field} {raw!r} is not an IPv4 address") from None


def cidr(value: Any, field: str) -> str:
    raw = text(value, field, max_len=18)
    try:
        return str(ipaddress.IPv4Network(raw, strict=True))
    except ValueError:
        raise BadRequest(f"{field} {raw!r} is not an IPv4 CIDR") from None


def vif_type(value: Any) -> str:
    kind = text(value, "vif_type")
    if kind not in VIF_TYPES:
        raise BadRequest(f"vif_type {kind!r} is not one of {', '.join(VIF_TYPES)}")
    return kind


def devname(value: Any, field: str = "devname") -> str | None:
    if value is None:
        return None
    name = text(value, field, max_len=15)
    if not DEVNAME_RE.match(name):
        raise BadRequest(f"{field} {name!r} is not a valid interface name")
    return name


NETNS_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def netns_name(value: Any, field: str = "name") -> str:
    name = text(value, field, max_len=64)
    if not NETNS_RE.match(name) or name in (".", ".."):
        raise BadRequest(f"{field} {name!r} is not a valid namespace name")
    return name


def mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadRequest(f"{field} must be an object, not {type(value).__name__}")
    return value


# -- live_trace (network 1.5, compute 1.3) ---------------------------------------------

MAX_TRACE_SECONDS = 30.0
LIVE_TRACE_ARGS = ("probe", "seconds", "send", "delay")


@dataclasses.dataclass(frozen=True)
class LiveTrace:
    """A checked ``live_trace`` request: trace ``probe``'s flow for ``seconds``.

    ``send``: this node sends the probe, ``delay`` seconds after its monitor
    started (the other nodes only watch).
    """

    probe: Packet
    seconds: float
    send: bool
    delay: float


def number(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{field} must be a number, not {type(value).__name__}")
    if not low <= value <= high:
        raise BadRequest(f"{field} {value} is out of range ({low:g} to {high:g})")
    return float(value)


def port(value: Any, field: str) -> int:
    checked = integer(value, field)
    if checked > 65535:
        raise BadRequest(f"{field} {checked} is out of range (1 to 65535)")
    return checked


def probe(value: Any, field: str = "probe") -> Packet:
    """``{"src", "dst", "proto", "sport"?, "dport"?}``: IPv4 addresses, a port for tcp/udp only."""
    raw = mapping(value, field)
    unknown = sorted(set(raw) - {"src", "dst", "proto", "sport", "dport"})
    if unknown:
        raise BadRequest(f"{field}: unexpected key(s): {', '.join(map(str, unknown))}")
    proto = text(raw.get("proto"), f"{field}.proto", max_len=8)
    if proto not in PROTOCOLS:
        raise BadRequest(f"{field}.proto {proto!r} is not one of {', '.join(PROTOCOLS)}")
    ports = {
        key: None if raw.get(key) is None else port(raw[key], f"{field}.{key}")
        for key in ("sport", "dport")
    }
    if proto == "icmp" and any(p is not None for p in ports.values()):
        raise BadRequest(f"{field}: an icmp probe has no ports")
    if proto != "icmp" and ports["dport"] is None:
        raise BadRequest(f"{field}: a {proto} probe needs dport")
    return Packet(
        src=ipv4(raw.get("src"), f"{field}.src"),
        dst=ipv4(raw.get("dst"), f"{field}.dst"),
        proto=proto,
        sport=ports["sport"],
        dport=ports["dport"],
        icmp_type=8 if proto == "icmp" else None,
    )


def live_trace(kw: Mapping[str, Any]) -> LiveTrace:
    """The arguments of ``live_trace``, all checked before anything runs."""
    seconds = number(kw.get("seconds"), "seconds", 1, MAX_TRACE_SECONDS)
    send = kw.get("send")
    if not isinstance(send, bool):
        raise BadRequest(f"send must be true or false, not {type(send).__name__}")
    delay = number(kw.get("delay", 0), "delay", 0, seconds - 0.5)
    return LiveTrace(probe(kw.get("probe")), seconds, send, delay)
