"""The controller's rules for nova's options, against nova's own tests (test_linux_net.py)."""

from __future__ import annotations

from novanet.compute import rules as compute_rules
from novanet.linux.fakes.iptables import FakeIptables
from novanet.linux.iptables.declare import declare
from novanet.linux.iptables.manager import IptablesManager
from novanet.metadata.rules import metadata_rules
from novanet.network import rules
from novanet.network.manager import CONTROLLER_TABLES


class Net:
    def __init__(self, bridge: str, cidr: str) -> None:
        self.bridge, self.cidr = bridge, cidr


SEED_NET = [Net("br100", "10.0.0.0/24")]
SEED = {"metadata_port": 8775, "routing_source_ip": "192.168.56.200"}


def applied(wanted: rules.Rules, fake: FakeIptables | None = None) -> FakeIptables:
    fake = fake or FakeIptables()
    mgr = IptablesManager("network", fake, tables=CONTROLLER_TABLES)
    declare(mgr.ipv4, wanted)
    mgr.full_sync()
    return fake


def test_forward_bridge_interface_all_is_the_seed():
    wanted = rules.controller_rules(SEED_NET, metadata_host="192.168.56.200", **SEED)
    assert wanted["filter"]["FORWARD"] == ["-i br100 -j ACCEPT", "-o br100 -j ACCEPT"]


def test_forward_bridge_interface_limits_forwarding():
    # nova: linux_net.get_gateway_rules (test_linux_bridge_driver_plug, bug 890195:
    # with the default 'all' nothing is dropped)
    wanted = rules.controller_rules(
        SEED_NET, metadata_host="192.168.56.200", forward_interfaces=["eth1"], **SEED
    )
    listing = applied(wanted).listing("filter")
    assert [line for line in listing if line.startswith("-A nova-network-FORWARD")] == [
        "-A nova-network-FORWARD -i br100 -o eth1 -j ACCEPT",
        "-A nova-network-FORWARD -i eth1 -o br100 -j ACCEPT",
        "-A nova-network-FORWARD -i br100 -o br100 -j ACCEPT",
        "-A nova-network-FORWARD -i br100 -j DROP",
        "-A nova-network-FORWARD -o br100 -j DROP",
    ]


def test_forward_drop_follows_iptables_drop_action():
    wanted = rules.controller_rules(
        SEED_NET,
        metadata_host="192.168.56.200",
        forward_interfaces=["eth1"],
        drop_action="LOGDROP",
        **SEED,
    )
    listing = applied(wanted).listing("filter")
    assert "-A nova-network-FORWARD -i br100 -j nova-network-logdrop" in listing
    assert '-A nova-network-logdrop -j LOG --log-prefix "novanet-drop: "' in listing
    compute = compute_rules.base_rules(["br100"], "REJECT", ["eth2"])["filter"]["FORWARD"]
    assert compute[-1] == "-o br100 -j REJECT --reject-with icmp-port-unreachable"


def test_metadata_on_loopback_is_a_redirect():
    # nova: test_metadata_forward / test_metadata_forward_localhost (bug 1015853)
    dnat = rules.controller_rules(SEED_NET, metadata_host="10.10.10.1", **SEED)
    assert dnat["nat"]["PREROUTING"] == [
        "-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.10.10.1:8775"
    ]
    local = rules.controller_rules(SEED_NET, metadata_host="127.0.0.1", **SEED)
    assert local["nat"]["PREROUTING"] == [
        "-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8775"
    ]
    # nova: test_metadata_accept / test_metadata_accept_localhost
    assert metadata_rules(metadata_host="10.10.10.1", metadata_port=8775)["filter"] == {
        "INPUT": ["-d 10.10.10.1/32 -p tcp -m tcp --dport 8775 -j ACCEPT"]
    }
    assert metadata_rules(metadata_host="127.0.0.1", metadata_port=8775)["filter"] == {
        "INPUT": ["-p tcp -m tcp --dport 8775 -m addrtype --dst-type LOCAL -j ACCEPT"]
    }


def test_dhcp_checksum_fill_in_mangle_as_nova():
    # nova: linux_net._add_dhcp_mangle_rule (LP #1029430, unconditional since LP #1335193);
    # nova wrapped only POSTROUTING of mangle
    wanted = rules.controller_rules(SEED_NET, metadata_host="192.168.56.200", **SEED)
    assert applied(wanted).listing("mangle") == [
        "-P PREROUTING ACCEPT",
        "-P INPUT ACCEPT",
        "-P FORWARD ACCEPT",
        "-P OUTPUT ACCEPT",
        "-P POSTROUTING ACCEPT",
        "-N nova-network-POSTROUTING",
        "-A POSTROUTING -j nova-network-POSTROUTING",
        "-A nova-network-POSTROUTING -o br100 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill",
    ]


def test_networks_sharing_a_bridge_get_its_rules_once():
    nets = [Net("br100", "10.0.0.0/25"), Net("br100", "10.0.0.128/25")]
    wanted = rules.controller_rules(nets, metadata_host="192.168.56.200", **SEED)
    assert wanted["filter"]["FORWARD"] == ["-i br100 -j ACCEPT", "-o br100 -j ACCEPT"]
    assert len(wanted["filter"]["INPUT"]) == 4
    assert wanted["nat"]["snat"][1:] == [
        "-s 10.0.0.0/25 -j SNAT --to-source 192.168.56.200",
        "-s 10.0.0.128/25 -j SNAT --to-source 192.168.56.200",
    ]


def _input_chain(fake: FakeIptables) -> list[str]:
    return [line for line in fake.listing("filter") if line.startswith("-A INPUT")]


def test_iptables_top_regex_keeps_matching_rules_of_others_above_ours():
    # nova: IptablesManager._modify_rules (iptables_top_regex, bug 1116562)
    wanted = rules.controller_rules(SEED_NET, metadata_host="192.168.56.200", **SEED)
    fake = FakeIptables()
    fake.run("-N fail2ban-ssh")
    fake.run("-A INPUT -p tcp --dport 22 -j fail2ban-ssh")
    fake.run("-A INPUT -i lo -j ACCEPT")
    mgr = IptablesManager("network", fake, tables=CONTROLLER_TABLES, top_regex="fail2ban")
    declare(mgr.ipv4, wanted)
    mgr.full_sync()
    assert _input_chain(fake) == [
        "-A INPUT -p tcp --dport 22 -j fail2ban-ssh",
        "-A INPUT -j nova-network-INPUT",
        "-A INPUT -i lo -j ACCEPT",
    ]
    assert mgr.check_and_repair(force=True) == []
    # without the expression novanet's jump goes first, as nova's did
    plain = applied(wanted, _with_foreign())
    assert _input_chain(plain)[0] == "-A INPUT -j nova-network-INPUT"


def test_iptables_bottom_regex_wins_over_a_later_top_match():
    fake = _with_foreign()
    fake.run("-A INPUT -j last-resort")
    fake.run("-A INPUT -j fail2ban-ssh")
    mgr = IptablesManager(
        "network", fake, tables=CONTROLLER_TABLES, top_regex="fail2ban", bottom_regex="last-resort"
    )
    declare(mgr.ipv4, rules.controller_rules(SEED_NET, metadata_host="10.0.0.9", **SEED))
    mgr.full_sync()
    chain = _input_chain(fake)
    assert chain.index("-A INPUT -j nova-network-INPUT") < chain.index("-A INPUT -j last-resort")
    assert chain.index("-A INPUT -p tcp --dport 22 -j fail2ban-ssh") == 0


def _with_foreign() -> FakeIptables:
    fake = FakeIptables()
    fake.run("-N fail2ban-ssh")
    fake.run("-N last-resort")
    fake.run("-A INPUT -p tcp --dport 22 -j fail2ban-ssh")
    return fake
