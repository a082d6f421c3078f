"""TableSpec/SetSpec: element keys as nf_tables stores them, and the whole-table script."""

from __future__ import annotations

import pytest

from novanet.compute.antispoof import CHADDR, IPS, MACS, PORTS, TABLE, port_elements
from novanet.linux.nftables.spec import SetSpec, TableSpec, describe_all


def test_keys_are_laid_out_like_the_kernels() -> None:
    # What a dump of the real kernel returned for these elements (see
    # tests/functional/test_nftables.py): ifname 16 bytes, MAC padded to 8.
    assert PORTS.encode("vnet1") == b"vnet1" + b"\0" * 11
    assert MACS.encode("vnet1", "FA:16:3e:2c:e8:ec") == (
        b"vnet1" + b"\0" * 11 + bytes.fromhex("fa163e2ce8ec") + b"\0\0"
    )
    assert IPS.encode("vnet1", "10.0.0.2") == b"vnet1" + b"\0" * 11 + bytes([10, 0, 0, 2])
    assert (PORTS.key_length, MACS.key_length, IPS.key_length) == (16, 24, 20)


def test_decode_and_render_round_trip() -> None:
    key = MACS.encode("vnet12", "fa:16:3e:00:00:0a")
    assert MACS.decode(key) == ("vnet12", "fa:16:3e:00:00:0a")
    assert MACS.render(key) == '"vnet12" . fa:16:3e:00:00:0a'
    assert IPS.render(IPS.encode("vnet0", "10.0.0.2")) == '"vnet0" . 10.0.0.2'


@pytest.mark.parametrize(
    ("spec", "values"),
    [
        (PORTS, ('vnet0" ; flush ruleset ; "',)),  # nothing can be injected into a script
        (PORTS, ("a" * 16,)),
        (MACS, ("vnet0", "fa:16:3e:2c:e8")),
        (IPS, ("vnet0", "10.0.0.256")),
        (IPS, ("vnet0",)),
    ],
)
def test_bad_values_are_refused(spec: SetSpec, values: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        spec.encode(*values)


def test_unknown_field_type() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        SetSpec("x", ("ipv6_addr",))


def test_script_replaces_the_table_in_one_file() -> None:
    elements = port_elements("vnet0", "fa:16:3e:2c:e8:ec", "10.0.0.2")
    script = TABLE.script(elements)
    lines = script.splitlines()
    assert lines[:3] == [
        "add table bridge novanet",
        "delete table bridge novanet",
        "table bridge novanet {",
    ]
    assert "\tset vif_macs { type ifname . ether_addr; }" in lines
    assert 'add element bridge novanet vif_macs { "vnet0" . fa:16:3e:2c:e8:ec }' in lines
    assert 'add element bridge novanet vif_ips { "vnet0" . 10.0.0.2 }' in lines
    assert 'add element bridge novanet vif_ports { "vnet0" }' in lines
    # No element, no (invalid) empty "add element ... { }".
    assert "add element" not in TABLE.script([])


def test_big_scripts_are_chunked() -> None:
    spec = TableSpec("bridge", "t", (PORTS,), "")
    script = spec.script({(PORTS.name, PORTS.encode(f"vnet{i}")) for i in range(2500)})
    assert sum(line.startswith("add element") for line in script.splitlines()) == 3


def test_describe_all_shows_a_few() -> None:
    elements = {(PORTS.name, PORTS.encode(f"vnet{i}")) for i in range(5)}
    assert describe_all(TABLE, elements) == (
        'vif_ports { "vnet0" }, vif_ports { "vnet1" }, vif_ports { "vnet2" } and 2 more'
    )


def test_a_raw_payload_mac_is_rendered_as_an_integer() -> None:
    # vif_chaddr is matched against a DHCP message's chaddr (@th,288,48),
    # which nft types as an integer: same key bytes as a MAC, other syntax.
    key = CHADDR.encode("vnet0", "fa:16:3e:2c:e8:ec")
    assert key == MACS.encode("vnet0", "fa:16:3e:2c:e8:ec")
    assert CHADDR.render(key) == '"vnet0" . 0xfa163e2ce8ec'
    assert CHADDR.encode("vnet0", "0xfa163e2ce8ec") == key
    assert CHADDR.declaration() == "set vif_chaddr { typeof iifname . @th,288,48; }"


def test_no_nft_program_is_one_clear_error() -> None:
    from novanet.exception import NotFound
    from novanet.linux.nftables.backend import require_nft

    with pytest.raises(NotFound, match="apt-get install nftables"):
        require_nft(lambda name: None)
    require_nft(lambda name: f"/usr/sbin/{name}")
