"""A table novanet owns, as plain data: its sets, its chains, the script that writes it.

Pure: nothing here touches the kernel. A :class:`TableSpec` names the
table, declares its sets (name and field types) and carries the text of
its chains; set elements are kept as the bytes nf_tables stores as their
keys (:meth:`SetSpec.encode`), so what the agent wants and what a netlink
dump returns compare directly, without parsing ``nft`` output.

Key layout (what ``nft`` sends and the kernel dumps back): ``ifname`` is
16 bytes, the name NUL-padded; ``ether_addr`` 6 bytes; ``ipv4_addr`` 4
bytes in network order. In a concatenation every field is padded to a
multiple of 4 bytes (nf_tables registers are 32 bits wide), so
``ifname . ether_addr`` is 16 + 8 bytes and ``ifname . ipv4_addr`` 16 + 4.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Interface names rendered into nft scripts: no quote or space can get in.
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

Element = tuple[str, bytes]  # (set name, key)


def _encode_ifname(value: str) -> bytes:
    if not _IFNAME_RE.match(value):
        raise ValueError(f"invalid interface name {value!r} for an nftables set")
    return value.encode().ljust(16, b"\0")


def _decode_ifname(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode(errors="replace")


def _encode_mac(value: str) -> bytes:
    mac = value.strip().lower()
    if not _MAC_RE.match(mac):
        raise ValueError(f"invalid MAC address {value!r}")
    return bytes(int(part, 16) for part in mac.split(":"))


def _decode_mac(data: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in data)


def _encode_ipv4(value: str) -> bytes:
    return ipaddress.IPv4Address(value).packed


def _decode_ipv4(data: bytes) -> str:
    return str(ipaddress.IPv4Address(data))


def _encode_raw_mac(value: str) -> bytes:
    if value.startswith("0x"):
        return int(value, 16).to_bytes(6, "big")
    return _encode_mac(value)


def _same(value: str) -> str:
    return value


# field type -> (length in bytes, encode, decode, render in nft syntax). A
# "raw48" field is a MAC address matched as raw payload bits (a DHCP
# message's chaddr, ``@th,288,48``): nft types it as a plain integer.
FIELDS = {
    "ifname": (16, _encode_ifname, _decode_ifname, lambda value: f'"{value}"'),
    "ether_addr": (6, _encode_mac, _decode_mac, _same),
    "ipv4_addr": (4, _encode_ipv4, _decode_ipv4, _same),
    "raw48": (6, _encode_raw_mac, _decode_mac, lambda value: "0x" + value.replace(":", "")),
}


@dataclass(frozen=True)
class SetSpec:
    """A named set: ``set NAME { type FIELD . FIELD; }`` (or ``typeof EXPRESSIONS``).

    ``typeof`` declares the set by the expressions it is looked up with, as a
    set matched against raw payload must be; ``fields`` still gives the key
    layout.
    """

    name: str
    fields: tuple[str, ...]
    typeof: str = ""

    def __post_init__(self) -> None:
        unknown = [field for field in self.fields if field not in FIELDS]
        if unknown or not self.fields:
            raise ValueError(f"set {self.name}: unsupported field types {unknown}")

    def _width(self, field: str) -> int:
        length = FIELDS[field][0]
        return length if len(self.fields) == 1 else (length + 3) & ~3

    @property
    def key_length(self) -> int:
        return sum(self._width(field) for field in self.fields)

    def encode(self, *values: str) -> bytes:
        """The key nf_tables stores for this element (ValueError if a value is invalid)."""
        if len(values) != len(self.fields):
            raise ValueError(f"set {self.name} takes {len(self.fields)} values, not {values}")
        return b"".join(
            FIELDS[field][1](value).ljust(self._width(field), b"\0")
            for field, value in zip(self.fields, values, strict=True)
        )

    def decode(self, key: bytes) -> tuple[str, ...]:
        values = []
        offset = 0
        for field in self.fields:
            length = FIELDS[field][0]
            values.append(FIELDS[field][2](key[offset : offset + length]))
            offset += self._width(field)
        return tuple(values)

    def render(self, key: bytes) -> str:
        """The element in nft syntax: ``"vnet3" . fa:16:3e:2c:e8:ec``."""
        values = zip(self.fields, self.decode(key), strict=True)
        return " . ".join(FIELDS[field][3](value) for field, value in values)

    def declaration(self) -> str:
        kind = f"typeof {self.typeof}" if self.typeof else f"type {' . '.join(self.fields)}"
        return f"set {self.name} {{ {kind}; }}"


@dataclass(frozen=True)
class TableSpec:
    """One table: family, name, named sets and the text of its chains.

    ``chains`` is nft syntax as it goes inside ``table FAMILY NAME { ... }``
    (``chain NAME { ... }`` blocks) and may refer to the sets as ``@NAME``.
    """

    family: str
    name: str
    sets: tuple[SetSpec, ...]
    chains: str

    def set(self, name: str) -> SetSpec:
        for spec in self.sets:
            if spec.name == name:
                return spec
        raise KeyError(f"table {self.name} has no set {name}")

    def describe(self, element: Element) -> str:
        name, key = element
        return f"{name} {{ {self.set(name).render(key)} }}"

    def script(self, elements: Iterable[Element]) -> str:
        """``nft -f`` input that replaces the whole table, elements included, in one transaction.

        ``add table`` first makes ``delete table`` valid when the table is
        absent; nft sends the file as one batch, which nf_tables commits
        atomically: a packet sees the old table or the new one, never none.
        """
        by_set: dict[str, list[str]] = {spec.name: [] for spec in self.sets}
        for name, key in elements:
            by_set[name].append(self.set(name).render(key))
        lines = [
            f"add table {self.family} {self.name}",
            f"delete table {self.family} {self.name}",
            f"table {self.family} {self.name} {{",
            *(f"\t{spec.declaration()}" for spec in self.sets),
            self.chains.strip("\n"),
            "}",
        ]
        for name, rendered in by_set.items():
            for start in range(0, len(rendered), 1000):
                chunk = ", ".join(rendered[start : start + 1000])
                lines.append(f"add element {self.family} {self.name} {name} {{ {chunk} }}")
        return "\n".join(lines) + "\n"


def group(elements: Iterable[Element]) -> dict[str, list[bytes]]:
    """set name -> keys, in a stable order (for batches and messages)."""
    by_set: dict[str, list[bytes]] = {}
    for name, key in sorted(elements):
        by_set.setdefault(name, []).append(key)
    return by_set


def describe_all(spec: TableSpec, elements: Iterable[Element], limit: int = 3) -> str:
    """A short human description of some elements: the first few, then a count."""
    items = sorted(elements)
    shown = ", ".join(spec.describe(element) for element in items[:limit])
    more = len(items) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def flatten(per_key: Mapping[str, Iterable[Element]]) -> set[Element]:
    return {element for elements in per_key.values() for element in elements}
