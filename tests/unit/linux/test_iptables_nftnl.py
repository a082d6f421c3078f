"""Decoding nf_tables rule messages as the kernel sends them (no kernel needed)."""

from __future__ import annotations

import socket
import struct

from novanet.linux.iptables.nftnl import (
    MSG_NEWRULE,
    NFNL_SUBSYS_NFTABLES,
    _attr,
    _message,
    _rule,
    _text,
)
from novanet.linux.iptables.view import RuleHandle

NESTED = 0x8000  # NLA_F_NESTED, set by the kernel on nested attributes


def expression(name: str, data: bytes) -> bytes:
    # NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { ... } }
    return _attr(1 | NESTED, _text(1, name) + _attr(2 | NESTED, data))


def verdict(code: int, chain: str | None = None) -> bytes:
    # NFTA_IMMEDIATE_DREG 0, NFTA_IMMEDIATE_DATA { NFTA_DATA_VERDICT { CODE, CHAIN } }
    inner = _attr(1, struct.pack(">i", code)) + (_text(2, chain) if chain else b"")
    return expression(
        "immediate",
        _attr(1, struct.pack(">I", 0)) + _attr(2 | NESTED, _attr(2 | NESTED, inner)),
    )


def newrule(table: str, chain: str, handle: int, *exprs: bytes) -> bytes:
    attrs = (
        _text(1, table)
        + _text(2, chain)
        + _attr(3, struct.pack(">Q", handle))
        + _attr(4 | NESTED, b"".join(exprs))
    )
    kind = (NFNL_SUBSYS_NFTABLES << 8) | MSG_NEWRULE
    return _message(kind, 0, 0, socket.AF_INET, 0, attrs)


def decode(data: bytes) -> tuple[int, str, RuleHandle] | None:
    length = struct.unpack_from("=I", data)[0]
    return _rule(data, 0, length)


def test_a_jump_is_decoded_with_its_chain() -> None:
    payload = expression("payload", b"\0" * 24) + expression("cmp", b"\0" * 16)
    counter = expression("counter", b"\0" * 24)
    data = newrule(
        "filter", "nova-compute-local", 4711, payload, counter, verdict(-3, "nova-compute-inst-9")
    )
    assert decode(data) == (
        socket.AF_INET,
        "filter",
        RuleHandle("nova-compute-local", 4711, "nova-compute-inst-9"),
    )


def test_accept_drop_and_extension_targets_have_no_chain() -> None:
    accept = newrule("filter", "nova-compute-inst-9", 12, verdict(1))
    assert decode(accept) == (socket.AF_INET, "filter", RuleHandle("nova-compute-inst-9", 12, None))
    snat = newrule("nat", "nova-network-snat", 13, expression("target", _text(1, "SNAT")))
    assert decode(snat) == (socket.AF_INET, "nat", RuleHandle("nova-network-snat", 13, None))


def test_a_message_without_a_handle_is_skipped() -> None:
    kind = (NFNL_SUBSYS_NFTABLES << 8) | MSG_NEWRULE
    data = _message(kind, 0, 0, socket.AF_INET, 0, _text(1, "filter") + _text(2, "x"))
    assert decode(data) is None
