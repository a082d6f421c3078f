"""MAC addresses of instances: fa:16:3e:xx:xx:xx, as nova generated them."""

from __future__ import annotations

import re
import secrets

from novanet.exception import UsageError

OUI = "fa:16:3e"
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def random_mac() -> str:
    tail = secrets.token_bytes(3)
    return OUI + "".join(f":{b:02x}" for b in tail)


def normalize_mac(value: str) -> str:
    """Lower-case colon form; refuses anything that is not a unicast MAC."""
    text = (value or "").strip().lower().replace("-", ":")
    if not _MAC.match(text):
        raise UsageError(f"--mac: {value!r} is not a MAC address (expected xx:xx:xx:xx:xx:xx)")
    if int(text[:2], 16) & 1:
        raise UsageError(f"--mac: {value} is a multicast address; instances need a unicast MAC")
    if text == "00:00:00:00:00:00":
        raise UsageError("--mac: 00:00:00:00:00:00 is not a usable MAC address")
    return text


def host_side_mac(mac: str) -> str:
    """The tap/veth host end's MAC: the guest MAC with the first byte set to fe (as in the seed)."""
    return "fe" + normalize_mac(mac)[2:]
