"""normalise_rule() against what iptables 1.8.9 -S printed (nft and legacy alike)."""

from __future__ import annotations

import pytest

from novanet.linux.iptables.normalise import InvalidRule, normalise_rule, save_string

# (as written, as iptables -S prints it): measured on this host, both backends.
MEASURED = [
    (
        "-s 10.0.0.1 -p udp --sport 67 --dport 68 -j ACCEPT",
        "-s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT",
    ),
    (
        "-p udp -s 10.0.0.1 --dport 68 --sport 67 -j ACCEPT",
        "-s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT",
    ),
    (
        "-m state --state ESTABLISHED,RELATED -j ACCEPT",
        "-m state --state RELATED,ESTABLISHED -j ACCEPT",
    ),
    (
        "-m state --state NEW,INVALID,UNTRACKED,ESTABLISHED,RELATED -j ACCEPT",
        "-m state --state INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED -j ACCEPT",
    ),
    (
        "-m conntrack --ctstate ESTABLISHED,RELATED,DNAT,SNAT,NEW,INVALID -j ACCEPT",
        "-m conntrack --ctstate INVALID,NEW,RELATED,ESTABLISHED,SNAT,DNAT -j ACCEPT",
    ),
    (
        "-s 10.0.0.0/24 -d 10.0.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT",
        "-s 10.0.0.0/24 -d 10.0.0.0/24 -m conntrack ! --ctstate DNAT -j ACCEPT",
    ),
    (
        "-p tcp -i br100 --destination-port 53 -j ACCEPT",
        "-i br100 -p tcp -m tcp --dport 53 -j ACCEPT",
    ),
    ("-s 10.0.0.5/24 -j ACCEPT", "-s 10.0.0.0/24 -j ACCEPT"),
    ("-s 10.0.0.0/255.255.255.0 -j ACCEPT", "-s 10.0.0.0/24 -j ACCEPT"),
    ("! -s 10.0.0.0/24 -j ACCEPT", "! -s 10.0.0.0/24 -j ACCEPT"),
    ("-p icmp --icmp-type echo-request -j ACCEPT", "-p icmp -m icmp --icmp-type 8 -j ACCEPT"),
    ("-p icmp --icmp-type port-unreachable -j ACCEPT", "-p icmp -m icmp --icmp-type 3/3 -j ACCEPT"),
    ("-p icmp -m icmp --icmp-type any -j ACCEPT", "-p icmp -m icmp --icmp-type any -j ACCEPT"),
    # security groups (measured with iptables 1.8.9): xt_icmp's type 255 is "any"
    ("-p icmp --icmp-type 255 -j ACCEPT", "-p icmp -m icmp --icmp-type any -j ACCEPT"),
    ("-p icmp -m icmp --icmp-type 255/3 -j ACCEPT", "-p icmp -m icmp --icmp-type any -j ACCEPT"),
    ("-p icmp -m icmp --icmp-type 3/4 -j ACCEPT", "-p icmp -m icmp --icmp-type 3/4 -j ACCEPT"),
    ("-p icmp -m icmp --icmp-type 8/255 -j ACCEPT", "-p icmp -m icmp --icmp-type 8/255 -j ACCEPT"),
    (
        "-p tcp --dport 22 -s 10.0.0.0/24 -j ACCEPT",
        "-s 10.0.0.0/24 -p tcp -m tcp --dport 22 -j ACCEPT",
    ),
    (
        "-s 0.0.0.0/0 -p tcp -m multiport --dports 8000:8080 -j ACCEPT",
        "-p tcp -m multiport --dports 8000:8080 -j ACCEPT",
    ),
    (
        "-p tcp -m set --match-set nova-compute-group-7 src --dport 5432 -j ACCEPT",
        "-p tcp -m set --match-set nova-compute-group-7 src -m tcp --dport 5432 -j ACCEPT",
    ),
    (
        "-p udp -m set --match-set web src -m multiport --dports 5:7 -j ACCEPT",
        "-p udp -m set --match-set web src -m multiport --dports 5:7 -j ACCEPT",
    ),
    ("-p tcp --syn -j ACCEPT", "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT"),
    ("-p tcp ! --syn -j ACCEPT", "-p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT"),
    (
        "-p tcp --tcp-flags SYN,ACK SYN --dport 5 --sport 4 -j ACCEPT",
        "-p tcp -m tcp --sport 4 --dport 5 --tcp-flags SYN,ACK SYN -j ACCEPT",
    ),
    (
        "-p tcp --tcp-option 2 --dport 5 -j ACCEPT",
        "-p tcp -m tcp --dport 5 --tcp-option 2 -j ACCEPT",
    ),
    ("-p tcp --sport ssh -j ACCEPT", "-p tcp -m tcp --sport 22 -j ACCEPT"),
    ("-p tcp --dport :80 -j ACCEPT", "-p tcp -m tcp --dport 0:80 -j ACCEPT"),
    ("-p tcp --dport 80: -j ACCEPT", "-p tcp -m tcp --dport 80:65535 -j ACCEPT"),
    (
        "-p tcp --dport 22 -m state --state NEW -j ACCEPT",
        "-p tcp -m tcp --dport 22 -m state --state NEW -j ACCEPT",
    ),
    (
        "-m state --state NEW -p tcp --dport 22 -j ACCEPT",
        "-p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT",
    ),
    ("-m udp -p udp --dport 5 -j ACCEPT", "-p udp -m udp --dport 5 -j ACCEPT"),
    ("-m comment --comment foo:bar -j ACCEPT", '-m comment --comment "foo:bar" -j ACCEPT'),
    ("-m comment --comment 'a\"b' -j ACCEPT", '-m comment --comment "a\\"b" -j ACCEPT'),
    ("-m comment --comment hello -j ACCEPT", "-m comment --comment hello -j ACCEPT"),
    ("-j REJECT", "-j REJECT --reject-with icmp-port-unreachable"),
    ('-j LOG --log-prefix "nova: " --log-level 4', '-j LOG --log-prefix "nova: "'),
    ("-j LOG --log-prefix nova", "-j LOG --log-prefix nova"),
    (
        "-p tcp -m tcp --dport 80 -j MARK --set-mark 0x1",
        "-p tcp -m tcp --dport 80 -j MARK --set-xmark 0x1/0xffffffff",
    ),
    ("-p 17 -j ACCEPT", "-p udp -j ACCEPT"),
    ("-p UDP -j ACCEPT", "-p udp -j ACCEPT"),
    ("-p 47 -j ACCEPT", "-p gre -j ACCEPT"),
    ("-p all -s 1.2.3.4 -j ACCEPT", "-s 1.2.3.4/32 -j ACCEPT"),
    ("-d 0.0.0.0/0 -j ACCEPT", "-j ACCEPT"),
    (
        "-f -p udp -o eth0 -i br100 ! -d 1.1.1.1 ! -s 2.2.2.2 -j ACCEPT",
        "! -s 2.2.2.2/32 ! -d 1.1.1.1/32 -i br100 -o eth0 -p udp -f -j ACCEPT",
    ),
    ("-i eth+ ! -o br100 -j ACCEPT", "-i eth+ ! -o br100 -j ACCEPT"),
    ("-m physdev --physdev-in vnet0 -j ACCEPT", "-m physdev --physdev-in vnet0 -j ACCEPT"),
    ("-g nova-x", "-g nova-x"),
    (
        "-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.1:8775",
        "-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.1:8775",
    ),
]


@pytest.mark.parametrize(("written", "printed"), MEASURED)
def test_rules_come_out_as_iptables_prints_them(written: str, printed: str) -> None:
    assert normalise_rule(written) == printed


@pytest.mark.parametrize(("written", "printed"), MEASURED)
def test_normalising_is_idempotent(written: str, printed: str) -> None:
    assert normalise_rule(printed) == printed


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "-A INPUT -j ACCEPT",
        "-s ! 10.0.0.0/24 -j ACCEPT",
        "-s host.example -j ACCEPT",
        "-s 10.0.0.1,10.0.0.2 -j ACCEPT",
        "--dport 80 -j ACCEPT",
        "-m comment --comment 'open",
        "-p tcp --dport nosuchservice -j ACCEPT",
        "-j",
    ],
)
def test_rules_iptables_would_refuse_or_split_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRule):
        normalise_rule(bad)


def test_save_string_quotes_like_xtables() -> None:
    assert save_string("plain_word-1") == "plain_word-1"
    assert save_string("two words") == '"two words"'
    assert save_string("") == '""'
