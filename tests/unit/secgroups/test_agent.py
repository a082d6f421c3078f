"""The compute agent's security groups with the stateful fakes: chains, sets, order, repair."""

from __future__ import annotations

import dataclasses

import pytest

from novanet.compute.endpoint import ComputeEndpoint
from novanet.compute.manager import ComputeManager
from novanet.compute.security import agent_ipsets
from novanet.exception import BadRequest
from novanet.linux.bridge import BridgeManager
from novanet.linux.devices import VifDevices
from novanet.linux.fakes.ipset import FakeIpset
from novanet.linux.fakes.iptables import FakeIptables
from novanet.linux.fakes.netlink import FakeIpLib, FakeSysctl
from novanet.linux.iptables.manager import IptablesManager
from tests.lib.paths import SEED
from tests.unit.compute.test_manager import CIRROS
from tests.unit.network.test_endpoint import call

WEB = "nova-compute-group-7"
SEED_CHAIN = [
    "-A nova-compute-inst-9 -m state --state INVALID -j DROP",
    "-A nova-compute-inst-9 -m state --state RELATED,ESTABLISHED -j ACCEPT",
    "-A nova-compute-inst-9 -j nova-compute-provider",
    "-A nova-compute-inst-9 -s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT",
    "-A nova-compute-inst-9 -s 10.0.0.0/24 -j ACCEPT",
]
FALLBACK = "-A nova-compute-inst-9 -j nova-compute-sg-fallback"


@dataclasses.dataclass
class Host:
    manager: ComputeManager
    iptables: FakeIptables
    ipset: FakeIpset
    ip: FakeIpLib
    conf: object
    tmp: object

    def chain(self, n: int = 9) -> list[str]:
        return [r for r in self.iptables.listing("filter") if r.startswith(f"-A nova-compute-inst-{n} ")]

    def restart(self) -> Host:
        """A new agent process on the same kernel (the fakes keep their state)."""
        manager = _manager(self.conf, self.ip, self.iptables, self.ipset, self.tmp)
        manager.init_host()
        return dataclasses.replace(self, manager=manager)


def _manager(conf, ip, fake, ipset, tmp) -> ComputeManager:
    return ComputeManager(
        conf,
        bridges=BridgeManager(ip, str(tmp / "lock"), FakeSysctl()),
        iptables=IptablesManager("compute", fake),
        vifs=VifDevices(ip, str(tmp / "lock")),
        namespaces=ip,
        ipsets=agent_ipsets("nova", ipset, sleep=lambda seconds: None),
    )


@pytest.fixture
def host(tmp_path) -> Host:
    from novanet import conf as novanet_conf

    conf = novanet_conf.new_conf()
    conf([])
    for name, value in {"flat_interface": "eth2", "flat_network_bridge": "br100", "host": "compute-1"}.items():
        conf.set_override(name, value)
    ip = FakeIpLib()
    ip.add_link("eth2", up=True)
    fake, ipset = FakeIptables(), FakeIpset()
    ipset.attach(fake)  # rules need their set; a set in use cannot go
    manager = _manager(conf, ip, fake, ipset, tmp_path)
    manager.init_host()
    manager.resync([])
    return Host(manager, fake, ipset, ip, conf, tmp_path)


def web(**kw) -> object:
    return dataclasses.replace(CIRROS, rules=("tcp 22 22 0.0.0.0/0", "tcp 5432 5432 @7"), **kw)


def test_no_rules_keeps_the_seed_listing_and_makes_no_set(host):
    host.manager.setup_instance(CIRROS)
    assert host.iptables.listing("filter") == (SEED / "compute-1-iptables-filter.txt").read_text().splitlines()
    assert host.ipset.sets == {}


def test_rules_go_between_the_accepts_and_the_fallback_with_their_set(host):
    host.manager.setup_instance(web(), {7: ["10.0.0.5", "10.0.0.6"]})
    assert host.chain() == [
        *SEED_CHAIN,
        "-A nova-compute-inst-9 -p tcp -m tcp --dport 22 -j ACCEPT",
        f"-A nova-compute-inst-9 -p tcp -m set --match-set {WEB} src -m tcp --dport 5432 -j ACCEPT",
        FALLBACK,
    ]
    assert host.ipset.members(WEB) == {"10.0.0.5", "10.0.0.6"}


def test_a_membership_change_is_one_set_update_and_no_chain_rewrite(host):
    host.manager.setup_instance(web(), {7: ["10.0.0.5"]})
    restores = len(host.iptables.restores)
    host.manager.update_security({}, {7: ["10.0.0.5", "10.0.0.8"]})
    assert host.ipset.restores[-1] == f"add {WEB} 10.0.0.8\n"
    assert len(host.iptables.restores) == restores
    host.manager.update_security({}, {7: ["10.0.0.8"]})
    assert host.ipset.restores[-1] == f"del {WEB} 10.0.0.5\n"
    assert host.ipset.members(WEB) == {"10.0.0.8"}


def test_rule_changes_rewrite_the_chain_and_a_set_goes_after_its_last_rule(host):
    host.manager.setup_instance(web(), {7: ["10.0.0.5"]})
    host.manager.update_security({CIRROS.uuid: ("icmp -1 -1 0.0.0.0/0",)}, {})
    assert host.chain() == [*SEED_CHAIN, "-A nova-compute-inst-9 -p icmp -j ACCEPT", FALLBACK]
    assert host.ipset.sets == {}  # destroyed once no rule named it (the fake refuses earlier)
    host.manager.update_security({CIRROS.uuid: ()}, {})
    assert host.chain() == [*SEED_CHAIN, FALLBACK]
    # an instance that is not here is ignored (its create re-sends once plugged)
    host.manager.update_security({"6a1e2c4e-0000-4000-8000-000000000000": ("tcp 1 1 0.0.0.0/0",)}, {})
    assert host.chain() == [*SEED_CHAIN, FALLBACK]


def test_a_set_whose_last_rule_was_freed_late_is_destroyed_after_a_short_wait(host):
    host.manager.setup_instance(web(), {7: ["10.0.0.5"]})
    host.ipset.refuse_destroys = 3  # nf_tables frees the deleted rule in a work item
    host.manager.update_security({CIRROS.uuid: ("tcp 22 22 0.0.0.0/0",)}, {})
    assert host.ipset.sets == {}
    host.manager.setup_instance(web(), {7: ["10.0.0.5"]})
    host.ipset.refuse_destroys = 100  # still in use: kept, removed by a later check
    host.manager.update_security({CIRROS.uuid: ()}, {})
    assert WEB in host.ipset.sets
    host.ipset.refuse_destroys = 0  # the kernel freed it meanwhile
    host.manager.check_iptables()
    assert host.ipset.sets == {}


def test_a_group_rule_added_later_creates_its_set_before_the_rule(host):
    host.manager.setup_instance(CIRROS)
    host.manager.update_security({CIRROS.uuid: ("tcp 5432 5432 @7",)}, {7: ["10.0.0.3"]})
    assert host.ipset.members(WEB) == {"10.0.0.3"}
    assert f"--match-set {WEB} src" in host.chain()[-2]


def test_teardown_removes_the_chain_then_the_set(host):
    host.manager.setup_instance(web(), {7: ["10.0.0.5"]})
    host.manager.teardown_instance(web())
    assert host.chain() == [] and host.ipset.sets == {}


def test_drift_of_sets_is_repaired_before_the_rules(host):
    host.manager.setup_instance(web(), {7: ["10.0.0.5", "10.0.0.6"]})
    host.ipset.restore(f"flush {WEB}\nadd {WEB} 10.9.9.9\n")  # by hand
    host.ipset.restore("create nova-compute-group-99 hash:ip\n")  # a stale set of ours
    host.ipset.restore("create someone-else hash:ip\n")  # not ours: left alone
    host.manager.check_iptables()
    assert host.ipset.members(WEB) == {"10.0.0.5", "10.0.0.6"}
    assert set(host.ipset.sets) == {WEB, "someone-else"}
    # the rule and its set deleted by hand: the set comes back first, then the rule
    rule = host.chain()[-2].split(" ", 2)[2]
    host.iptables.run(f"-D nova-compute-inst-9 {rule}")
    host.ipset.restore(f"destroy {WEB}\n")
    host.manager.check_iptables()
    assert host.ipset.members(WEB) == {"10.0.0.5", "10.0.0.6"}
    assert f"-A nova-compute-inst-9 {rule}" in host.chain()


def test_a_restart_keeps_every_rule_and_set_without_touching_them(host):
    host.manager.setup_instance(web(), {7: ["10.0.0.5"]})
    host.ipset.restore("create nova-compute-group-3 hash:ip\n")  # left by a group gone meanwhile
    chain, iptables_restores = host.chain(), len(host.iptables.restores)
    again = host.restart()
    again.manager.resync([web()], members={7: ["10.0.0.5"]})
    assert again.chain() == chain
    assert again.ipset.members(WEB) == {"10.0.0.5"}
    assert "nova-compute-group-3" not in again.ipset.sets
    # nothing was rewritten: the web set was never emptied or recreated
    assert all(WEB not in text for text in again.ipset.restores[-1:])
    assert len(again.iptables.restores) - iptables_restores <= 1


def test_bad_security_payloads_change_nothing(host):
    host.manager.setup_instance(web(), {7: ["10.0.0.5"]})
    endpoint = ComputeEndpoint(host.manager, lambda: None)
    before = (host.chain(), dict(host.ipset.sets))
    for kw in (
        {"rules": {CIRROS.uuid: ["tcp 99999 1 0.0.0.0/0"]}, "members": {}},
        {"rules": {CIRROS.uuid: ["tcp 22 22 @x"]}, "members": {}},
        {"rules": {}, "members": {"7": ["10.0.0.300"]}},
        {"rules": {}, "members": {"web": ["10.0.0.3"]}},
        {"rules": {"not-a-uuid": []}, "members": {}},
        {"rules": {}},
    ):
        with pytest.raises(BadRequest):
            call(endpoint.update_security, **kw)
    assert (host.chain(), dict(host.ipset.sets)) == before
