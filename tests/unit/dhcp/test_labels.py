"""dns_label: whatever a user types, one RFC 1123 label comes out."""

from __future__ import annotations

import random
import re

import pytest

from novanet.dhcp.labels import dns_label, is_dns_label

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NASTY = (
    list("abcXYZ019-_ .,#/\\\n\r\t\x00\x7f;:=*'\"$`|&<>()[]{}@!?%+~^")
    + ["é", "ß", "ñ", "Å", "ﬁ", "Ｗ", "١", "中", "文", "🙂", "\u200b", "\u0301", "\ufeff", "ı", "İ"]
    + ["tag:", "set:", "ignore", "id:", ",ignore", "\n#"]
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cirros", "cirros"),
        ("My Web Server", "my-web-server"),
        ("web_01.example.com", "web-01-example-com"),
        ("évènement", "evenement"),
        ("Ｗｅｂ１", "web1"),
        ("a,b", "a-b"),
        ("evil\nfa:16:3e:00:00:01,x,10.0.0.9", "evil-fa-16-3e-00-00-01-x-10-0-0-9"),
        ("--x--", "x"),
        ("a---b", "a-b"),
        ("#comment", "comment"),
        ("tag:foo,ignore", "tag-foo-ignore"),
        # too long: nova's shortening (first two, '-', last 60), see below
        ("x" * 300, "xx-" + "x" * 60),
        ("a" * 62 + "-b", "aa-" + "a" * 58 + "-b"),
        ("a" * 63, "a" * 63),
    ],
)
def test_examples(name, expected):
    assert dns_label(name, "instance-00000001") == expected


def test_long_names_are_shortened_as_nova_shortened_them():
    # nova: test_linux_net.py test_host_dhcp_truncated_hostname (LP #1238910):
    # 'really_long_fake_instance02_to_test_hostname_truncation_when_too_long'
    # became 're-ng_fake_instance02_to_test_hostname_truncation_when_too_long'
    # ('_' is no DNS label character: novanet writes '-').
    name = "really_long_fake_instance02_to_test_hostname_truncation_when_too_long"
    assert dns_label(name, "instance-00000001") == (
        "re-ng-fake-instance02-to-test-hostname-truncation-when-too-long"
    )
    # the end of a name is what tells two long names apart
    a, b = (dns_label("web frontend of the payment service " * 3 + n, "x") for n in "12")
    assert a != b and len(a) == len(b) == 63


@pytest.mark.parametrize("name", ["", "   ", "中文", "🙂🙂", "---", ",,,", "\n", "#/", "\u200b"])
def test_nothing_left_gives_the_fallback(name):
    assert dns_label(name, "instance-00000001") == "instance-00000001"


def test_invalid_fallback_is_refused():
    with pytest.raises(ValueError):
        dns_label("中文", "bad fallback")


def test_random_nasty_inputs_always_give_a_label():
    rng = random.Random(1234)
    for _ in range(5000):
        length = rng.choice([0, 1, 2, 5, 20, 62, 63, 64, 100, 300])
        name = "".join(rng.choice(NASTY) for _ in range(length))
        label = dns_label(name, "instance-0000abcd")
        assert LABEL.fullmatch(label), (name, label)
        assert 1 <= len(label) <= 63
        assert is_dns_label(label)
        # Nothing that can split a hostsfile line or field survives.
        assert not set(label) & set(",\n\r#/ \t:=")
        # Idempotent: a label stays itself.
        assert dns_label(label, "instance-0000abcd") == label


def test_valid_labels_pass_unchanged():
    rng = random.Random(99)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-"
    for _ in range(2000):
        length = rng.randint(1, 63)
        name = "".join(rng.choice(alphabet) for _ in range(length)).strip("-") or "a"
        name = re.sub("-+", "-", name)
        assert dns_label(name, "fallback") == name
