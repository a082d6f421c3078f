"""trace on facts captured from a real lab (tests/unit/explain/data/matrix_lab.json).

The lab: allow_same_net_traffic=false; groups ``web`` (tcp 22 and icmp from
anywhere) and ``ssh`` (tcp 22 only); web1 (web, floating 192.168.56.230) and
ssh1 (ssh) on compute-1, web2 (web) on compute-2; the outside gateway
192.168.56.101. The file also holds what ping and TCP connects really did
there, for every ordered pair: the model must agree with every one.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest

from novanet.explain.packet import DELIVERED, DROPPED, UNKNOWN, Verdict
from novanet.explain.topology import DbView, FloatingInfo, InstanceInfo, NetworkInfo, TraceError
from novanet.explain.trace import trace, trace_result

DATA = os.path.join(os.path.dirname(__file__), "data", "matrix_lab.json")
GATEWAY = "192.168.56.101"
FLOAT = "192.168.56.230"


def load() -> dict[str, Any]:
    with open(DATA) as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def db_of(data: dict[str, Any]) -> DbView:
    db = data["db"]
    return DbView(
        instances=tuple(InstanceInfo(**row) for row in db["instances"]),
        networks=tuple(NetworkInfo(**row) for row in db["networks"]),
        floating=tuple(
            FloatingInfo(r["address"], r["fixed_address"], r["interface"], r["host"])
            for r in db["floating"]
        ),
    )


@pytest.fixture
def lab() -> dict[str, Any]:
    return load()


def run(
    lab: dict[str, Any], src: str, dst: str, proto: str = "icmp", port: int | None = None
) -> tuple[Verdict, Verdict | None]:
    return trace(src, dst, proto, port, lab["facts"], db_of(lab))


def reached(request: Verdict, reply: Verdict | None) -> bool:
    return request.verdict == DELIVERED and reply is not None and reply.verdict == DELIVERED


def hop_texts(verdict: Verdict) -> list[str]:
    return [f"{h.node} {h.where} {h.what}" for h in verdict.hops]


# -- the seed's cases ---------------------------------------------------------------------


def test_a_compute_host_pinging_an_instance_is_dropped_in_its_own_output(lab: dict) -> None:
    request, reply = run(lab, "compute-1", "10.0.0.3")
    assert request.verdict == DROPPED and reply is None
    assert request.reason == (
        "dropped at compute-1 filter nova-compute-sg-fallback rule 1 "
        "`-A nova-compute-sg-fallback -j DROP` (OUTPUT -> nova-filter-top -> "
        "nova-compute-local -> nova-compute-inst-2 -> nova-compute-sg-fallback)"
    )
    last = request.hops[-1]
    assert (last.node, last.where, last.chain, last.rule) == (
        "compute-1", "filter OUTPUT", "nova-compute-sg-fallback", 1,
    )  # fmt: skip


def test_the_seeds_chain_lets_the_controller_in_and_still_stops_the_compute_host(
    lab: dict,
) -> None:
    """allow_same_net_traffic=true (the seed's default): ssh1's chain accepts 10.0.0.0/24."""
    facts = lab["facts"]["compute-1"]
    same_net = "-A nova-compute-inst-2 -s 10.0.0.0/24 -j ACCEPT\n"
    open_22 = "-A nova-compute-inst-2 -p tcp -m tcp --dport 22 -j ACCEPT"
    facts["iptables"]["filter"] = facts["iptables"]["filter"].replace(open_22, same_net + open_22)
    request, reply = run(lab, "controller-1", "ssh1")  # from 10.0.0.1, in the fixed range
    assert reached(request, reply), request.reason
    accept = next(h for h in request.hops if h.chain == "nova-compute-inst-2")
    assert accept.rule_text == same_net.strip()
    request, reply = run(lab, "compute-1", "ssh1")  # from 192.168.56.202: the seed's EPERM
    assert request.verdict == DROPPED and "nova-compute-sg-fallback" in request.reason


def test_the_controller_reaches_an_instance_and_the_reply_comes_back(lab: dict) -> None:
    request, reply = run(lab, "controller-1", "web1")
    assert reached(request, reply)
    hops = hop_texts(request)
    assert "controller-1 routing route 10.0.0.0/24 dev br100 src 10.0.0.1" in hops
    assert "compute-1 br100 bridged eth2 -> vnet0" in hops
    accept = next(h for h in request.hops if h.node == "compute-1" and h.table == "filter")
    assert (accept.chain, accept.rule_text) == (
        "nova-compute-inst-1", "-A nova-compute-inst-1 -p icmp -j ACCEPT",
    )  # fmt: skip
    assert reply is not None
    assert (
        "controller-1 br100 arrives on br100 (port eth2): icmp 10.0.0.2 -> 10.0.0.1 (ESTABLISHED)"
        in (hop_texts(reply))
    )
    assert (
        reply.hops[-1].what == "delivered to controller-1: icmp 10.0.0.2 -> 10.0.0.1 (ESTABLISHED)"
    )


def test_instance_to_instance_across_compute_hosts(lab: dict) -> None:
    request, reply = run(lab, "web1", "web2", "tcp", 22)
    assert reached(request, reply)
    assert "compute-1 br100 bridged vnet0 -> eth2" in hop_texts(request)
    assert "compute-2 br100 bridged eth2 -> vnet0" in hop_texts(request)
    assert not any(h.node == "controller-1" for h in request.hops)  # L2 only
    request, reply = run(lab, "web1", "web2", "tcp", 23)
    assert request.verdict == DROPPED and reply is None
    assert request.reason.startswith("dropped at compute-2 filter nova-compute-sg-fallback rule 1")


def test_instance_to_outside_leaves_with_the_controllers_address(lab: dict) -> None:
    request, reply = run(lab, "ssh1", GATEWAY, "tcp", 22)
    assert reached(request, reply)
    snat = [h for h in request.hops if h.where == "nat POSTROUTING"]
    assert [h.what for h in snat] == ["SNAT 10.0.0.3 -> 192.168.56.200"]
    assert (
        snat[0].rule_text
        == "-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 192.168.56.200"
    )
    assert request.hops[-1].what == (
        "delivered (outside, no novanet node): tcp 192.168.56.200 -> 192.168.56.101 40000->22 (NEW)"
    )
    assert reply is not None
    ct = [h.what for h in reply.hops if h.node == "controller-1"][:3]
    assert ct == [  # the reverse SNAT, before routing
        "arrives on eth1: tcp 192.168.56.101 -> 192.168.56.200 22->40000 (ESTABLISHED)",
        "reply: destination 192.168.56.200 -> 10.0.0.3 (reverse SNAT)",
        "route 10.0.0.0/24 dev br100 src 10.0.0.1",
    ]


def test_instance_with_a_floating_ip_leaves_with_it(lab: dict) -> None:
    request, reply = run(lab, "web1", GATEWAY)
    assert reached(request, reply)
    assert [h.what for h in request.hops if h.where == "nat POSTROUTING"] == [
        f"SNAT 10.0.0.2 -> {FLOAT}"
    ]


def test_outside_to_a_floating_address_is_subject_to_the_groups(lab: dict) -> None:
    for proto, port in (("icmp", None), ("tcp", 22)):
        request, reply = run(lab, GATEWAY, FLOAT, proto, port)
        assert reached(request, reply), request.reason
        assert f"DNAT {FLOAT} -> 10.0.0.2" in [h.what for h in request.hops]
        assert reply is not None
        # the reply leaves with the floating address again (reverse DNAT at POSTROUTING)
        assert reply.hops[-1].what.startswith(
            f"delivered (outside, no novanet node): {proto} {FLOAT} -> {GATEWAY}"
        )
    request, reply = run(lab, GATEWAY, FLOAT, "tcp", 23)
    assert request.verdict == DROPPED and reply is None
    assert request.reason.startswith("dropped at compute-1 filter nova-compute-sg-fallback rule 1")
    assert "nova-compute-inst-1" in request.reason


# -- the whole observed matrix --------------------------------------------------------------


def test_every_observed_outcome_is_predicted(lab: dict) -> None:
    addresses = lab["observed"]["addresses"]
    wrong = []
    for src, dst, probe, real in lab["observed"]["outcomes"]:
        proto, port = ("icmp", None) if probe == "icmp" else ("tcp", 22 if probe == "open" else 23)
        source = GATEWAY if src == "gateway" else src
        request, reply = run(lab, source, addresses[dst], proto, port)
        if reached(request, reply) != real:
            wrong.append((src, dst, probe, real, request.reason))
    assert len(lab["observed"]["outcomes"]) == 147
    assert wrong == []


def test_an_instance_reaching_a_floating_address_hits_br_netfilters_bridged_dnat(lab: dict) -> None:
    request, reply = run(lab, "ssh1", FLOAT)
    assert request.verdict == DROPPED and reply is None
    assert request.reason.startswith(
        "dropped at controller-1 bridge br100: the packet came in by eth2"
    )
    # without bridge-nf-call-iptables on the controller, the same packet is routed
    facts = copy.deepcopy(lab["facts"])
    facts["controller-1"]["sysctl"]["net.bridge.bridge-nf-call-iptables"] = "0"
    request, reply = trace("ssh1", FLOAT, "icmp", None, facts, db_of(lab))
    assert reached(request, reply), request.reason


# -- what the model says when it cannot go on --------------------------------------------------


def test_an_unknown_match_gives_unknown_with_its_rule(lab: dict) -> None:
    facts = lab["facts"]
    text = facts["compute-1"]["iptables"]["filter"]
    rule = "-A nova-compute-FORWARD -m limit --limit 5/sec -j DROP\n"
    facts["compute-1"]["iptables"]["filter"] = text.replace(
        "-A nova-compute-FORWARD", rule + "-A nova-compute-FORWARD", 1
    )
    request, reply = run(lab, "web1", "web2")
    assert request.verdict == UNKNOWN and reply is None
    assert "compute-1 filter FORWARD" in request.reason
    assert "limit" in request.reason


def test_no_route_and_no_forwarding_are_drops_with_the_reason(lab: dict) -> None:
    facts = lab["facts"]
    facts["controller-1"]["routes"] = [
        r for r in facts["controller-1"]["routes"] if r["dst"] != "0.0.0.0/0"
    ]
    request, _ = run(lab, "controller-1", "8.8.8.8")
    assert (request.verdict, request.reason) == (
        DROPPED, "dropped at controller-1: no route to 8.8.8.8",
    )  # fmt: skip
    facts["controller-1"]["sysctl"]["net.ipv4.ip_forward"] = "0"
    request, _ = run(lab, "web1", GATEWAY)
    assert request.verdict == DROPPED
    assert "net.ipv4.ip_forward is off" in request.reason


def test_nobody_holding_a_fixed_address_is_no_neighbour(lab: dict) -> None:
    request, _ = run(lab, "web1", "10.0.0.99")
    assert request.verdict == DROPPED
    assert request.reason == (
        "dropped on br100: nobody answers ARP for 10.0.0.99 (no instance or node holds it)"
    )


def test_the_outside_has_no_route_to_fixed_addresses(lab: dict) -> None:
    request, _ = run(lab, GATEWAY, "web1")
    assert (
        request.verdict == DROPPED and "no route to the fixed network 10.0.0.0/24" in request.reason
    )


def test_a_missing_antispoofing_entry_drops_the_instances_frames(lab: dict) -> None:
    nft = lab["facts"]["compute-1"]["nft_bridge"]["nftables"]
    ips = next(i["set"] for i in nft if i.get("set", {}).get("name") == "vif_ips")
    ips["elem"] = [e for e in ips["elem"] if e["concat"][0] != "vnet0"]
    request, _ = run(lab, "web1", "web2")
    assert request.verdict == DROPPED
    assert request.reason == (
        "dropped at compute-1 bridge novanet vif_ip: source IP is not the instance's (port vnet0)"
    )


@pytest.mark.parametrize(
    ("src", "dst", "proto", "port", "message"),
    [
        ("nowhere", "web1", "icmp", None, "unknown source 'nowhere'"),
        ("web1", "10.0.0.300", "icmp", None, "unknown destination '10.0.0.300'"),
        ("web1", "web2", "sctp", None, "unknown protocol 'sctp'"),
        ("web1", "web2", "tcp", None, "tcp needs --port"),
        ("web1", "web2", "tcp", 70000, "port 70000 is out of range"),
        ("web1", "web2", "icmp", 22, "--port is for tcp and udp"),
        ("web1", "10.0.0.2", "icmp", None, "are the same address"),
    ],
)
def test_bad_input_is_one_clear_error(
    lab: dict, src: str, dst: str, proto: str, port: int | None, message: str
) -> None:
    with pytest.raises(TraceError, match=message.replace("(", r"\(")):
        run(lab, src, dst, proto, port)


def test_the_metadata_service_is_reached_through_its_dnat_and_answers_as_itself(lab: dict) -> None:
    request, reply = run(lab, "web1", "169.254.169.254", "tcp", 80)
    assert reached(request, reply)
    assert "DNAT 169.254.169.254 -> 192.168.56.200" in [h.what for h in request.hops]
    assert request.hops[-1].what == (
        "delivered to controller-1: tcp 10.0.0.2 -> 192.168.56.200 40000->8775 (NEW,DNAT)"
    )
    assert reply is not None
    assert "reply: source 192.168.56.200 -> 169.254.169.254 (reverse DNAT)" in [
        h.what for h in reply.hops
    ]
    assert reply.hops[-1].what == (
        "delivered to instance web1: tcp 169.254.169.254 -> 10.0.0.2 80->40000 (ESTABLISHED)"
    )


def test_names_uuids_and_floating_addresses_name_instances(lab: dict) -> None:
    web1 = next(i for i in lab["db"]["instances"] if i["display_name"] == "web1")
    for ref in (web1["uuid"], web1["name"], "web1", "10.0.0.2", str(web1["id"])):
        result = trace_result(ref, GATEWAY, "icmp", None, lab["facts"], db_of(lab))
        assert result.src.label == "instance web1 (10.0.0.2)"
    result = trace_result(FLOAT, GATEWAY, "icmp", None, lab["facts"], db_of(lab))
    assert result.src.label == "instance web1 (10.0.0.2)"
    result = trace_result("controller-1", FLOAT, "icmp", None, lab["facts"], db_of(lab))
    assert result.dst.address == FLOAT and result.request.verdict == DELIVERED
    assert json.dumps(result.to_dict())  # JSON-safe


def test_a_group_rule_admits_exactly_the_members_of_its_ipset(lab: dict) -> None:
    facts = lab["facts"]["compute-1"]
    member_rule = (
        "-A nova-compute-inst-2 -p tcp -m set --match-set nova-compute-group-9 src "
        "-m tcp --dport 23 -j ACCEPT\n"
    )
    fallback = "-A nova-compute-inst-2 -j nova-compute-sg-fallback"
    facts["iptables"]["filter"] = facts["iptables"]["filter"].replace(
        fallback, member_rule + fallback
    )
    facts["ipsets"] = {"nova-compute-group-9": ["10.0.0.4"]}
    request, reply = run(lab, "web2", "ssh1", "tcp", 23)
    assert reached(request, reply), request.reason
    accept = next(h for h in request.hops if h.chain == "nova-compute-inst-2")
    assert accept.rule == 6 and "--match-set nova-compute-group-9 src" in (accept.rule_text or "")
    request, reply = run(lab, "web1", "ssh1", "tcp", 23)  # 10.0.0.2 is not a member
    assert request.verdict == DROPPED
    assert request.reason.startswith("dropped at compute-1 filter nova-compute-sg-fallback rule 1")


def test_a_node_tracing_to_itself_stays_on_its_loopback(lab: dict) -> None:
    request, reply = run(lab, "controller-1", "controller-1", "tcp", 22)
    assert reached(request, reply)
    assert [h.what for h in request.hops][-1] == (
        "delivered to controller-1: tcp 192.168.56.200 -> 192.168.56.200 40000->22 (NEW)"
    )
