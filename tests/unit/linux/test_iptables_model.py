"""The in-memory model: names, $chain expansion, rule bookkeeping."""

from __future__ import annotations

import pytest

from novanet.linux.iptables import InvalidChainName, IptablesTable, Naming
from novanet.linux.iptables.names import jump_target


def table(binary: str = "compute", prefix: str = "nova") -> IptablesTable:
    return IptablesTable("filter", Naming(prefix, binary))


def test_wrapped_names_and_expansion() -> None:
    t = table()
    t.add_chain("inst-9")
    t.add_chain("provider")
    t.add_rule("inst-9", "-j $provider")
    assert t.chains() == ["nova-compute-inst-9", "nova-compute-provider"]
    assert t.rules("inst-9") == ["-j nova-compute-provider"]
    assert t.rules("nova-compute-inst-9", wrap=False) == ["-j nova-compute-provider"]


def test_rules_are_stored_as_iptables_prints_them() -> None:
    t = table()
    t.add_chain("inst-9")
    t.add_rule("inst-9", "-s 10.0.0.1 -p udp --dport 68 --sport 67 -j ACCEPT")
    assert t.rules("inst-9") == ["-s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT"]
    # Same rule, other spelling: not added twice, removable.
    t.add_rule("inst-9", "-p udp -s 10.0.0.1/32 -m udp --sport 67 --dport 68 -j ACCEPT")
    assert len(t.rules("inst-9")) == 1
    assert t.remove_rule("inst-9", "-s 10.0.0.1 -p udp --sport 67 --dport 68 -j ACCEPT")
    assert t.rules("inst-9") == []
    assert not t.remove_rule("inst-9", "-j ACCEPT")


def test_top_rules_stay_in_front_in_insertion_order() -> None:
    t = table()
    t.add_chain("x")
    t.add_rule("x", "-j ACCEPT")
    t.add_rule("x", "-j DROP", top=True)
    t.add_rule("x", "-j RETURN", top=True)
    assert t.rules("x") == ["-j DROP", "-j RETURN", "-j ACCEPT"]


def test_remove_chain_removes_jumps_to_it_everywhere() -> None:
    t = table()
    t.add_chain("local")
    t.add_chain("inst-9")
    t.add_rule("local", "-d 10.0.0.2 -j $inst-9")
    t.add_rule("local", "-d 10.0.0.3 -j ACCEPT")
    t.add_rule("INPUT", "-j $inst-9", wrap=False)
    t.remove_chain("inst-9")
    assert not t.has_chain("inst-9")
    assert t.rules("local") == ["-d 10.0.0.3/32 -j ACCEPT"]
    assert t.rules("INPUT", wrap=False) == []


def test_set_rules_replaces_and_tracks_changes() -> None:
    t = table()
    t.add_chain("inst-9")
    t.take_changes()
    t.set_rules("inst-9", ["-j DROP"])
    changes = t.take_changes()
    assert changes.chains == {"nova-compute-inst-9": ("-j DROP",)} and not changes.shared
    t.set_rules("inst-9", ["-j DROP"])
    assert not t.take_changes()
    t.add_rule("FORWARD", "-j ACCEPT", wrap=False)
    changes = t.take_changes()
    assert changes.chains == {} and changes.shared
    t.remove_chain("inst-9")
    assert t.take_changes().chains == {"nova-compute-inst-9": None}


def test_snapshots_are_copies_not_live_lists() -> None:
    t = table()
    t.add_chain("local")
    t.add_rule("local", "-d 10.0.0.2 -j ACCEPT")
    snap = t.snapshot()
    t.add_rule("local", "-d 10.0.0.3 -j ACCEPT")
    assert snap.chains["nova-compute-local"] == ("-d 10.0.0.2/32 -j ACCEPT",)
    assert snap.shared["INPUT"] == ()
    assert t.snapshot().chains["nova-compute-local"] == (
        "-d 10.0.0.2/32 -j ACCEPT",
        "-d 10.0.0.3/32 -j ACCEPT",
    )


def test_removing_a_chain_among_thousands_finds_its_jumps_directly() -> None:
    t = table()
    t.add_chain("local")
    for i in range(3000):
        t.add_chain(f"inst-{i}")
        t.add_rule("local", f"-d 10.1.{i // 250}.{i % 250 + 1} -j $inst-{i}")
    t.add_rule("local", "-d 10.9.9.9 -j $inst-1500")  # a second jump to the same chain
    t.take_changes()
    t.remove_chain("inst-1500")
    rules = t.rules("local")
    assert len(rules) == 2999
    assert not any("inst-1500" in rule for rule in rules)
    assert t.take_changes().chains.keys() == {"nova-compute-local", "nova-compute-inst-1500"}


def test_unknown_chains_and_long_names_are_refused() -> None:
    t = table()
    with pytest.raises(ValueError, match="unknown chain"):
        t.add_rule("nosuch", "-j ACCEPT")
    with pytest.raises(InvalidChainName):
        t.add_chain("a-very-long-chain-name-indeed")
    with pytest.raises(InvalidChainName):
        Naming("nova", "api-metadata")
    with pytest.raises(InvalidChainName):
        Naming("nova-x", "api")


def test_order_key_ranks_binaries() -> None:
    naming = Naming("nova", "compute")
    keys = [
        naming.order_key(rule, frozenset())
        for rule in (
            "-j nova-filter-top",
            "-j nova-network-local",
            "-j nova-compute-local",
            "-j nova-api-local",
            "-j nova-beta-local",
            "-j nova-postrouting-bottom",
            "-j ACCEPT",
        )
    ]
    assert keys == sorted(keys)
    assert naming.order_key("-p tcp -j ACCEPT", frozenset({"-p tcp -j ACCEPT"})) == keys[2]
    assert jump_target("-m comment --comment x -g nova-x") == "nova-x"


def test_duplicates_are_refused_in_short_and_long_chains_alike() -> None:
    """Chains above COUNTED rules keep a Counter, shorter ones are scanned: same answers."""
    from novanet.linux.iptables.model import COUNTED

    t = table()
    t.add_chain("x")
    rules = [f"-d 10.0.0.{i}/32 -j ACCEPT" for i in range(COUNTED + 10)]
    for count, rule in enumerate(rules, 1):  # crosses the threshold on the way
        t.add_rule("x", rule)
        t.add_rule("x", rules[0])  # already there: not added again
        assert len(t.rules("x")) == count
    assert t.remove_rule("x", rules[5])
    assert not t.remove_rule("x", rules[5])
    t.add_rule("x", rules[5])
    assert t.rules("x") == rules[:5] + rules[6:] + [rules[5]]
    t.set_rules("x", rules[:3])  # short again
    t.add_rule("x", rules[1])
    assert t.rules("x") == rules[:3]
    assert not t.remove_rule("x", rules[7])
    t.set_rules("x", rules)  # long at once
    t.add_rule("x", rules[-1])
    assert t.remove_rule("x", rules[-1]) and not t.remove_rule("x", rules[-1])
    assert t.rules("x") == rules[:-1]
