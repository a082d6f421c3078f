"""Security groups on the real kernel: iptables prints what novanet renders; ipsets kept right.

The same renderings and set plans the unit tests check against the fakes
(tests/unit/secgroups), here against iptables-nft and ipset in a throwaway
namespace: the model's spelling must be the kernel's, or the drift check
would rewrite the chains at every pass.
"""

from __future__ import annotations

import shutil

import pytest

from novanet.compute import rules, secgroups
from novanet.compute.security import agent_ipsets
from novanet.linux import processutils
from novanet.linux.iptables import IptablesManager, IptablesRunner
from tests.unit.secgroups.test_render import RENDERED

pytestmark = pytest.mark.root


class NetnsIpset:
    def __init__(self, ns: str) -> None:
        self.prefix = ["nsenter", f"--net=/run/netns/{ns}"]

    def save(self) -> str:
        return processutils.execute([*self.prefix, "ipset", "save"])[0]

    def restore(self, text: str) -> None:
        processutils.execute([*self.prefix, "ipset", "-exist", "restore"], input=text)


@pytest.fixture
def kernel(netns):
    if not shutil.which("ipset"):
        pytest.skip("needs ipset (tools/install-packages.sh)")
    return netns, IptablesManager("compute", IptablesRunner("nft", netns=netns.name)), agent_ipsets(
        "nova", NetnsIpset(netns.name)
    )


def test_the_kernel_prints_the_rules_as_rendered(kernel):
    ns, mgr, ipsets = kernel
    compact = [c for c, _ in RENDERED]
    ipsets.ensure(secgroups.wanted_sets([compact], {7: ["10.0.0.5"]}, "nova"))
    spec = rules.InstanceFilter(1, "10.0.0.2", "10.0.0.0/24", "10.0.0.1", tuple(secgroups.render(compact, "nova")))
    filt = mgr.ipv4["filter"]
    filt.add_chain("provider")
    filt.add_chain("sg-fallback")
    filt.add_chain("inst-1")
    filt.set_rules("inst-1", rules.instance_chain(spec, False))
    mgr.apply()
    listing = ns.run(["iptables", "-S", "nova-compute-inst-1"]).stdout.splitlines()
    accepts = [line.split(" ", 2)[2] for line in listing[5:-1]]
    assert accepts == [rule for _, rule in RENDERED]
    # the model agrees with the kernel: a check finds nothing to repair
    assert mgr.check_and_repair(force=True) == []


def test_sets_follow_membership_and_drift_is_repaired(kernel):
    ns, mgr, ipsets = kernel
    name = secgroups.set_name("nova", 7)
    ipsets.ensure({name: frozenset({"10.0.0.5", "10.0.0.6"})})
    ipsets.ensure({name: frozenset({"10.0.0.6", "10.0.0.7"})})
    members = ns.run(["ipset", "list", name]).stdout.split("Members:")[1].split()
    assert sorted(members) == ["10.0.0.6", "10.0.0.7"]
    # by hand: flushed; another set of ours made with the wrong type; a stale one
    ns.run(["ipset", "flush", name])
    other = secgroups.set_name("nova", 8)
    ns.run(["ipset", "create", other, "hash:net"])
    ns.run(["ipset", "create", secgroups.set_name("nova", 9), "hash:ip"])
    wanted = {name: frozenset({"10.0.0.6", "10.0.0.7"}), other: frozenset({"10.0.0.9"})}
    assert set(ipsets.check(wanted).changed) == {name, other}
    ipsets.prune(wanted)
    saved = ns.run(["ipset", "save"]).stdout
    assert f"create {other} hash:ip" in saved and f"add {other} 10.0.0.9" in saved
    assert secgroups.set_name("nova", 9) not in saved
    assert not ipsets.check(wanted)  # nothing left to repair


def test_a_set_goes_right_after_the_last_rule_naming_it(kernel):
    """nf_tables frees a deleted rule (and its set reference) in a work item: the destroy waits."""
    ns, mgr, ipsets = kernel
    name = secgroups.set_name("nova", 7)
    filt = mgr.ipv4["filter"]
    filt.add_chain("inst-1")
    for _ in range(5):
        ipsets.ensure({name: frozenset({"10.0.0.5"})})
        filt.set_rules("inst-1", [f"-p tcp -m set --match-set {name} src -m tcp --dport 22 -j ACCEPT"])
        mgr.apply()
        filt.set_rules("inst-1", [])
        mgr.apply()
        ipsets.prune({})
        assert name not in ns.run(["ipset", "list", "-n"]).stdout
