"""novanet-lab's expectations, comparisons and demo reporting: pure, no root needed.

(Unit tests by nature; they live here because the lab's brief owns
tests/functional/test_lab_*.py.)
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping

import pytest

from novanet.conf import loader, new_conf
from novanet.lab import checks, demo, expect, netview, nodeconf, seeddata, state
from novanet.lab.checks import Check
from novanet.lab.topology import seed_topology
from tests.lib.paths import SEED

SETUP = expect.Setup(
    networks_path="/run/novanet-lab/x/controller-1/networks",
    dhcpbridge="/venv/bin/novanet-dhcpbridge",
    lease_time=86400,
    metadata=True,
)


def seed_lines(name: str) -> list[str]:
    return [line for line in (SEED / name).read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(seeddata.FILES))
def test_embedded_listings_are_the_seed_files(name: str) -> None:
    assert seeddata.FILES[name] == (SEED / name).read_text()


def test_controller_listings_are_the_seeds_with_or_without_metadata() -> None:
    """novanet-network installs the nova-api-* chains: novanet-metadata runs unprivileged."""
    for setup in (SETUP, expect.Setup("/n", "/d", metadata=False)):
        assert expect.controller_filter(setup) == seed_lines("controller-iptables-filter.txt")
        assert expect.controller_nat(setup) == seed_lines("controller-iptables-nat.txt")


def test_compute_listing_takes_our_instance_id() -> None:
    listing = expect.compute_filter(SETUP, 1)
    seed = seed_lines("compute-1-iptables-filter.txt")
    assert listing == [line.replace("inst-9", "inst-1") for line in seed]
    assert "-A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-1" in listing
    # Only the chain name changes: an id of 19 must not touch other nines.
    assert "-N nova-compute-inst-19" in expect.compute_filter(SETUP, 19)
    strict = expect.Setup("/n", "/d", allow_same_net_traffic=False)
    without = expect.compute_filter(strict, 3)
    assert "-A nova-compute-inst-3 -s 10.0.0.0/24 -j ACCEPT" not in without
    assert (
        "-A nova-compute-inst-3 -s 10.0.0.1/32 -p udp -m udp --sport 67 --dport 68 -j ACCEPT"
        in (without)
    )
    assert len(without) == len(seed) - 1


def test_dnsmasq_argv_follows_paths_and_lease_time() -> None:
    argv = expect.dnsmasq_argv(SETUP)
    assert argv[0] == "/usr/sbin/dnsmasq"
    assert "--pid-file=/run/novanet-lab/x/controller-1/networks/nova-br100.pid" in argv
    assert "--dhcp-hostsfile=/run/novanet-lab/x/controller-1/networks/nova-br100.conf" in argv
    assert "--dhcp-script=/venv/bin/novanet-dhcpbridge" in argv
    assert "--dhcp-range=10.0.0.2,static,86400s" in argv
    assert len(argv) == len(seed_lines("controller-dnsmasq-argv.txt"))
    assert not [a for a in argv if "/var/lib/nova" in a or "120s" in a]


def test_route_rows_and_the_seeds_prose_listings() -> None:
    assert expect.controller_routes() == [
        "0.0.0.0 192.168.56.101 0.0.0.0 UG 100 eth1",
        "10.0.0.0 0.0.0.0 255.255.255.0 U 0 br100",
        "169.254.0.0 0.0.0.0 255.255.0.0 U 1000 eth1",
        "192.168.56.0 0.0.0.0 255.255.255.0 U 0 eth1",
    ]
    busybox = (
        "Kernel IP routing table\n"
        "Destination     Gateway         Genmask         Flags Metric Ref    Use Iface\n"
        "0.0.0.0         10.0.0.1        0.0.0.0         UG    0      0        0 eth0\n"
        "10.0.0.0        0.0.0.0         255.255.255.0   U     0      0        0 eth0\n"
    )
    assert expect.route_rows(busybox) == expect.guest_routes()
    assert expect.controller_interfaces()[-1] == (
        "    inet 10.0.0.1/24 brd 10.0.0.255 scope global br100"
    )
    assert expect.controller_bridges() == ["br100 8000.0800278f87fa no eth2"]
    assert expect.instance_id_text(9) == "i-00000009"
    assert expect.cloud_setup_line("i-00000009", 1, 4.74) == seeddata.CLOUD_SETUP_LINE


def link(name: str, **kw: object) -> netview.Link:
    fields: dict[str, object] = dict(
        index=1, name=name, mac="08:00:27:8f:87:fa", up=True, promisc=False, master=None,
        kind=None, addresses=(),
    )  # fmt: skip
    fields.update(kw)
    return netview.Link(**fields)  # type: ignore[arg-type]


def test_netview_renders_like_ip_and_brctl() -> None:
    addr = netview.Address("10.0.0.1/24", "10.0.0.255", "global", "br100")
    links = [
        link("eth2", promisc=True, master="br100"),
        link("br100", kind="bridge", addresses=(addr,), bridge_id="8000.0800278f87fa", stp=False),
    ]
    assert netview.render_links(links, ["eth1", "eth2", "br100"]) == [
        "eth1: (no such interface)",
        "eth2: <UP,PROMISC> master br100",
        "    link/ether 08:00:27:8f:87:fa",
        "br100: <UP>",
        "    link/ether 08:00:27:8f:87:fa",
        "    inet 10.0.0.1/24 brd 10.0.0.255 scope global br100",
    ]
    assert netview.brctl_show(links) == expect.controller_bridges()


def test_comparisons() -> None:
    seed = ["-N a", "-A a -j b"]
    assert checks.exact("k", "t", seed, seed).status == checks.PASS
    swapped = checks.exact("k", "t", seed, list(reversed(seed)))
    assert swapped.failed
    assert checks.contains("k", "t", ["x"], ["y", "x"]).status == checks.PASS
    argv = expect.dnsmasq_argv(SETUP)
    ok = checks.with_extras("k", "t", argv, [*argv, "--no-hosts", "--dhcp-authoritative"],
                            expect.DNSMASQ_EXTRAS)  # fmt: skip
    assert ok.status == checks.PASS
    assert ok.notes[0].startswith("extra --no-hosts, fixes: ")
    odd = checks.with_extras("k", "t", argv, [*argv, "--port=0"], expect.DNSMASQ_EXTRAS)
    assert odd.failed and "unexpected extra argument --port=0" in odd.notes
    moved = checks.with_extras("k", "t", argv, ["--no-hosts", *argv], expect.DNSMASQ_EXTRAS)
    assert moved.failed
    assert checks.summary([ok, odd, checks.skipped("m", "t", "why")]) == (1, 1, 1)


def test_render_shows_a_diff_for_listings_and_both_sides_for_facts() -> None:
    listing = checks.exact("k", "iptables -S", ["-N a", "-N b", "-N c"], ["-N a", "-N c"])
    text = "\n".join(checks.render(listing))
    assert text.startswith("\u2717 iptables -S")
    assert "-N b" in text and "--- expected (seed)" in text
    fact = checks.truth("p", "ping", "replies", "100% packet loss", False)
    assert checks.render(fact, ascii_only=True) == [
        "FAIL ping",
        "      expected: replies",
        "      actual:   100% packet loss",
    ]
    good = checks.truth("p", "ping", "replies", "64 bytes from 10.0.0.2", True)
    assert checks.render(good) == ["\u2713 ping: 64 bytes from 10.0.0.2"]
    skip = checks.skipped("m", "metadata", "novanet-metadata not installed")
    assert checks.render(skip)[0].endswith("skipped (novanet-metadata not installed)")


def test_nova_conf_starts_with_the_seeds_lines(tmp_path: os.PathLike[str]) -> None:
    topo = seed_topology("demo")
    paths = state.LabPaths(os.fspath(tmp_path), "demo")
    for node in ("controller-1", "compute-1"):
        text = nodeconf.render_nova_conf(topo, node, paths, {"allow_same_net_traffic": "false"})
        lines = text.splitlines()
        assert lines[:5] == seed_lines("controller-nova.conf")
        assert "--rabbit_virtual_host=nl-demo" in lines
        assert "--allow_same_net_traffic=false" in lines
        path = os.path.join(os.fspath(tmp_path), f"{node}.conf")
        with open(path, "w") as handle:
            handle.write(text)
        conf = new_conf()
        loader.load(conf, [loader.Source("config", path)])
        assert conf.rabbit_virtual_host == "nl-demo" and conf.host == node
        assert conf.allow_same_net_traffic is False
        assert conf.flat_network_bridge == "br100" and conf.public_interface == "eth1"


class FakeLab:
    """What demo.run needs of a lab, to test its reporting without root."""

    def __init__(self, exists: bool = False) -> None:
        self.name = "lab"
        self.base = os.path.realpath("/run/novanet-lab")
        self.topology = seed_topology("lab")
        self.downs = 0
        self._exists = exists

    def exists(self) -> bool:
        return self._exists

    def down(self) -> list[str]:
        self.downs += 1
        return []


def run_fake(checks_made: list[Check], *, keep: bool = False, fail: bool = False) -> tuple[
    demo.DemoResult, str, FakeLab
]:  # fmt: skip
    lab = FakeLab()
    out = io.StringIO()

    def scenario(
        _cloud: object, reporter: demo.Reporter, result: demo.DemoResult,
        _extra: Mapping[str, str] | None,
    ) -> None:  # fmt: skip
        reporter.step("working")
        for check in checks_made:
            result.checks.append(check)
            reporter.check(check)
        if fail:
            raise RuntimeError("daemon died")

    result = demo.run(lab, keep=keep, out=out, ascii_only=False, scenario_fn=scenario)  # type: ignore[arg-type]
    return result, out.getvalue(), lab


def test_demo_passes_only_if_every_check_passes() -> None:
    good = checks.exact("a", "listing a", ["x"], ["x"])
    bad = checks.exact("b", "listing b", ["x", "y"], ["x"])
    result, text, lab = run_fake([good])
    assert result.ok and lab.downs == 1
    assert "1 of 1 observations match the seed" in text and "PASS: demo finished in" in text
    assert "[  0.0s] working" in text

    result, text, lab = run_fake([good, bad])
    assert not result.ok and lab.downs == 1
    assert "1 differ" in text and "-y" in text and text.rstrip().splitlines()[-1].startswith("FAIL")

    result, text, lab = run_fake([good], fail=True)
    assert not result.ok and result.error == "RuntimeError: daemon died" and lab.downs == 1
    assert "error: RuntimeError: daemon died" in text

    result, text, lab = run_fake([good], keep=True)
    assert lab.downs == 0 and "novanet-lab exec controller-1 iptables -S" in text


def test_demo_refuses_an_existing_lab() -> None:
    lab = FakeLab(exists=True)
    out = io.StringIO()
    result = demo.run(lab, out=out)  # type: ignore[arg-type]
    assert not result.ok and lab.downs == 0 and "exists" in out.getvalue()
