"""Every diagnose check on facts dicts: silent on a healthy node, one named line when broken."""

from __future__ import annotations

import copy

import pytest

from novanet.explain import diagnose as d

ARGV = ["/usr/sbin/dnsmasq", "--strict-order", "--listen-address=10.0.0.1"]
LINE = "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2"
INTENDED = d.Intended(
    services=[
        d.Service("controller-1", d.NETWORK, True), d.Service("compute-1", d.COMPUTE, True),
    ],
    bridges=[d.Bridge("br100", "eth2", "10.0.0.1/24")],
    dnsmasq_argv={"br100": ARGV},
    hostsfile={"br100": [LINE]},
    leased=frozenset({"10.0.0.2"}),
    bridge_check_interval=11,
    dnsmasq_check_interval=12,
)  # fmt: skip


def link(name, kind="", master=None, addresses=(), up=True, promisc=False):
    return {"name": name, "index": 1, "kind": kind, "master": master, "up": up,
            "promisc": promisc, "mac": "", "addresses": list(addresses)}  # fmt: skip


def node(binary):
    controller = binary == d.NETWORK
    return {
        "schema": 1, "host": "controller-1" if controller else "compute-1", "binary": binary,
        "time": 1000.0,
        "links": [
            link("br100", "bridge", addresses=["10.0.0.1/24"] if controller else []),
            link("eth2", master="br100", promisc=True),
        ],
        "routes": [],
        "sysctl": {d.IP_FORWARD: "1" if controller else "0", d.BRIDGE_NF: "1"},
        "modules": {"br_netfilter": True},
        "iptables": {}, "ipsets": {}, "nft_bridge": None,
        "dnsmasq": {"running": True, "pid": 7, "argv": list(ARGV)} if controller else None,
        "hostsfile": [LINE] if controller else None,
        "leases": ["1 fa:16:3e:2c:e8:ec 10.0.0.2 cirros *"] if controller else None,
        "vifs": None if controller else [], "drift": [], "errors": [],
    }  # fmt: skip


def healthy():
    return {"controller-1/" + d.NETWORK: node(d.NETWORK), "compute-1/" + d.COMPUTE: node(d.COMPUTE)}


def found(facts=None, unreachable=None, intended=INTENDED, now=1000.0):
    problems = d.check(intended, facts or healthy(), unreachable, now=now)
    return [(p.host, p.object, p.problem, p.action) for p in problems]


def test_a_healthy_cloud_has_no_problem():
    assert found() == []
    assert d.report([], 4) == {"healthy": True, "problems": [], "checked": 4}


def broken(binary, change):
    facts = healthy()
    key = ("controller-1/" if binary == d.NETWORK else "compute-1/") + binary
    change(facts[key])
    return facts


def links(n):
    return {li["name"]: li for li in n["links"]}


CASES = [
    # (which node, what is broken, host, object, words in the problem, words in the action)
    (d.COMPUTE, lambda n: n["links"].pop(0), "compute-1", "br100", "missing", "within 11 s"),
    (d.COMPUTE, lambda n: links(n)["br100"].update(up=False), "compute-1", "br100", "down", "11 s"),
    (d.COMPUTE, lambda n: links(n)["eth2"].update(master=None), "compute-1", "eth2", "no bridge",
     "11 s"),
    (d.NETWORK, lambda n: links(n)["eth2"].update(up=False), "controller-1", "eth2", "down", "11 s"),
    (d.COMPUTE, lambda n: links(n)["eth2"].update(promisc=False), "compute-1", "eth2",
     "not promiscuous", "promisc on"),
    (d.COMPUTE, lambda n: n["links"].pop(1), "compute-1", "eth2", "missing", "cabling"),
    (d.NETWORK, lambda n: links(n)["br100"].update(addresses=["192.168.1.1/24", "10.0.0.1/24"]),
     "controller-1", "br100", "first IPv4 address is 192.168.1.1/24", "11 s"),
    (d.COMPUTE, lambda n: links(n)["br100"].update(addresses=["10.0.0.9/24"]), "compute-1",
     "br100", "holds IPv4 10.0.0.9/24", "ip addr del 10.0.0.9/24 dev br100"),
    (d.NETWORK, lambda n: n["sysctl"].update({d.IP_FORWARD: "0"}), "controller-1", d.IP_FORWARD,
     "is 0", "11 s"),
    (d.COMPUTE, lambda n: n["modules"].update(br_netfilter=False), "compute-1", "br_netfilter",
     "not loaded", "modprobe"),
    (d.COMPUTE, lambda n: n["sysctl"].update({d.BRIDGE_NF: "0"}), "compute-1", d.BRIDGE_NF,
     "filter nothing", "11 s"),
    (d.NETWORK, lambda n: n["dnsmasq"].update(running=False, pid=None, argv=[]), "controller-1",
     "dnsmasq (br100)", "not running", "within 12 s"),
    (d.NETWORK, lambda n: n["dnsmasq"]["argv"].append("--port=0"), "controller-1",
     "dnsmasq (br100)", "extra '--port=0'", "restart novanet-network"),
    (d.NETWORK, lambda n: n["hostsfile"].append("fa:16:3e:00:00:01,old.novalocal,10.0.0.9"),
     "controller-1", "hostsfile (br100)", "stale line", "rewrites the hostsfile"),
    (d.NETWORK, lambda n: n["hostsfile"].clear(), "controller-1", "hostsfile (br100)", "lacks",
     "rewrites"),
    (d.NETWORK, lambda n: n.update(hostsfile=None), "controller-1", "hostsfile (br100)", "missing",
     "rewrites"),
    (d.NETWORK, lambda n: n["leases"].clear(), "controller-1", "leases",
     "10.0.0.2 leased in the database", "expiry"),
    (d.NETWORK, lambda n: n["leases"].append("1 fa:16:3e:00:00:01 10.0.0.9 x *"), "controller-1",
     "leases", "10.0.0.9 leased by dnsmasq", "restart"),
    (d.COMPUTE, lambda n: n["drift"].append(
        {"object": "iptables filter nova-compute-inst-1", "problem": "iptables filter: x",
         "repair_within": 13}), "compute-1", "iptables filter nova-compute-inst-1", "x",
     "within 13 s"),
    (d.COMPUTE, lambda n: n["drift"].append(
        {"object": "ipset nova-compute-group-1", "problem": "ipset nova-compute-group-1 lacks 10.0.0.3",
         "repair_within": None}),
     "compute-1", "ipset nova-compute-group-1", "lacks 10.0.0.3", "does not repair"),
    (d.NETWORK, lambda n: n["errors"].append("ipset save: boom"), "controller-1", d.NETWORK,
     "could not read ipset save: boom", "log"),
    (d.COMPUTE, lambda n: n.update(time=1060.0), "compute-1", "clock", "+60.0 s", "NTP"),
]  # fmt: skip


@pytest.mark.parametrize(("binary", "change", "host", "obj", "problem", "action"), CASES)
def test_each_check_names_host_object_and_action(binary, change, host, obj, problem, action):
    got = found(broken(binary, change))
    assert len(got) == 1, got
    assert got[0][:2] == (host, obj)
    assert problem in got[0][2] and action in got[0][3]
    assert not got[0][2].startswith(obj)  # the line names the object once


def test_a_down_service_and_an_unanswering_one():
    intended = copy.deepcopy(INTENDED)
    object.__setattr__(intended, "services", [
        d.Service("compute-2", d.COMPUTE, False, updated_at="2026-12-01 20:00:00 UTC"),
        d.Service("compute-1", d.COMPUTE, True),
    ])  # fmt: skip
    facts = healthy()
    del facts["compute-1/" + d.COMPUTE]
    got = found(facts, {"compute-1/" + d.COMPUTE: "no answer within 15 s"}, intended)
    assert [(h, o) for h, o, *_ in got] == [("compute-2", d.COMPUTE), ("compute-1", d.COMPUTE)]
    assert "no heartbeat since 2026-12-01" in got[0][2] and "systemctl start" in got[0][3]
    assert "did not answer: no answer within 15 s" in got[1][2]


def test_report_and_line_formats():
    problem = d.Problem("compute-1", "br100", "bridge missing", "novanet repairs this by itself within 2 s")
    assert problem.line() == "compute-1: br100: bridge missing; novanet repairs this by itself within 2 s"
    assert d.report([problem], 3) == {
        "healthy": False, "checked": 3,
        "problems": [{"host": "compute-1", "object": "br100", "problem": "bridge missing",
                      "action": "novanet repairs this by itself within 2 s"}],
    }  # fmt: skip


def test_a_node_is_checked_for_its_own_bridges_only():
    intended = d.Intended(
        services=[],
        bridges=[d.Bridge("br100", "eth2", "10.0.0.1/24"), d.Bridge("br101", "eth3", "10.1.0.1/24")],
        served={"controller-1": frozenset({"br100"})},
        compute_bridge="br100",
    )
    facts = healthy()
    facts["controller-1/" + d.NETWORK].update(dnsmasq=None, hostsfile=None, leases=None)
    assert found(facts, intended=intended) == []  # br101 is another controller's
    facts["compute-1/" + d.COMPUTE]["vifs"] = [{"devname": "vnet3", "bridge": "br101"}]
    assert [(h, o, p) for h, o, p, _ in found(facts, intended=intended)] == [
        ("compute-1", "br101", "bridge missing")
    ]
