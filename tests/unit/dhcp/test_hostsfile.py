"""Hostsfile text: validated, one line per host, sorted, atomic."""

from __future__ import annotations

import ipaddress
import os
import stat
import threading

import pytest

from novanet.dhcp import hostsfile
from novanet.dhcp.hostsfile import InvalidHost, render, select_hosts, validate_host
from novanet.dhcp.models import DhcpHost
from tests.lib.paths import SEED

NET = ipaddress.IPv4Network("10.0.0.0/24")


def test_seed_line():
    text = render([DhcpHost("fa:16:3e:2c:e8:ec", "cirros", "10.0.0.2")], "novalocal")
    assert text == "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2\n"
    assert text == (SEED / "controller-hostsfile-after-boot.txt").read_text()


def test_no_hosts_is_empty():
    assert render([], "novalocal") == ""


def test_empty_domain_writes_the_name_with_a_trailing_dot_as_nova_did():
    # nova: linux_net.py _host_dhcp ('%s,%s.%s,%s' with an empty dhcp_domain);
    # test_linux_net.py test_dnsmasq_execute runs with dhcp_domain=''.
    # dnsmasq hands out "cirros" either way (functional test_dnsmasq_options).
    text = render([DhcpHost("fa:16:3e:2c:e8:ec", "cirros", "10.0.0.2")], "")
    assert text == "fa:16:3e:2c:e8:ec,cirros.,10.0.0.2\n"


def test_sorted_by_address_numerically_and_mac_lower_cased():
    hosts = [
        DhcpHost("FA:16:3E:00:00:10", "ten", "10.0.0.10"),
        DhcpHost("fa:16:3e:00:00:09", "nine", "10.0.0.9"),
        DhcpHost("fa:16:3e:00:01:00", "big", "10.0.1.2"),
    ]
    assert render(hosts, "novalocal").splitlines() == [
        "fa:16:3e:00:00:09,nine.novalocal,10.0.0.9",
        "fa:16:3e:00:00:10,ten.novalocal,10.0.0.10",
        "fa:16:3e:00:01:00,big.novalocal,10.0.1.2",
    ]


def test_first_address_per_mac_only():
    hosts = [
        DhcpHost("fa:16:3e:00:00:01", "a", "10.0.0.7"),
        DhcpHost("fa:16:3e:00:00:01", "a", "10.0.0.3"),
        DhcpHost("fa:16:3e:00:00:02", "b", "10.0.0.5"),
    ]
    assert render(hosts, "d").splitlines() == [
        "fa:16:3e:00:00:01,a.d,10.0.0.3",
        "fa:16:3e:00:00:02,b.d,10.0.0.5",
    ]


def test_one_line_per_address_even_after_an_allocation_race():
    rejected = []
    hosts = [
        DhcpHost("fa:16:3e:00:00:02", "b", "10.0.0.5"),
        DhcpHost("fa:16:3e:00:00:01", "a", "10.0.0.5"),
    ]
    entries = select_hosts(hosts, NET, on_reject=lambda h, why: rejected.append(h.mac))
    assert [e.mac for e in entries] == ["fa:16:3e:00:00:01"]
    assert rejected == ["fa:16:3e:00:00:02"]


@pytest.mark.parametrize(
    ("mac", "address"),
    [
        ("fa:16:3e:2c:e8", "10.0.0.2"),
        ("fa:16:3e:2c:e8:ec:00", "10.0.0.2"),
        ("fa-16-3e-2c-e8-ec", "10.0.0.2"),
        ("fa:16:3e:2c:e8:ec,tag:x", "10.0.0.2"),
        ("fa:16:3e:2c:e8:ec\n", "10.0.0.2"),
        ("zz:16:3e:2c:e8:ec", "10.0.0.2"),
        ("ff:ff:ff:ff:ff:ff", "10.0.0.2"),
        ("01:00:5e:00:00:01", "10.0.0.2"),
        ("fa:16:3e:2c:e8:ec", "10.0.0.256"),
        ("fa:16:3e:2c:e8:ec", "10.0.0.02"),
        ("fa:16:3e:2c:e8:ec", "10.0.0.2,set:x"),
        ("fa:16:3e:2c:e8:ec", "10.0.0.2\nfa:16:3e:00:00:01,x,10.0.0.3"),
        ("fa:16:3e:2c:e8:ec", "fe80::1"),
        ("fa:16:3e:2c:e8:ec", "10.0.1.2"),  # outside 10.0.0.0/24
        ("fa:16:3e:2c:e8:ec", ""),
    ],
)
def test_bad_rows_are_refused(mac, address):
    with pytest.raises(InvalidHost):
        validate_host(DhcpHost(mac, "x", address), NET)


def test_a_bad_row_does_not_corrupt_the_file():
    hosts = [
        DhcpHost("fa:16:3e:00:00:01", "good", "10.0.0.2"),
        DhcpHost("fa:16:3e:00:00:02\nfa:16:3e:00:00:03", "evil", "10.0.0.3"),
        DhcpHost("fa:16:3e:00:00:04", "evil", "10.0.0.4,10.0.0.5"),
    ]
    entries = select_hosts(hosts, NET, on_reject=lambda h, why: None)
    assert hostsfile.hostsfile_text(entries, "novalocal") == (
        "fa:16:3e:00:00:01,good.novalocal,10.0.0.2\n"
    )


def test_hostname_that_is_not_a_label_is_relabelled():
    entry = validate_host(DhcpHost("fa:16:3e:00:00:01", "Evil,Name\n#x", "10.0.0.2"), NET)
    assert entry.hostname == "evil-name-x"
    entry = validate_host(DhcpHost("fa:16:3e:00:00:01", "中文", "10.0.0.2"), NET)
    assert entry.hostname == "host-10-0-0-2"


def test_every_line_has_three_safe_fields():
    hosts = [
        DhcpHost(f"fa:16:3e:00:00:{i:02x}", name, f"10.0.0.{i + 2}")
        for i, name in enumerate(["a,b", "c\nd", "#e", "tag:f", "g h", "", "ok"])
    ]
    for line in render(hosts, "novalocal").splitlines():
        mac, name, address = line.split(",")
        assert ipaddress.IPv4Address(address) in NET
        assert name.endswith(".novalocal")


def test_write_atomic_mode_and_content(tmp_path):
    path = tmp_path / "nova-br100.conf"
    hostsfile.write_atomic(str(path), "a\n")
    hostsfile.write_atomic(str(path), "b\n")
    assert path.read_text() == "b\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(tmp_path) == ["nova-br100.conf"]  # no temp file left


def test_write_atomic_readers_never_see_a_partial_file(tmp_path):
    path = tmp_path / "hosts"
    small, big = "x\n", "y" * 200_000 + "\n"
    hostsfile.write_atomic(str(path), small)
    seen = set()
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            seen.add(path.read_text())

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(200):
        hostsfile.write_atomic(str(path), big if i % 2 else small)
    stop.set()
    thread.join()
    assert seen <= {small, big}


def test_write_atomic_failure_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "hosts"
    hostsfile.write_atomic(str(path), "old\n")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        hostsfile.write_atomic(str(path), "new\n")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["hosts"]
