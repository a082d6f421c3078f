"""The iptables evaluator on small rule sets and on novanet's own (seed and rendered)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from novanet.compute import rules as compute_rules
from novanet.compute import secgroups
from novanet.explain.iptables_eval import ChainResult, EvalContext, EvalError, Ruleset
from novanet.explain.packet import Packet
from novanet.linux.fakes.iptables import FakeIptables
from novanet.linux.iptables import IptablesManager
from novanet.linux.iptables.declare import declare
from novanet.linux.iptables.parse import SaveParseError
from novanet.network import floating_rules
from novanet.network import rules as network_rules

LISTINGS = Path("/work/shared/seed/listings")


def listing_to_save(lines: list[str], table: str) -> str:
    """``iptables -S`` output as the ``iptables-save`` text it stands for."""
    out = [f"*{table}"]
    out += [f":{line.split()[1]} {line.split()[2]} [0:0]" for line in lines if line[:3] == "-P "]
    out += [f":{line.split()[1]} - [0:0]" for line in lines if line[:3] == "-N "]
    out += [line for line in lines if line[:3] == "-A "]
    return "\n".join([*out, "COMMIT", ""])


def seed(name: str, table: str) -> str:
    return listing_to_save((LISTINGS / name).read_text().splitlines(), table)


def filter_rules(chains: dict[str, list[str]], policies: dict[str, str] | None = None) -> Ruleset:
    """A filter table with these chains (built-in ones get ACCEPT unless told)."""
    policies = policies or {}
    lines = ["*filter"]
    for chain in ("INPUT", "FORWARD", "OUTPUT"):
        lines.append(f":{chain} {policies.get(chain, 'ACCEPT')} [0:0]")
    lines += [f":{c} - [0:0]" for c in chains if c not in ("INPUT", "FORWARD", "OUTPUT")]
    lines += [f"-A {chain} {rule}" for chain, rules in chains.items() for rule in rules]
    return Ruleset.parse({"filter": "\n".join([*lines, "COMMIT", ""])})


def fwd(rule: str, packet: Packet, ctx: EvalContext | None = None) -> ChainResult:
    """FORWARD with the single rule ``rule`` (policy DROP)."""
    ruleset = filter_rules({"FORWARD": [rule]}, {"FORWARD": "DROP"})
    return ruleset.evaluate("filter", "FORWARD", packet, ctx)


def hits(rule: str, packet: Packet, ctx: EvalContext | None = None) -> bool:
    result = fwd(f"{rule} -j ACCEPT".strip(), packet, ctx)
    assert result.verdict in ("ACCEPT", "DROP"), result
    return result.verdict == "ACCEPT"


PING = Packet("10.0.0.5", "10.0.0.2")
SSH = Packet("10.0.0.5", "10.0.0.2", "tcp", 40000, 22, None)
DNS = Packet("10.0.0.5", "10.0.0.1", "udp", 40000, 53, None)


# -- generic matches -----------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("-s 10.0.0.0/24", True),
        ("-s 10.0.0.5/32", True),
        ("-s 10.0.1.0/24", False),
        ("! -s 10.0.1.0/24", True),
        ("! -s 10.0.0.0/24", False),
        ("-d 10.0.0.2/32", True),
        ("! -d 10.0.0.2/32", False),
        ("-p icmp", True),
        ("-p tcp", False),
        ("! -p tcp", True),
        ("-p 1", True),
        ("-p all", True),
    ],
)
def test_addresses_and_protocol(rule: str, expected: bool) -> None:
    assert hits(rule, PING) is expected


@pytest.mark.parametrize(
    ("rule", "in_iface", "expected"),
    [
        ("-i br100", "br100", True),
        ("-i br100", "eth0", False),
        ("-i br+", "br100", True),
        ("-i br+", "eth0", False),
        ("! -i br+", "eth0", True),
        ("! -i br100", "br100", False),
        ("-i br100", None, False),  # no input device (OUTPUT)
        ("! -i br100", None, True),
    ],
)
def test_in_interface(rule: str, in_iface: str | None, expected: bool) -> None:
    assert hits(rule, PING, EvalContext(in_iface=in_iface)) is expected


def test_out_interface() -> None:
    ctx = EvalContext(in_iface="eth0", out_iface="br100")
    assert hits("-o br100", PING, ctx)
    assert hits("-i eth0 -o br+", PING, ctx)
    assert not hits("-i eth0 -o eth+", PING, ctx)
    assert not hits("! -o br100", PING, ctx)


# -- tcp/udp/multiport ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "packet", "expected"),
    [
        ("-p tcp -m tcp --dport 22", SSH, True),
        ("-p tcp -m tcp --dport 23", SSH, False),
        ("-p tcp -m tcp ! --dport 23", SSH, True),
        ("-p tcp -m tcp --dport 20:30", SSH, True),
        ("-p tcp -m tcp --dport 23:", SSH, False),
        ("-p tcp -m tcp --dport :22", SSH, True),
        ("-p tcp -m tcp --sport 1024:65535 --dport 22", SSH, True),
        ("-p tcp -m tcp --sport 0:1023", SSH, False),
        ("-p tcp --dport 22", SSH, True),  # the implicit tcp match
        ("-p tcp -m tcp --dport 22", DNS, False),
        ("-p udp -m udp --dport 53", DNS, True),
        ("-p udp -m udp --sport 67 --dport 68", DNS, False),
        ("-p tcp -m multiport --dports 80,443,20:25", SSH, True),
        ("-p tcp -m multiport --dports 80,443", SSH, False),
        ("-p tcp -m multiport ! --dports 80,443", SSH, True),
        ("-p udp -m multiport --sports 40000", DNS, True),
        ("-p udp -m multiport --ports 53", DNS, True),
        ("-p udp -m multiport --ports 54", DNS, False),
        ("-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN", SSH, True),
        ("-p tcp -m tcp --syn", SSH, True),
        ("-p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN", SSH, False),
        ("-p tcp -m tcp --syn", SSH.replace(ctstate="ESTABLISHED"), False),
    ],
)
def test_ports(rule: str, packet: Packet, expected: bool) -> None:
    assert hits(rule, packet) is expected


def test_other_tcp_flags_are_unknown() -> None:
    result = fwd("-p tcp -m tcp --tcp-flags SYN,RST RST -j DROP", SSH)
    assert result.verdict == "UNKNOWN"
    assert result.unknown == (
        "cannot predict past rule 1 of FORWARD: unknown option --tcp-flags SYN,RST RST of match tcp"
    )


def test_missing_port_is_unknown() -> None:
    result = fwd("-p tcp -m tcp --dport 22 -j ACCEPT", SSH.replace(dport=None))
    assert result.verdict == "UNKNOWN"
    assert "ports are not known" in (result.unknown or "")


# -- icmp, state, mark, set, physdev, addrtype, comment ----------------------------------------


@pytest.mark.parametrize(
    ("rule", "packet", "expected"),
    [
        ("-p icmp -m icmp --icmp-type 8", PING, True),
        ("-p icmp -m icmp --icmp-type echo-request", PING, True),
        ("-p icmp -m icmp --icmp-type ping", PING, True),
        ("-p icmp -m icmp --icmp-type echo-reply", PING, False),
        ("-p icmp -m icmp --icmp-type 0", PING.reply(), True),
        ("-p icmp -m icmp ! --icmp-type 8", PING, False),
        ("-p icmp -m icmp --icmp-type 8/0", PING, True),
        ("-p icmp -m icmp --icmp-type 3/4", PING, False),
        ("-p icmp -m icmp --icmp-type any", PING, True),
        ("-p icmp -m icmp --icmp-type 8", SSH, False),
    ],
)
def test_icmp_types(rule: str, packet: Packet, expected: bool) -> None:
    assert hits(rule, packet) is expected


def test_icmp_code_of_other_types_is_unknown() -> None:
    result = fwd("-p icmp -m icmp --icmp-type 3/4 -j DROP", PING.replace(icmp_type=3))
    assert result.verdict == "UNKNOWN"
    assert "icmp code is not known" in (result.unknown or "")


@pytest.mark.parametrize(
    ("rule", "ctstate", "expected"),
    [
        ("-m state --state NEW", "NEW", True),
        ("-m state --state RELATED,ESTABLISHED", "NEW", False),
        ("-m state --state RELATED,ESTABLISHED", "ESTABLISHED", True),
        ("-m state ! --state INVALID", "NEW", True),
        ("-m conntrack --ctstate NEW,ESTABLISHED", "NEW", True),
        ("-m conntrack --ctstate INVALID", "NEW", False),
        ("-m conntrack ! --ctstate DNAT", "NEW", True),
        ("-m conntrack ! --ctstate DNAT", "NEW,DNAT", False),
        ("-m conntrack --ctstate DNAT", "ESTABLISHED,DNAT", True),
    ],
)
def test_conntrack_states(rule: str, ctstate: str, expected: bool) -> None:
    assert hits(rule, PING.replace(ctstate=ctstate)) is expected


@pytest.mark.parametrize(
    ("rule", "mark", "expected"),
    [
        ("-m mark --mark 0x1", 1, True),
        ("-m mark --mark 0x1", 3, False),
        ("-m mark --mark 0x1/0x1", 3, True),
        ("-m mark ! --mark 0x1/0x1", 3, False),
        ("-m mark --mark 0x0", 0, True),
    ],
)
def test_mark_match(rule: str, mark: int, expected: bool) -> None:
    assert hits(rule, PING.replace(mark=mark)) is expected


def test_set_match() -> None:
    ctx = EvalContext(ipsets={"web": ["10.0.0.5", "10.0.1.0/24"], "empty": []})
    assert hits("-m set --match-set web src", PING, ctx)
    assert not hits("-m set --match-set web dst", PING, ctx)
    assert not hits("-m set ! --match-set web src", PING, ctx)
    assert hits("-m set --match-set web src", PING.replace(src="10.0.1.9"), ctx)
    assert not hits("-m set --match-set empty src", PING, ctx)
    assert hits("-m set ! --match-set empty src,dst", PING, ctx)


def test_set_not_given_is_unknown() -> None:
    result = fwd("-p tcp -m set --match-set db src -m tcp --dport 22 -j ACCEPT", SSH)
    assert result.verdict == "UNKNOWN"
    assert (
        result.unknown == "cannot predict past rule 1 of FORWARD: members of ipset db are not known"
    )
    # A known match that fails decides without the set.
    assert (
        fwd("-p tcp -m set --match-set db src -m tcp --dport 80 -j ACCEPT", SSH).verdict == "DROP"
    )


BRIDGED = EvalContext("br100", "br100", "eth2", "vnet0", True)


@pytest.mark.parametrize(
    ("rule", "ctx", "expected"),
    [
        ("-m physdev --physdev-in eth2", BRIDGED, True),
        ("-m physdev --physdev-in vnet+", BRIDGED, False),
        ("-m physdev --physdev-out vnet+", BRIDGED, True),
        ("-m physdev ! --physdev-out vnet0", BRIDGED, False),
        ("-m physdev --physdev-is-bridged", BRIDGED, True),
        ("-m physdev --physdev-is-in --physdev-is-out", BRIDGED, True),
        (
            "-m physdev --physdev-is-bridged",
            EvalContext("br100", "br100", "eth2", None, True),
            False,
        ),
        ("-m physdev --physdev-is-bridged", EvalContext("eth0", "br100"), False),
        ("-m physdev ! --physdev-is-bridged", EvalContext("eth0", "br100"), True),
        ("-m physdev ! --physdev-in eth2 --physdev-is-out", EvalContext("eth0", "br100"), False),
    ],
)
def test_physdev(rule: str, ctx: EvalContext, expected: bool) -> None:
    assert hits(rule, PING, ctx) is expected


def test_addrtype_and_comment() -> None:
    ctx = EvalContext(local_addresses=["10.0.0.2"])
    assert hits("-m addrtype --dst-type LOCAL", PING, ctx)
    assert not hits("-m addrtype --src-type LOCAL", PING, ctx)
    assert not hits("-m addrtype ! --dst-type LOCAL", PING, ctx)
    assert hits('-m comment --comment "a rule of ours"', PING)
    assert fwd("-m addrtype --dst-type BROADCAST -j DROP", PING).verdict == "UNKNOWN"


def test_unknown_match_names_rule_and_match() -> None:
    ruleset = filter_rules(
        {"FORWARD": ["-i br100 -j ACCEPT", "-m limit --limit 5/sec -j DROP", "-j ACCEPT"]}
    )
    result = ruleset.evaluate("filter", "FORWARD", PING, EvalContext("eth0", "br100"))
    assert result.verdict == "UNKNOWN"
    assert (result.chain, result.rule) == ("FORWARD", 2)
    assert result.rule_text == "-A FORWARD -m limit --limit 5/sec -j DROP"
    assert result.unknown == "cannot predict past rule 2 of FORWARD: unknown match limit"
    # Before the rule the prediction holds.
    accepted = ruleset.evaluate("filter", "FORWARD", PING, EvalContext("br100", "eth0"))
    assert (accepted.verdict, accepted.rule) == ("ACCEPT", 1)


def test_unknown_option_and_target() -> None:
    assert fwd("-p tcp -m tcp --tcp-option 2 -j DROP", SSH).unknown == (
        "cannot predict past rule 1 of FORWARD: unknown option --tcp-option of match tcp"
    )
    assert fwd("-f -j DROP", PING).unknown == (
        "cannot predict past rule 1 of FORWARD: unknown option -f"
    )
    assert fwd("-j NFQUEUE --queue-num 1", PING).unknown == (
        "cannot predict past rule 1 of FORWARD: unknown target NFQUEUE"
    )


def test_unknown_match_does_not_matter_for_log() -> None:
    ruleset = filter_rules(
        {"FORWARD": ['-m limit --limit 1/min -j LOG --log-prefix "x: "', "-j REJECT"]}
    )
    result = ruleset.evaluate("filter", "FORWARD", PING)
    assert (result.verdict, result.rule) == ("REJECT", 2)


# -- targets and control flow -----------------------------------------------------------


def test_policy_fallthrough() -> None:
    ruleset = filter_rules({"FORWARD": ["-s 192.168.0.0/16 -j ACCEPT"]}, {"FORWARD": "DROP"})
    result = ruleset.evaluate("filter", "FORWARD", PING)
    assert (result.verdict, result.chain, result.rule) == ("DROP", "FORWARD", None)
    assert result.rule_text == "-P FORWARD DROP"
    assert ruleset.evaluate("filter", "INPUT", PING).verdict == "ACCEPT"


def test_jump_return_and_trail() -> None:
    ruleset = filter_rules(
        {
            "FORWARD": ["-j top", "-d 10.0.0.2/32 -j guard", "-j ACCEPT"],
            "top": ["-s 10.0.0.9/32 -j DROP"],  # falls off its end: returns
            "guard": [
                "-p tcp -j RETURN",
                "-j deeper",
                "-j REJECT --reject-with icmp-port-unreachable",
            ],
            "deeper": ["-p icmp -j RETURN"],
        },
        {"FORWARD": "DROP"},
    )
    result = ruleset.evaluate("filter", "FORWARD", PING)
    assert (result.verdict, result.chain, result.rule) == ("REJECT", "guard", 3)
    assert result.rule_text == "-A guard -j REJECT --reject-with icmp-port-unreachable"
    assert result.trail == [("FORWARD", 2, "-A FORWARD -d 10.0.0.2/32 -j guard")]
    tcp = ruleset.evaluate("filter", "FORWARD", SSH)
    assert (tcp.verdict, tcp.chain, tcp.rule, tcp.trail) == ("ACCEPT", "FORWARD", 3, [])


def test_goto_returns_to_the_callers_caller() -> None:
    ruleset = filter_rules(
        {
            "FORWARD": ["-j outer", "-j DROP"],
            "outer": ["-g inner", "-j ACCEPT"],
            "inner": ["-p tcp -j ACCEPT"],  # icmp returns past outer's ACCEPT
        }
    )
    result = ruleset.evaluate("filter", "FORWARD", PING)
    assert (result.verdict, result.chain, result.rule, result.trail) == ("DROP", "FORWARD", 2, [])
    tcp = ruleset.evaluate("filter", "FORWARD", SSH)
    assert (tcp.chain, tcp.rule) == ("inner", 1)
    assert tcp.trail == [("FORWARD", 1, "-A FORWARD -j outer"), ("outer", 1, "-A outer -g inner")]


def test_goto_from_builtin_falls_to_policy() -> None:
    ruleset = filter_rules({"FORWARD": ["-g side", "-j ACCEPT"], "side": []}, {"FORWARD": "DROP"})
    result = ruleset.evaluate("filter", "FORWARD", PING)
    assert (result.verdict, result.rule, result.trail) == ("DROP", None, [])


def test_return_in_builtin_is_policy() -> None:
    ruleset = filter_rules({"FORWARD": ["-j RETURN", "-j ACCEPT"]}, {"FORWARD": "DROP"})
    assert ruleset.evaluate("filter", "FORWARD", PING).rule_text == "-P FORWARD DROP"


def test_mark_target_changes_later_matches() -> None:
    ruleset = filter_rules(
        {
            "FORWARD": [
                "-p icmp -j MARK --set-xmark 0x5/0xffffffff",
                "-j LOG --log-prefix before",
                "-m mark --mark 0x4/0x4 -j ACCEPT",
                "-j TRACE",
                "-j CONNMARK --save-mark",
                "-j DROP",
            ]
        }
    )
    result = ruleset.evaluate("filter", "FORWARD", PING)
    assert (result.verdict, result.rule, result.mark) == ("ACCEPT", 3, 5)
    assert ruleset.evaluate("filter", "FORWARD", SSH).rule == 6


@pytest.mark.parametrize(
    ("target", "before", "after"),
    [
        ("MARK --set-xmark 0x1/0xff", 0x102, 0x101),
        ("MARK --set-mark 0x1/0xff", 0x102, 0x101),
        ("MARK --set-mark 0x1", 0x102, 0x1),
        ("MARK --or-mark 0x4", 0x1, 0x5),
        ("MARK --and-mark 0x4", 0x5, 0x4),
        ("MARK --xor-mark 0x4", 0x5, 0x1),
    ],
)
def test_mark_operations(target: str, before: int, after: int) -> None:
    result = filter_rules({"FORWARD": [f"-j {target}"]}).evaluate(
        "filter", "FORWARD", PING.replace(mark=before)
    )
    assert result.mark == after


def test_connmark_restore_is_unknown() -> None:
    assert fwd(
        "-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff", PING
    ).verdict == ("UNKNOWN")


def nat_rules(chains: dict[str, list[str]]) -> Ruleset:
    lines = ["*nat"] + [
        f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")
    ]
    lines += [f":{c} - [0:0]" for c in chains if c.islower()]
    lines += [f"-A {chain} {rule}" for chain, rules in chains.items() for rule in rules]
    return Ruleset.parse({"nat": "\n".join([*lines, "COMMIT"])})


def test_nat_targets() -> None:
    ruleset = nat_rules(
        {
            "PREROUTING": [
                "-d 192.168.56.10/32 -j DNAT --to-destination 10.0.0.3",
                "-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.9.0.1:8775",
                "-d 169.254.169.253/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8775",
                "-d 192.168.56.11/32 -j DNAT --to-destination 10.0.0.3-10.0.0.4",
            ],
            "POSTROUTING": [
                "-s 10.0.0.3/32 -j SNAT --to-source 192.168.56.10",
                "-o eth0 -j MASQUERADE",
            ],
        }
    )
    pre = ruleset.evaluate("nat", "PREROUTING", Packet("192.168.56.1", "192.168.56.10"))
    assert (pre.verdict, pre.rule, pre.nat) == ("ACCEPT", 1, {"kind": "DNAT", "to": "10.0.0.3"})
    meta = ruleset.evaluate(
        "nat", "PREROUTING", Packet("10.0.0.3", "169.254.169.254", "tcp", 5, 80)
    )
    assert meta.nat == {"kind": "DNAT", "to": "10.9.0.1", "port": 8775}
    redirect = ruleset.evaluate(
        "nat", "PREROUTING", Packet("10.0.0.3", "169.254.169.253", "tcp", 5, 80)
    )
    assert redirect.nat == {"kind": "REDIRECT", "to": None, "port": 8775}
    ranged = ruleset.evaluate("nat", "PREROUTING", Packet("192.168.56.1", "192.168.56.11"))
    assert ranged.verdict == "UNKNOWN" and "range" in (ranged.unknown or "")
    nothing = ruleset.evaluate("nat", "PREROUTING", Packet("192.168.56.1", "192.168.56.12"))
    assert (nothing.verdict, nothing.rule, nothing.nat) == ("ACCEPT", None, None)
    snat = ruleset.evaluate("nat", "POSTROUTING", Packet("10.0.0.3", "8.8.8.8"))
    assert snat.nat == {"kind": "SNAT", "to": "192.168.56.10"}
    masq = ruleset.evaluate(
        "nat", "POSTROUTING", Packet("10.0.0.4", "8.8.8.8"), EvalContext(out_iface="eth0")
    )
    assert (masq.rule, masq.nat) == (2, {"kind": "MASQUERADE", "to": None})


def test_bad_requests_are_refused() -> None:
    ruleset = filter_rules({})
    with pytest.raises(EvalError, match="filter nova-filter-top is not a built-in"):
        ruleset.evaluate("filter", "nova-filter-top", PING)
    with pytest.raises(EvalError, match="nat FORWARD"):
        ruleset.evaluate("nat", "FORWARD", PING)
    with pytest.raises(EvalError, match="unknown iptables table 'bogus'"):
        Ruleset.parse({"bogus": ""})
    with pytest.raises(SaveParseError):
        Ruleset.parse({"filter": "*filter\n-I FORWARD -j DROP\nCOMMIT\n"})


def test_absent_table_accepts() -> None:
    ruleset = Ruleset.parse({"filter": None, "nat": ""})
    result = ruleset.evaluate("nat", "PREROUTING", PING)
    assert (result.verdict, result.rule, result.rule_text) == (
        "ACCEPT",
        None,
        "-P PREROUTING ACCEPT",
    )
    assert ruleset.evaluate("mangle", "FORWARD", PING).verdict == "ACCEPT"


def test_loops_end_unknown() -> None:
    ruleset = filter_rules({"FORWARD": ["-j a"], "a": ["-j b"], "b": ["-g a"]})
    result = ruleset.evaluate("filter", "FORWARD", PING)
    assert result.verdict == "UNKNOWN"
    assert result.unknown == "cannot predict FORWARD: jumps more than 100000 times (a loop)"


# -- the seed ----------------------------------------------------------------------------------


COMPUTE_1 = Ruleset.parse({"filter": seed("compute-1-iptables-filter.txt", "filter")})


def test_seed_ping_from_compute_1_dropped_by_sg_fallback() -> None:
    # compute-1 pings 10.0.0.2 from its eth1 address: OUTPUT, no input device.
    ping = Packet("192.168.56.202", "10.0.0.2")
    result = COMPUTE_1.evaluate("filter", "OUTPUT", ping, EvalContext(out_iface="eth1"))
    assert (result.verdict, result.chain, result.rule) == ("DROP", "nova-compute-sg-fallback", 1)
    assert result.rule_text == "-A nova-compute-sg-fallback -j DROP"
    assert result.trail == [
        ("OUTPUT", 1, "-A OUTPUT -j nova-filter-top"),
        ("nova-filter-top", 1, "-A nova-filter-top -j nova-compute-local"),
        ("nova-compute-local", 1, "-A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-9"),
        ("nova-compute-inst-9", 6, "-A nova-compute-inst-9 -j nova-compute-sg-fallback"),
    ]


def test_seed_controller_ping_reaches_instance() -> None:
    ctx = EvalContext("br100", "br100", "eth2", "vnet0", True)
    result = COMPUTE_1.evaluate("filter", "FORWARD", Packet("10.0.0.1", "10.0.0.2"), ctx)
    assert (result.verdict, result.chain, result.rule) == ("ACCEPT", "nova-compute-inst-9", 5)
    reply = COMPUTE_1.evaluate(
        "filter", "FORWARD", Packet("10.0.0.1", "10.0.0.2").reply(), EvalContext("br100", "br100")
    )
    assert (reply.verdict, reply.chain, reply.rule) == ("ACCEPT", "nova-compute-FORWARD", 1)


def test_seed_outside_to_instance_dropped_and_dhcp_accepted() -> None:
    ctx = EvalContext("br100", "br100", "eth2", "vnet0", True)
    outside = COMPUTE_1.evaluate("filter", "FORWARD", Packet("192.168.56.1", "10.0.0.2"), ctx)
    assert (outside.verdict, outside.chain) == ("DROP", "nova-compute-sg-fallback")
    offer = Packet("10.0.0.1", "10.0.0.2", "udp", 67, 68, None)
    dhcp = COMPUTE_1.evaluate("filter", "FORWARD", offer, ctx)
    assert (dhcp.chain, dhcp.rule) == ("nova-compute-inst-9", 4)
    established = COMPUTE_1.evaluate(
        "filter", "FORWARD", Packet("192.168.56.1", "10.0.0.2", ctstate="ESTABLISHED"), ctx
    )
    assert (established.chain, established.rule) == ("nova-compute-inst-9", 2)


def test_seed_controller_filter() -> None:
    controller = Ruleset.parse({"filter": seed("controller-iptables-filter.txt", "filter")})
    dhcp = Packet("0.0.0.0", "255.255.255.255", "udp", 68, 67, None)
    result = controller.evaluate("filter", "INPUT", dhcp, EvalContext(in_iface="br100"))
    assert result.verdict == "ACCEPT"
    assert result.rule_text == "-A nova-network-INPUT -i br100 -p udp -m udp --dport 67 -j ACCEPT"
    out = controller.evaluate(
        "filter", "FORWARD", Packet("10.0.0.2", "8.8.8.8"), EvalContext("br100", "eth1")
    )
    assert (out.verdict, out.chain, out.rule) == ("ACCEPT", "nova-network-FORWARD", 1)


def test_seed_controller_nat() -> None:
    nat = Ruleset.parse({"nat": seed("controller-iptables-nat.txt", "nat")})
    out = nat.evaluate(
        "nat", "POSTROUTING", Packet("10.0.0.2", "8.8.8.8"), EvalContext(out_iface="eth1")
    )
    assert (out.chain, out.rule, out.nat) == (
        "nova-network-snat",
        2,
        {"kind": "SNAT", "to": "192.168.56.200"},
    )
    assert [chain for chain, _, _ in out.trail] == ["POSTROUTING", "nova-postrouting-bottom"]
    within = nat.evaluate("nat", "POSTROUTING", Packet("10.0.0.2", "10.0.0.3"))
    assert (within.chain, within.rule, within.nat) == ("nova-network-POSTROUTING", 3, None)
    un_dnat = nat.evaluate("nat", "POSTROUTING", Packet("10.0.0.2", "10.0.0.3", ctstate="NEW,DNAT"))
    assert un_dnat.nat == {"kind": "SNAT", "to": "192.168.56.200"}
    meta = nat.evaluate("nat", "PREROUTING", Packet("10.0.0.2", "169.254.169.254", "tcp", 4000, 80))
    assert meta.nat == {"kind": "DNAT", "to": "192.168.56.200", "port": 8775}


# -- novanet's rendered rules, through the manager and the fake kernel ---------------------


@dataclass(frozen=True)
class Net:
    bridge: str
    cidr: str


@dataclass(frozen=True)
class Mapping:
    address: str
    fixed_address: str


def compute_ruleset(allow_same_net: bool, groups: dict[int, list[str]]) -> Ruleset:
    """A compute host with instances 1 (10.0.0.3) and 2 (10.0.0.4) and these security groups."""
    fake = FakeIptables()
    mgr = IptablesManager("compute", fake)
    declare(mgr.ipv4, compute_rules.base_rules(["br100"], "REJECT"))
    filt = mgr.ipv4["filter"]
    for inst_id, address in ((1, "10.0.0.3"), (2, "10.0.0.4")):
        spec = compute_rules.InstanceFilter(
            inst_id, address, "10.0.0.0/24", "10.0.0.1",
            tuple(secgroups.render(groups.get(inst_id, []), "nova")),
        )  # fmt: skip
        filt.add_chain(compute_rules.chain_name(inst_id))
        filt.set_rules(
            compute_rules.chain_name(inst_id), compute_rules.instance_chain(spec, allow_same_net)
        )
        filt.add_rule("local", compute_rules.local_jump(spec))
    mgr.full_sync()
    return Ruleset.parse({"filter": fake.save("filter")})


def test_rendered_security_groups() -> None:
    ruleset = compute_ruleset(
        False,
        {
            1: [
                "tcp 22 22 0.0.0.0/0",
                "tcp 8000 8080 10.0.0.0/24",
                "icmp 8 -1 0.0.0.0/0",
                "tcp 5432 5432 @7",
            ]
        },
    )
    ctx = EvalContext(
        "br100", "br100", "eth2", "vnet0", True, {"nova-compute-group-7": ["10.0.0.4"]}
    )

    def verdict(packet: Packet) -> tuple[str, str, int | None]:
        result = ruleset.evaluate("filter", "FORWARD", packet, ctx)
        return result.verdict, result.chain, result.rule

    chain = "nova-compute-inst-1"
    assert verdict(Packet("192.168.56.1", "10.0.0.3", "tcp", 5000, 22, None)) == (
        "ACCEPT",
        chain,
        5,
    )
    assert verdict(Packet("10.0.0.4", "10.0.0.3", "tcp", 5000, 8080, None)) == ("ACCEPT", chain, 6)
    assert verdict(Packet("192.168.56.1", "10.0.0.3", "tcp", 5000, 8080, None))[1] == (
        "nova-compute-sg-fallback"
    )
    assert verdict(Packet("192.168.56.1", "10.0.0.3")) == ("ACCEPT", chain, 7)
    assert verdict(Packet("10.0.0.4", "10.0.0.3", "tcp", 5000, 5432, None)) == ("ACCEPT", chain, 8)
    assert verdict(Packet("10.0.0.5", "10.0.0.3", "tcp", 5000, 5432, None)) == (
        "REJECT",
        "nova-compute-sg-fallback",
        1,
    )
    # allow_same_net_traffic off: instance 2 has no groups, its neighbour is refused.
    assert verdict(Packet("10.0.0.3", "10.0.0.4")) == ("REJECT", "nova-compute-sg-fallback", 1)


def test_rendered_controller_rules_with_floating_ip() -> None:
    fake = FakeIptables()
    mgr = IptablesManager("network", fake, tables=("filter", "nat", "mangle"))
    base = network_rules.controller_rules(
        [Net("br100", "10.0.0.0/24")],
        metadata_host="192.168.56.200",
        metadata_port=8775,
        routing_source_ip="192.168.56.200",
        forward_interfaces=("eth1",),
    )
    floating = floating_rules.floating_rules([Mapping("192.168.56.50", "10.0.0.3")])
    declare(mgr.ipv4, floating_rules.with_floating(base, floating))
    mgr.full_sync()
    ruleset = Ruleset.parse({t: fake.save(t) for t in ("filter", "nat", "mangle")})

    inbound = ruleset.evaluate("nat", "PREROUTING", Packet("192.168.56.1", "192.168.56.50"))
    assert inbound.nat == {"kind": "DNAT", "to": "10.0.0.3"}
    assert (inbound.chain, inbound.rule) == ("nova-network-PREROUTING", 2)
    outbound = ruleset.evaluate(
        "nat", "POSTROUTING", Packet("10.0.0.3", "8.8.8.8"), EvalContext(out_iface="eth1")
    )
    assert (outbound.chain, outbound.nat) == (
        "nova-network-float-snat",
        {"kind": "SNAT", "to": "192.168.56.50"},
    )
    other = ruleset.evaluate("nat", "POSTROUTING", Packet("10.0.0.4", "8.8.8.8"))
    assert other.nat == {"kind": "SNAT", "to": "192.168.56.200"}

    def forward(in_iface: str, out_iface: str) -> tuple[str, int | None]:
        result = ruleset.evaluate("filter", "FORWARD", PING, EvalContext(in_iface, out_iface))
        return result.verdict, result.rule

    assert forward("br100", "eth1") == ("ACCEPT", 1)
    assert forward("eth1", "br100") == ("ACCEPT", 2)
    assert forward("br100", "br100") == ("ACCEPT", 3)
    assert forward("br100", "eth3") == ("DROP", 4)
    dhcp_reply = Packet("10.0.0.1", "10.0.0.3", "udp", 67, 68, None)
    mangle = ruleset.evaluate("mangle", "POSTROUTING", dhcp_reply, EvalContext(out_iface="br100"))
    assert (mangle.verdict, mangle.rule) == ("ACCEPT", None)  # CHECKSUM goes on to the policy


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        ("-m mark --mark zz -j DROP", "option --mark of match mark"),
        ("-m set --match-set onlyname -j DROP", "option --match-set of match set (value missing)"),
        ('-m comment --comment "unterminated -j DROP', "rule not readable"),
        ("-s 2001:db8::/32 -j DROP", "unknown address -s 2001:db8::/32"),
    ],
)
def test_odd_rules_never_raise(rule: str, why: str) -> None:
    result = fwd(rule, PING)
    assert result.verdict == "UNKNOWN"
    assert why in (result.unknown or "")


def test_odd_facts_are_unknown() -> None:
    assert fwd("-s 10.0.0.0/8 -j DROP", PING.replace(src="fe80::1")).verdict == "UNKNOWN"
    ctx = EvalContext(ipsets={"odd": ["not-an-address"]})
    result = fwd("-m set --match-set odd src -j DROP", PING, ctx)
    assert "ipset odd holds an entry not understood" in (result.unknown or "")
