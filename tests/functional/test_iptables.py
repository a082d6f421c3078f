"""The iptables manager against real iptables (nft and legacy), in throwaway namespaces."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from novanet.linux.iptables import IptablesManager, IptablesRestoreError, IptablesRunner
from tests.lib import netns as netns_lib
from tests.unit.linux.test_iptables_normalise import MEASURED
from tests.unit.linux.test_iptables_seed import (
    add_instance,
    controller,
    declare_compute,
    remove_instance,
    seed_listing,
)

pytestmark = pytest.mark.root

BACKENDS = ["nft", "legacy"]
CONTROLLER_FILTER = "controller-iptables-filter.txt"
CONTROLLER_NAT = "controller-iptables-nat.txt"
COMPUTE_FILTER = "compute-1-iptables-filter.txt"


def listing(ns: netns_lib.Namespace, backend: str, table: str = "filter") -> list[str]:
    return ns.run([f"iptables-{backend}", "-t", table, "-S"]).stdout.splitlines()


def iptables(ns: netns_lib.Namespace, backend: str, *args: str) -> None:
    ns.run([f"iptables-{backend}", "-w", *args])


def runner(ns: netns_lib.Namespace, backend: str) -> IptablesRunner:
    return IptablesRunner(backend, netns=ns.name)


def compute(ns: netns_lib.Namespace, backend: str, **kw: object) -> IptablesManager:
    mgr = IptablesManager("compute", runner(ns, backend))
    declare_compute(mgr, **kw)  # type: ignore[arg-type]
    mgr.full_sync()
    return mgr


@pytest.mark.parametrize("backend", BACKENDS)
def test_controller_rules_match_the_seed(netns: netns_lib.Namespace, backend: str) -> None:
    network, api = controller(runner(netns, backend))
    api.full_sync()  # the order does not depend on who starts first
    network.full_sync()
    assert listing(netns, backend) == seed_listing(CONTROLLER_FILTER)
    assert listing(netns, backend, "nat") == seed_listing(CONTROLLER_NAT)
    network.check_and_repair()
    assert api.check_and_repair() == []
    assert network.check_and_repair() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_compute_rules_match_the_seed(netns: netns_lib.Namespace, backend: str) -> None:
    compute(netns, backend)
    assert listing(netns, backend) == seed_listing(COMPUTE_FILTER)


@pytest.mark.parametrize("backend", BACKENDS)
def test_foreign_rules_added_before_and_after_survive_in_order(
    netns: netns_lib.Namespace, backend: str
) -> None:
    iptables(netns, backend, "-N", "foreign")
    iptables(netns, backend, "-A", "foreign", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
    iptables(netns, backend, "-A", "FORWARD", "-j", "foreign")
    iptables(netns, backend, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
    mgr = compute(netns, backend)
    iptables(netns, backend, "-I", "FORWARD", "1", "-o", "eth7", "-j", "DROP")
    iptables(netns, backend, "-A", "FORWARD", "-i", "eth7", "-j", "DROP")
    assert mgr.check_and_repair() != []
    rules = listing(netns, backend)
    assert [line for line in rules if line.startswith("-A FORWARD")] == [
        "-A FORWARD -j nova-filter-top",
        "-A FORWARD -j nova-compute-FORWARD",
        "-A FORWARD -o eth7 -j DROP",
        "-A FORWARD -j foreign",
        "-A FORWARD -i eth7 -j DROP",
    ]
    assert "-A foreign -p tcp -m tcp --dport 22 -j ACCEPT" in rules
    assert [line for line in rules if line.startswith("-A INPUT")] == [
        "-A INPUT -j nova-compute-INPUT",
        "-A INPUT -i lo -j ACCEPT",
    ]
    ours = [
        line
        for line in rules
        if "foreign" not in line and "eth7" not in line and "-i lo" not in line
    ]
    assert ours == seed_listing(COMPUTE_FILTER)


TAMPERING = {
    "delete-rule": [["-D", "nova-compute-inst-9", "2"]],
    "flush-chain": [["-F", "nova-compute-inst-9"]],
    "delete-chain": [
        ["-D", "nova-compute-local", "1"],
        ["-F", "nova-compute-inst-9"],
        ["-X", "nova-compute-inst-9"],
    ],
    "flush-top": [["-F", "nova-filter-top"]],
    "delete-jump": [["-D", "FORWARD", "-j", "nova-compute-FORWARD"]],
    "edit-rule": [["-R", "nova-compute-inst-9", "5", "-s", "0.0.0.0/0", "-j", "ACCEPT"]],
    "flush-all": [["-F"]],
}


@pytest.mark.parametrize("tamper", sorted(TAMPERING))
@pytest.mark.parametrize("backend", BACKENDS)
def test_tampering_is_detected_and_repaired(
    netns: netns_lib.Namespace, backend: str, tamper: str
) -> None:
    mgr = compute(netns, backend)
    assert mgr.check_and_repair() == []
    for command in TAMPERING[tamper]:
        iptables(netns, backend, *command)
    assert listing(netns, backend) != seed_listing(COMPUTE_FILTER)
    # legacy's probe misses a same-size edit (-R): its periodic read catches it.
    report = mgr.check_and_repair(force=(backend == "legacy" and tamper == "edit-rule"))
    assert report, "tampering went unnoticed"
    assert listing(netns, backend) == seed_listing(COMPUTE_FILTER)
    assert mgr.check_and_repair() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_restart_converges_without_duplicates(netns: netns_lib.Namespace, backend: str) -> None:
    first = compute(netns, backend, instances={9: "10.0.0.2", 10: "10.0.0.3"})
    before = listing(netns, backend), listing(netns, backend, "nat")
    first.close()
    second = compute(netns, backend, instances={9: "10.0.0.2", 10: "10.0.0.3"})
    assert (listing(netns, backend), listing(netns, backend, "nat")) == before
    assert second.check_and_repair() == []
    # Instance 10 was deleted while the agent was down.
    third = compute(netns, backend)
    assert listing(netns, backend) == seed_listing(COMPUTE_FILTER)
    assert third.check_and_repair() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_adding_and_removing_instances(netns: netns_lib.Namespace, backend: str) -> None:
    mgr = compute(netns, backend)
    add_instance(mgr, 10, "10.0.0.3")
    mgr.apply()
    assert "-A nova-compute-local -d 10.0.0.3/32 -j nova-compute-inst-10" in listing(netns, backend)
    remove_instance(mgr, 10)
    mgr.apply()
    assert listing(netns, backend) == seed_listing(COMPUTE_FILTER)
    assert mgr.check_and_repair() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_normalised_rules_are_what_iptables_prints(
    netns: netns_lib.Namespace, backend: str
) -> None:
    mgr = IptablesManager("compute", runner(netns, backend))
    filt = mgr.ipv4["filter"]
    filt.add_chain("norm")
    written = [w for w, printed in MEASURED if "DNAT" not in w and "-g " not in w]
    # the security-group rules name ipsets: the kernel refuses them otherwise
    for name in sorted({m for w in written for m in re.findall(r"--match-set (\S+)", w)}):
        netns.run(["ipset", "create", name, "hash:ip"])
    for rule in written:
        filt.add_rule("norm", rule)
    mgr.full_sync()
    printed = listing(netns, backend)
    kernel = [
        line[len("-A nova-compute-norm ") :]
        for line in printed
        if line.startswith("-A nova-compute-norm ")
    ]
    assert kernel == filt.rules("norm")
    assert mgr.check_and_repair(force=True) == []


def ping(ns: netns_lib.Namespace, address: str) -> tuple[int, str]:
    result = ns.run(["busybox", "ping", "-c", "1", "-W", "1", address], check=False)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_instance_chain_really_filters(
    netns_factory: Callable[[str], netns_lib.Namespace], backend: str
) -> None:
    host, guest = netns_factory("h"), netns_factory("g")
    netns_lib.veth_between(host, "vnet0", guest, "eth0")
    host.run(["ip", "addr", "add", "10.0.0.1/24", "dev", "vnet0"])
    guest.run(["ip", "addr", "add", "10.0.0.2/24", "dev", "eth0"])
    mgr = IptablesManager("compute", runner(host, backend))
    filt = mgr.ipv4["filter"]
    filt.add_chain("provider")
    filt.add_chain("sg-fallback")
    filt.add_rule("sg-fallback", "-j DROP")
    filt.add_chain("inst-9")
    # allow_same_net_traffic=False: only replies and DHCP get in.
    filt.set_rules(
        "inst-9",
        [
            "-m state --state INVALID -j DROP",
            "-m state --state ESTABLISHED,RELATED -j ACCEPT",
            "-j $provider",
            "-s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT",
            "-j $sg-fallback",
        ],
    )
    filt.add_rule("local", "-d 10.0.0.2/32 -j $inst-9")
    mgr.full_sync()
    code, output = ping(host, "10.0.0.2")
    assert code != 0 and "Operation not permitted" in output
    filt.add_rule("provider", "-p icmp -j ACCEPT")
    mgr.apply()
    code, output = ping(host, "10.0.0.2")
    assert code == 0, output
    filt.remove_chain("inst-9")
    mgr.apply()
    assert ping(host, "10.0.0.2")[0] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_refused_rule_is_named_and_nothing_half_applied(
    netns: netns_lib.Namespace, backend: str
) -> None:
    mgr = compute(netns, backend)
    filt = mgr.ipv4["filter"]
    add_instance(mgr, 10, "10.0.0.3")
    filt.add_rule("inst-10", "-j no-such-chain")
    with pytest.raises(IptablesRestoreError) as caught:
        mgr.apply()
    assert caught.value.rule == "-A nova-compute-inst-10 -j no-such-chain"
    assert listing(netns, backend) == seed_listing(COMPUTE_FILTER)
    filt.remove_rule("inst-10", "-j no-such-chain")
    mgr.apply()
    assert "-N nova-compute-inst-10" in listing(netns, backend)
    assert mgr.check_and_repair() == []
