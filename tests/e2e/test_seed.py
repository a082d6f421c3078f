"""The seed article's observations, asserted one by one on the demo's own run.

The module runs ``demo.run(keep=True)`` once (the demo's expectation and
observation code, not a copy of it), then asserts each check it produced,
looks at a few things the article shows in prose, and finally removes the
lab and asserts nothing is left behind.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from novanet.lab import checks, demo, verify
from novanet.lab import lab as lab_mod
from novanet.lab.cloud import Cloud
from tests.e2e.helpers import E2E, assert_no_leftovers, require_e2e
from tests.functional.test_lab_fabric import TEST_BASE, unique_lab_name

pytestmark = E2E


@pytest.fixture(scope="module")
def demo_run() -> Iterator[tuple[demo.DemoResult, Cloud, str]]:
    require_e2e()
    lab = lab_mod.Lab(unique_lab_name(), TEST_BASE)
    out = io.StringIO()
    try:
        result = demo.run(lab, keep=True, out=out, ascii_only=True)
        yield result, Cloud.of(lab), out.getvalue()
    finally:
        lab.down()


def test_demo_ran_to_the_end(demo_run: tuple[demo.DemoResult, Cloud, str]) -> None:
    result, _, output = demo_run
    assert result.error is None, output
    keys = [c.key for c in result.checks]
    assert keys == [*verify.KERNEL_KEYS, *verify.PING_KEYS, verify.METADATA_KEY], output
    # How long it took is a benchmark's business (bench/lab_bench.py), not a correctness check.
    assert "The lab " in output and "stays up" in output


@pytest.mark.parametrize("key", [*verify.KERNEL_KEYS, *verify.PING_KEYS, verify.METADATA_KEY])
def test_observation_matches_the_seed(
    demo_run: tuple[demo.DemoResult, Cloud, str], key: str
) -> None:
    result, cloud, _ = demo_run
    check = next(c for c in result.checks if c.key == key)
    if check.status == checks.SKIP:
        assert key == verify.METADATA_KEY and not cloud.novanet.metadata_installed()
        pytest.skip(f"{check.title}: {'; '.join(check.notes)}")
    assert check.status == checks.PASS, "\n".join(checks.render(check, ascii_only=True))


def test_the_demo_used_the_seeds_instance(demo_run: tuple[demo.DemoResult, Cloud, str]) -> None:
    result, cloud, _ = demo_run
    assert result.cirros is not None and result.other is not None
    cirros = result.cirros.instance
    assert (cirros.display_name, cirros.host, cirros.address, cirros.mac, cirros.device) == (
        "cirros",
        "compute-1",
        "10.0.0.2",
        "fa:16:3e:2c:e8:ec",
        "vnet0",
    )
    assert result.cirros.lease.address == "10.0.0.2/24"
    assert result.cirros.lease.router == "10.0.0.1" and result.cirros.lease.dns == ("10.0.0.1",)
    assert result.other.instance.host == "compute-2"
    assert result.other.instance.address == "10.0.0.3"
    # The guests keep their DHCP clients (renewals, like cirros).
    for booted in (result.cirros, result.other):
        inst = booted.instance
        assert cloud.lab.process_running(inst.host, f"udhcpc-{inst.name}")
    # Each compute node sees only its own instance namespace.
    assert cloud.lab.instances("compute-1") == [cirros.name]
    assert cloud.lab.instances("compute-2") == [result.other.instance.name]
    assert cloud.lab.instances("controller-1") == []


def test_database_and_services(demo_run: tuple[demo.DemoResult, Cloud, str]) -> None:
    _, cloud, _ = demo_run
    services = {(r["host"], r["binary"]): r["state"] for r in cloud.novanet.services()}
    expected = {
        ("controller-1", "novanet-network"): "up",
        ("compute-1", "novanet-compute"): "up",
        ("compute-2", "novanet-compute"): "up",
    }
    if cloud.novanet.metadata_installed():  # it reports its heartbeat like the others
        expected[("controller-1", "novanet-metadata")] = "up"
    assert services == expected
    fixed = {r["address"]: r for r in cloud.novanet.manage_json("fixed", "list")}
    assert fixed["10.0.0.2"]["leased"] is True and fixed["10.0.0.2"]["allocated"] is True
    assert fixed["10.0.0.3"]["leased"] is True
    assert fixed["10.0.0.1"]["reserved"] is True and fixed["10.0.0.4"]["allocated"] is False
    # The hostsfile has both instances now, each once.
    setup = cloud.observer.setup()
    lines = cloud.observer.hostsfile(setup)
    assert lines[0] == "fa:16:3e:2c:e8:ec,cirros.novalocal,10.0.0.2"
    assert len(lines) == 2 and lines[1].endswith(",cirros-2.novalocal,10.0.0.3")


def test_cli_commands_on_the_kept_lab(demo_run: tuple[demo.DemoResult, Cloud, str]) -> None:
    _, cloud, _ = demo_run
    cli = [sys.executable, "-m", "novanet.cmd.lab", "--base-dir", TEST_BASE]
    name = ["--name", cloud.lab.name]

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=120)

    ping = call("ping", *name, "cirros-2", "cirros")
    assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout + ping.stderr
    blocked = call("ping", *name, "--busybox", "-c", "1", "compute-1", "10.0.0.2")
    assert blocked.returncode == 1 and "Operation not permitted" in blocked.stdout
    status = json.loads(call("status", *name, "--format", "json").stdout)
    daemons = {(d["node"], d["program"]): d for d in status["novanet"]["daemons"]}
    assert daemons[("controller-1", "novanet-network")]["service"] == "up"
    assert all(d["running"] for d in daemons.values())
    names = {i["display_name"]: i for i in status["novanet"]["instances"]}
    assert names["cirros"]["guest_dhcp"] is True and names["cirros"]["address"] == "10.0.0.2"
    listing = call("exec", *name, "compute-1", "iptables", "-S")
    assert "-A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-1" in listing.stdout

    # boot and delete through the CLI: the chain, device, netns and hostsfile line go.
    booted = call("boot", *name, "vm3", "--host", "compute-1")
    assert booted.returncode == 0, booted.stderr
    assert "lease of 10.0.0.4 obtained" in booted.stdout
    assert cloud.lab.instances("compute-1") == ["instance-00000001", "instance-00000003"]
    deleted = call("delete", *name, "vm3")
    assert deleted.returncode == 0, deleted.stderr
    assert cloud.lab.instances("compute-1") == ["instance-00000001"]
    assert "inst-3" not in "\n".join(cloud.observer.iptables("compute-1"))
    assert not [ln for ln in cloud.observer.hostsfile(cloud.observer.setup()) if "vm3" in ln]
    assert not cloud.lab.process_running("compute-1", "udhcpc-instance-00000003")


def test_down_leaves_nothing(demo_run: tuple[demo.DemoResult, Cloud, str]) -> None:
    _, cloud, _ = demo_run
    lab = cloud.lab
    assert lab.vhost.startswith("nl-t")
    removed = lab.down()
    assert f"vhost {lab.vhost}" in removed
    assert_no_leftovers(lab)
    assert lab.down() == []  # idempotent (the fixture calls it once more)
