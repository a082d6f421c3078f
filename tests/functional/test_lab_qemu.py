"""A QEMU guest in a lab node, on a tap made by hand (no novanet daemons): wires and teardown.

The guest image comes from the machine's cache (built from Debian packages
on first use, ~70 MB download, bounded by image.BUILD_TIMEOUT).
"""

from __future__ import annotations

import os
import shutil

import pytest

from novanet.lab import lab as lab_mod
from novanet.lab.vm import image, qemu
from tests.functional import test_lab_fabric as fabric_tests
from tests.functional.test_lab_fabric import LabFactory, plug_instance, run
from tests.functional.test_lab_lifecycle import alive, assert_no_leftovers
from tests.lib.wait import wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

lab_factory = fabric_tests.lab_factory

MAC = "fa:16:3e:00:00:51"


@pytest.fixture(scope="module")
def guest_image() -> image.GuestImage:
    if not shutil.which(qemu.QEMU):
        pytest.skip(f"needs {qemu.QEMU} (tools/install-packages.sh installs it)")
    return image.ImageCache(progress=print).ensure()


def tap_on_br100(lab: lab_mod.Lab, node: str, tap: str) -> None:
    """A persistent tap on br100, as novanet-compute's tap VIF makes it."""
    run(lab, node, "ip", "tuntap", "add", "dev", tap, "mode", "tap")
    run(lab, node, "ip", "link", "set", tap, "master", "br100", "up")


def boot(lab: lab_mod.Lab, guest_image: image.GuestImage, tap: str = "vnet1") -> qemu.Vm:
    vm = qemu.start(
        lab, "compute-1", "instance-00000051", hostname="vm", mac=MAC, tap=tap, image=guest_image
    )
    vm.channel.wait_ready(timeout=180)
    return vm


def test_vm_on_a_tap_reaches_a_neighbour_and_down_stops_it(
    lab_factory: LabFactory, guest_image: image.GuestImage
) -> None:
    lab = lab_factory()
    plug_instance(lab, "compute-1", "instance-00000001", "fa:16:3e:00:00:11", "10.0.0.11/24")
    tap_on_br100(lab, "compute-1", "vnet1")
    vm = boot(lab, guest_image)
    pid = vm.pid()
    assert pid is not None and vm.running()
    # QEMU runs in the node (its netns and mount view), holding the node's tap.
    node_netns = f"/run/netns/{lab.topology.netns('compute-1')}"
    assert os.stat(f"/proc/{pid}/ns/net") == os.stat(node_netns)
    assert "LOWER_UP" in run(lab, "compute-1", "ip", "link", "show", "vnet1")  # carrier: attached

    mac = vm.run("cat /sys/class/net/eth0/address")
    assert mac.stdout.strip() == MAC and mac.exit_code == 0
    configured = vm.run("ip addr add 10.0.0.51/24 dev eth0 && ip link set eth0 up")
    assert configured.exit_code == 0, configured.stderr
    reply = vm.run("ping -c 2 -W 2 10.0.0.11", timeout=30)
    assert reply.exit_code == 0 and " 0% packet loss" in reply.stdout, reply

    console = vm.console()
    assert "novanet-guest: boot kernel=" in console  # the console is in the lab's logs
    assert vm.console_log in lab.log_files("compute-1")

    lab.down()
    assert not alive(pid)
    assert_no_leftovers(lab)


def test_a_tap_held_by_another_vm_is_reported(
    lab_factory: LabFactory, guest_image: image.GuestImage
) -> None:
    lab = lab_factory()
    run(lab, "compute-1", "ip", "link", "add", "br100", "type", "bridge")
    tap_on_br100(lab, "compute-1", "vnet1")
    first = boot(lab, guest_image)
    second = qemu.start(
        lab, "compute-1", "instance-00000052", hostname="vm2", mac=MAC, tap="vnet1",
        image=guest_image,
    )  # fmt: skip
    with pytest.raises(qemu.VmGone, match="Device or resource busy"):
        second.wait_lease(timeout=60)
    assert first.running()  # the first VM keeps its tap

    assert qemu.stop(lab, "compute-1", "instance-00000051")
    assert not first.running()
    # The tap lost its carrier with QEMU: nothing holds it open any more.
    wait_for(
        lambda: "NO-CARRIER" in run(lab, "compute-1", "ip", "link", "show", "vnet1"),
        "the tap to lose its carrier",
    )
