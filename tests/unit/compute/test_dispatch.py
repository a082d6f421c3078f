"""nova-compute-local's jumps, flat or in /26 buckets, in the manager's real model."""

from __future__ import annotations

import ipaddress
import random

import pytest

from novanet.compute.dispatch import LocalJumps, bucket_of, layout
from novanet.linux.iptables import IptablesTable, Naming
from novanet.linux.iptables.model import declare_defaults
from novanet.linux.iptables.names import jump_target

PREFIX = "nova-compute-"


def table() -> IptablesTable:
    naming = Naming("nova", "compute")
    filt = IptablesTable("filter", naming)
    declare_defaults(filt, naming)
    return filt


def address(i: int) -> str:
    return f"10.0.{i // 250}.{i % 250 + 2}"


def held(filt: IptablesTable) -> dict[str, list[str]]:
    """local and the bucket chains as the table holds them (unwrapped names)."""
    names = ["local"] + [c[len(PREFIX) :] for c in filt.chains() if c.startswith(PREFIX + "l-")]
    return {name: filt.rules(name) for name in names}


def route(filt: IptablesTable, target: str) -> list[str]:
    """The chains a packet to ``target`` passes from nova-compute-local, evaluated here."""
    chain, passed = PREFIX + "local", []
    while chain.startswith(PREFIX) and not chain.startswith(PREFIX + "inst-"):
        passed.append(chain)
        for rule in filt.rules(chain, wrap=False):
            net = rule.split()[1]  # -d <net> -j <chain>
            if ipaddress.IPv4Address(target) in ipaddress.IPv4Network(net):
                chain = jump_target(rule) or ""
                break
        else:
            return passed  # falls through: not sent to any instance
    return passed + [chain]


def test_small_host_keeps_the_seed_listing() -> None:
    filt = table()
    jumps = LocalJumps(filt, split_above=4)
    jumps.set("inst-9", "10.0.0.2")
    jumps.set("inst-10", "10.0.0.3")
    assert held(filt) == {
        "local": [
            "-d 10.0.0.2/32 -j nova-compute-inst-9",
            "-d 10.0.0.3/32 -j nova-compute-inst-10",
        ]
    }
    assert not jumps.split


def test_above_the_threshold_the_jumps_move_into_buckets() -> None:
    filt = table()
    jumps = LocalJumps(filt, split_above=4)
    for i in (1, 70, 2, 3, 200):  # 10.0.0.3, 10.0.0.72, 10.0.0.4, 10.0.0.5, 10.0.0.202
        jumps.set(f"inst-{i}", address(i))
    assert jumps.split
    assert held(filt) == {
        "local": [
            "-d 10.0.0.0/26 -j nova-compute-l-0a000000",
            "-d 10.0.0.64/26 -j nova-compute-l-0a000040",
            "-d 10.0.0.192/26 -j nova-compute-l-0a0000c0",
        ],
        "l-0a000000": [
            "-d 10.0.0.3/32 -j nova-compute-inst-1",
            "-d 10.0.0.4/32 -j nova-compute-inst-2",
            "-d 10.0.0.5/32 -j nova-compute-inst-3",
        ],
        "l-0a000040": ["-d 10.0.0.72/32 -j nova-compute-inst-70"],
        "l-0a0000c0": ["-d 10.0.0.202/32 -j nova-compute-inst-200"],
    }
    assert route(filt, "10.0.0.72") == [
        "nova-compute-local",
        "nova-compute-l-0a000040",
        "nova-compute-inst-70",
    ]
    assert route(filt, "10.0.0.73") == ["nova-compute-local", "nova-compute-l-0a000040"]


def test_a_new_bucket_is_made_and_an_empty_one_goes() -> None:
    filt = table()
    jumps = LocalJumps(filt, split_above=2)
    for i in (1, 2, 3, 4):
        jumps.set(f"inst-{i}", address(i))
    jumps.set("inst-500", "10.0.2.2")  # another /26
    assert "-d 10.0.2.0/26 -j nova-compute-l-0a000200" in filt.rules("local")
    assert filt.rules("l-0a000200") == ["-d 10.0.2.2/32 -j nova-compute-inst-500"]
    jumps.remove("inst-500")
    assert not filt.has_chain("l-0a000200")
    assert filt.rules("local") == ["-d 10.0.0.0/26 -j nova-compute-l-0a000000"]
    jumps.remove("inst-2")
    assert filt.rules("l-0a000000") == [
        "-d 10.0.0.3/32 -j nova-compute-inst-1",
        "-d 10.0.0.5/32 -j nova-compute-inst-3",
        "-d 10.0.0.6/32 -j nova-compute-inst-4",
    ]


def test_the_jumps_move_back_below_half_the_threshold_in_arrival_order() -> None:
    filt = table()
    jumps = LocalJumps(filt, split_above=6)
    order = [5, 300, 1, 700, 2, 9, 40]
    for i in order:
        jumps.set(f"inst-{i}", address(i))
    assert jumps.split
    for i in (300, 700, 40, 9):  # 3 left: not below 6 // 2 yet
        jumps.remove(f"inst-{i}")
        assert jumps.split
    jumps.remove("inst-5")
    assert not jumps.split
    assert held(filt) == {
        "local": [
            "-d 10.0.0.3/32 -j nova-compute-inst-1",
            "-d 10.0.0.4/32 -j nova-compute-inst-2",
        ]
    }


def test_a_changed_address_moves_the_jump() -> None:
    for split_above in (0, 1):
        filt = table()
        jumps = LocalJumps(filt, split_above=split_above)
        jumps.set("inst-1", "10.0.0.2")
        jumps.set("inst-2", "10.0.0.3")
        jumps.set("inst-1", "10.0.5.9")
        assert route(filt, "10.0.5.9")[-1] == "nova-compute-inst-1"
        assert route(filt, "10.0.0.2")[-1] != "nova-compute-inst-1"
        assert len(jumps) == 2


def test_zero_never_splits() -> None:
    filt = table()
    jumps = LocalJumps(filt, split_above=0)
    for i in range(300):
        jumps.set(f"inst-{i}", address(i))
    assert not jumps.split
    assert len(filt.rules("local")) == 300


def test_a_bad_address_changes_nothing() -> None:
    filt = table()
    jumps = LocalJumps(filt, split_above=1)
    jumps.set("inst-1", "10.0.0.2")
    jumps.set("inst-2", "10.0.0.3")
    before = held(filt)
    with pytest.raises(ValueError):
        jumps.set("inst-1", "10.0.0.300")
    with pytest.raises(ValueError):
        jumps.set("inst-3", "fe80::1")
    assert held(filt) == before
    assert len(jumps) == 2


def test_bucket_names() -> None:
    assert bucket_of("10.0.1.2") == ("l-0a000100", "10.0.1.0/26")
    assert bucket_of("192.168.100.255") == ("l-c0a864c0", "192.168.100.192/26")


def test_any_sequence_leaves_the_layout_of_what_is_left() -> None:
    """Random sets, moves and removals: the table always holds layout(jumps), every address routed."""
    rng = random.Random(17)
    filt = table()
    jumps = LocalJumps(filt, split_above=20)
    wanted: dict[str, str] = {}
    for _ in range(600):
        chain = f"inst-{rng.randrange(60)}"
        if rng.random() < 0.45 and chain in wanted:
            jumps.remove(chain)
            del wanted[chain]
        else:
            target = address(rng.randrange(400))
            if target in wanted.values():  # one instance per address
                continue
            wanted.pop(chain, None)  # a move goes to the end, as in the table
            wanted[chain] = target
            jumps.set(chain, target)
        expected = layout(wanted, jumps.split)
        assert held(filt) == {
            name: [filt.canonical(rule) for rule in rules] for name, rules in expected.items()
        }
        for chain_, target in wanted.items():
            assert route(filt, target)[-1] == PREFIX + chain_
