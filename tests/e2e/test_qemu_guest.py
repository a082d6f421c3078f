"""A real VM in the lab: QEMU (TCG) on the tap VIF novanet-compute made.

One lab for the module: a netns instance ``peer`` on compute-2 and a VM
``vm`` on compute-1 booted with ``novanet-lab boot --guest qemu``'s code.
The VM's own init reports its lease and instance-id on its console; the
tests read that, run commands in it through its command channel, and
finally delete it (QEMU first, then the tap).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from novanet.lab import fabric
from novanet.lab.cloud import Cloud
from novanet.lab.instances import Booted
from novanet.lab.vm import qemu
from tests.e2e.helpers import E2E, running_cloud, spoofed_ping, wait_for
from tests.functional.test_lab_fabric import TEST_BASE
from tests.functional.test_lab_lifecycle import alive

pytestmark = E2E

World = tuple[Cloud, Booted, Booted]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    if not shutil.which(qemu.QEMU):
        pytest.skip(f"needs {qemu.QEMU} (tools/install-packages.sh installs it)")
    with running_cloud(metadata=True) as cloud:
        peer = cloud.instances.boot("peer", "compute-2")
        vm = cloud.instances.boot("vm", "compute-1", guest_kind="qemu", progress=print)
        yield cloud, vm, peer


def vm_of(booted: Booted) -> qemu.Vm:
    assert booted.vm is not None
    return booted.vm


def test_the_vm_leases_its_fixed_ip_from_dnsmasq(world: World) -> None:
    cloud, booted, _ = world
    vm, inst = vm_of(booted), booted.instance
    assert inst.address is not None and inst.address.startswith("10.0.0.")
    # What the guest's init printed on its console.
    assert booted.lease.address == f"{inst.address}/24"
    assert booted.lease.router == "10.0.0.1" and booted.lease.dns == ("10.0.0.1",)
    assert vm.report().dhcp_server == "10.0.0.1"
    assert f"lease of {inst.address} obtained from 10.0.0.1" in vm.console()
    # What the guest's kernel holds.
    addr = vm.run("ip -4 -o addr show dev eth0")
    assert f"inet {inst.address}/24 brd 10.0.0.255" in addr.stdout, addr
    assert "default via 10.0.0.1 dev eth0" in vm.run("ip route").stdout
    assert vm.run("cat /sys/class/net/eth0/address").stdout.strip() == inst.mac

    # And the controller saw the lease (dnsmasq's dhcp-script).
    def leased() -> bool:
        rows = {r["address"]: r for r in cloud.novanet.manage_json("fixed", "list")}
        return (
            rows[inst.address]["leased"] is True
            and rows[inst.address]["instance_uuid"] == inst.uuid
        )

    assert wait_for(leased, 30)


def test_the_vm_fetches_its_instance_id(world: World) -> None:
    _, booted, _ = world
    report = vm_of(booted).wait("metadata", timeout=120)
    assert report.instance_id == f"i-{booted.instance.id:08x}", report


def test_the_vm_sits_on_novanets_tap(world: World) -> None:
    cloud, booted, _ = world
    vm, inst = vm_of(booted), booted.instance
    assert inst.device is not None and inst.mac is not None
    link, _ = cloud.lab.execute(inst.host, ["ip", "-d", "link", "show", inst.device])
    assert "master br100" in link and "LOWER_UP" in link  # QEMU holds it: carrier
    assert "tun type tap" in link
    assert "link/ether fe:" + inst.mac[3:] in link  # the host end's MAC, as for netns VIFs
    # QEMU runs inside compute-1 (its network namespace), where that tap is.
    node = fabric.netns_path(cloud.lab.topology.netns(inst.host))
    assert os.stat(f"/proc/{vm.pid()}/ns/net") == os.stat(node)


def test_pings_to_and_from_the_vm(world: World) -> None:
    cloud, booted, peer = world
    to_peer = cloud.instances.ping("vm", "peer")
    assert to_peer.ok and " 0% packet loss" in to_peer.output, to_peer.output
    assert peer.instance.host != booted.instance.host
    from_ctl = cloud.instances.ping("controller-1", "vm")
    assert from_ctl.ok, from_ctl.output
    # The seed's "compute node cannot ping its instance" holds for the VM too.
    from_host = cloud.instances.ping("compute-1", "vm", count=1, tool="busybox")
    assert not from_host.ok and from_host.not_permitted, from_host.output


def test_cli_exec_and_ping_through_the_channel(world: World) -> None:
    cloud, _, _ = world
    cli = [sys.executable, "-m", "novanet.cmd.lab", "--base-dir", TEST_BASE]
    name = ["--name", cloud.lab.name]

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=120)

    ran = call("exec", *name, "vm", "--", "sh", "-c", "hostname; echo oops >&2; exit 4")
    assert (ran.returncode, ran.stdout, ran.stderr) == (4, "vm\n", "oops\n")
    ping = call("ping", *name, "vm", "peer")
    assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout + ping.stderr
    shell = call("exec", *name, "vm")
    assert shell.returncode == 2 and "give a command" in shell.stderr
    status = call("status", *name)
    assert f"(QEMU guest pid {vm_of(world[1]).pid()})" in status.stdout


def test_the_vm_cannot_send_from_another_address(world: World) -> None:
    # vif_antispoof: compute-1 drops the VM's frames with a foreign source as
    # they enter br100 from its tap. The peer knows where 10.0.0.77 "is" (a
    # static neighbour entry pointing at the VM), so only IP filtering can
    # stop the ping: without it the peer answers (checked with
    # vif_antispoof = false).
    cloud, booted, peer = world
    vm = vm_of(booted)
    assert booted.instance.mac is not None
    neigh = ["ip", "neigh", "replace", "10.0.0.77", "lladdr", booted.instance.mac, "dev", "eth0"]
    cloud.instances.run_in("peer", [*neigh, "nud", "permanent"])
    try:
        result = spoofed_ping(vm, "10.0.0.77", cloud.instances.address_of("peer"), count=2)
    finally:
        cloud.instances.run_in("peer", ["ip", "neigh", "del", "10.0.0.77", "dev", "eth0"])
    assert result.exit_code == 1, result  # ping ran (2: the address was refused), no reply
    assert "10.0.0.77" not in vm.run("ip -4 -o addr show dev eth0").stdout
    assert cloud.instances.ping("vm", "peer", count=1).ok  # its own address still works
    assert peer.instance.host != booted.instance.host


def test_delete_stops_qemu_then_the_tap_goes(world: World) -> None:
    cloud, booted, _ = world
    vm, inst = vm_of(booted), booted.instance
    pid = vm.pid()
    assert pid is not None and alive(pid)
    cloud.instances.delete("vm")
    assert not alive(pid) and not vm.running()
    assert inst.device is not None

    def tap_gone() -> bool:
        _, _, code = cloud.instances.run_in(inst.host, ["ip", "link", "show", inst.device])
        return code != 0

    assert wait_for(tap_gone, 30)
    assert "vm" not in [i.display_name for i in cloud.instances.all()]


def test_a_vm_whose_instance_novanet_manage_deleted(world: World) -> None:
    # novanet-compute removes the tap under the running QEMU (it knows no
    # hypervisor); the VM is cut off, and `novanet-lab delete` still stops it.
    cloud, _, _ = world
    booted = cloud.instances.boot("vm2", "compute-2", guest_kind="qemu")
    vm, inst = vm_of(booted), booted.instance
    cloud.novanet.manage("instance", "delete", inst.uuid)
    _, _, code = cloud.instances.run_in(inst.host, ["ip", "link", "show", str(inst.device)])
    assert code != 0 and vm.running()
    said = cloud.instances.delete("vm2")
    assert "its instance was deleted" in said and not vm.running()
