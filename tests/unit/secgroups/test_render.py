"""Security-group rules: checked as nova checked them, rendered as iptables prints them."""

from __future__ import annotations

import pytest

from novanet.compute import secgroups
from novanet.exception import BadRequest, UsageError
from novanet.linux.ipset import KernelSet, parse_save, plan_sets
from novanet.linux.iptables.normalise import normalise_rule
from novanet.secrules import Rule, check_ports, cidr_rule, from_compact, group_rule

# nova: virt/firewall.py IptablesFirewallDriver instance_rules (_build_tcp_udp_rule,
# _build_icmp_rule): --dport for one port, multiport for a range, type[/code] for icmp.
RENDERED = [
    ("tcp 22 22 10.0.0.0/24", "-s 10.0.0.0/24 -p tcp -m tcp --dport 22 -j ACCEPT"),
    ("tcp 22 22 0.0.0.0/0", "-p tcp -m tcp --dport 22 -j ACCEPT"),
    ("udp 53 53 192.168.56.0/24", "-s 192.168.56.0/24 -p udp -m udp --dport 53 -j ACCEPT"),
    ("tcp 8000 8080 0.0.0.0/0", "-p tcp -m multiport --dports 8000:8080 -j ACCEPT"),
    ("tcp 0 65535 10.0.0.5/32", "-s 10.0.0.5/32 -p tcp -m multiport --dports 0:65535 -j ACCEPT"),
    ("icmp -1 -1 0.0.0.0/0", "-p icmp -j ACCEPT"),
    ("icmp 8 -1 0.0.0.0/0", "-p icmp -m icmp --icmp-type 8 -j ACCEPT"),
    ("icmp 3 4 10.0.0.0/8", "-s 10.0.0.0/8 -p icmp -m icmp --icmp-type 3/4 -j ACCEPT"),
    (
        "tcp 5432 5432 @7",
        "-p tcp -m set --match-set nova-compute-group-7 src -m tcp --dport 5432 -j ACCEPT",
    ),
    (
        "udp 1000 2000 @12",
        "-p udp -m set --match-set nova-compute-group-12 src -m multiport --dports 1000:2000 -j ACCEPT",
    ),
    ("icmp -1 -1 @3", "-p icmp -m set --match-set nova-compute-group-3 src -j ACCEPT"),
]


@pytest.mark.parametrize(("compact", "rule"), RENDERED)
def test_rendering_is_what_iptables_prints(compact, rule):
    assert secgroups.render([compact], "nova") == [rule]
    # the iptables model compares with `iptables -S` through the normaliser
    assert normalise_rule(rule) == rule


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sctp", 1, 2), "not one of tcp, udp, icmp"),
        (("tcp", -1, 22), "out of range"),
        (("tcp", 22, 65536), "out of range"),
        (("udp", 90, 80), "greater than"),
        (("tcp", "x", 80), "not an integer"),
        (("icmp", 256, -1), "icmp type 256 is out of range"),
        (("icmp", 255, 0), "icmp type 255 is out of range"),  # iptables' wildcard
        (("icmp", 8, 256), "icmp code 256 is out of range"),
        (("icmp", -2, -1), "out of range"),
        (("icmp", -1, 0), "needs a type"),
    ],
)
def test_bad_ports_are_refused_with_one_line(args, message):
    with pytest.raises(UsageError, match=message) as info:
        check_ports(*args)
    assert "\n" not in str(info.value)


def test_protocol_is_case_insensitive_and_ports_are_integers():
    assert check_ports("TCP", "22", " 80") == ("tcp", 22, 80)
    assert check_ports("icmp", "-1", "-1") == ("icmp", -1, -1)


@pytest.mark.parametrize("cidr", ["10.0.0.1/24", "10.0.0.0/33", "nope", "10.0.0.0", "::/0", ""])
def test_bad_cidrs_are_refused(cidr):
    with pytest.raises(UsageError):
        cidr_rule("tcp", 22, 22, cidr)


def test_compact_form_round_trips_and_refuses_garbage():
    for rule in (cidr_rule("tcp", 22, 22, "0.0.0.0/0"), group_rule("icmp", 8, 0, 4)):
        assert from_compact(rule.compact()) == rule
    assert Rule("tcp", 1, 2, "10.0.0.0/8").compact() == "tcp 1 2 10.0.0.0/8"
    for bad in ["tcp 22 22", "tcp 22 21 0.0.0.0/0", "tcp 22 22 @0", "tcp 22 22 @x", 5,
                "tcp 022 22 0.0.0.0/0", "tcp 22 22 10.0.0.1/24", "tcp  22 22 0.0.0.0/0", "x" * 80]:
        with pytest.raises(BadRequest):
            from_compact(bad)


def test_set_names_fit_ipset_and_are_owned():
    assert secgroups.set_name("nova", 7) == "nova-compute-group-7"
    long_prefix = "a-very-long-iptables-prefix"
    name = secgroups.set_name(long_prefix, 9_999_999_999)
    assert len(name) <= 31 and secgroups.set_pattern(long_prefix).match(name)
    assert secgroups.set_name(long_prefix, 1) != secgroups.set_name("a-very-long-iptables-prefiy", 1)
    assert not secgroups.set_pattern("nova").match("nova-compute-group-tmp")
    with pytest.raises(ValueError):
        secgroups.set_name("nova", 10**12)


def test_wanted_sets_are_the_source_groups_of_the_rules():
    wanted = secgroups.wanted_sets(
        [["tcp 22 22 @1", "tcp 80 80 0.0.0.0/0"], ["icmp -1 -1 @2"], []],
        {1: ["10.0.0.3", "10.0.0.2"]},
        "nova",
    )
    # group 2 was never described: an empty set admits nobody (the safe side)
    assert wanted == {
        "nova-compute-group-1": frozenset({"10.0.0.2", "10.0.0.3"}),
        "nova-compute-group-2": frozenset(),
    }


def test_set_plan_is_the_difference_only():
    present = {
        "s-group-1": KernelSet("hash:ip", frozenset({"10.0.0.2", "10.0.0.3"})),
        "s-group-2": KernelSet("hash:ip", frozenset({"10.0.0.9"})),
        "s-group-3": KernelSet("hash:net", frozenset()),
    }
    wanted = {
        "s-group-1": frozenset({"10.0.0.2", "10.0.0.4"}),
        "s-group-3": frozenset({"10.0.0.5"}),
        "s-group-4": frozenset({"10.0.0.6"}),
    }
    plan = plan_sets(wanted, present)
    assert plan.before.splitlines() == [
        "add s-group-1 10.0.0.4",
        "del s-group-1 10.0.0.3",
        "destroy s-group-3",  # swap refuses sets of different types
        "create s-group-3 hash:ip family inet hashsize 1024 maxelem 65536",
        "add s-group-3 10.0.0.5",
        "create s-group-4 hash:ip family inet hashsize 1024 maxelem 65536",
        "add s-group-4 10.0.0.6",
    ]
    assert plan.after == "destroy s-group-2\n"
    same = wanted | {"s-group-2": frozenset({"10.0.0.9"})}
    assert not plan_sets(same, {k: KernelSet("hash:ip", v) for k, v in same.items()})


def test_ipset_save_is_parsed_for_owned_sets_only():
    text = (
        "create nova-compute-group-1 hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12\n"
        "add nova-compute-group-1 10.0.0.2\n"
        "create other hash:ip family inet\nadd other 10.0.0.9\n"
    )
    sets = parse_save(text, secgroups.set_pattern("nova"))
    assert sets == {"nova-compute-group-1": KernelSet("hash:ip", frozenset({"10.0.0.2"}))}
