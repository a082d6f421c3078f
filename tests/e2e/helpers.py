"""End-to-end helpers: the seed's whole topology with novanet's real daemons in it.

Every module builds its own lab(s) under the functional tests' base
directory with a name unique to the run (``t<pid>-<n>``: the session hook in
tests/conftest.py removes leftovers of this run), and removes them at the
end, also when a test fails. Waits poll their condition against a deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping

import pytest

from novanet.lab import lab as lab_mod
from novanet.lab import netview
from novanet.lab.cloud import Cloud
from novanet.lab.instances import Booted
from novanet.lab.vm.channel import CommandResult
from novanet.lab.vm.qemu import Vm
from tests.functional.test_lab_fabric import TEST_BASE, unique_lab_name
from tests.functional.test_lab_lifecycle import assert_no_leftovers as assert_no_lab_leftovers
from tests.lib.wait import poll

E2E = [pytest.mark.root, pytest.mark.rabbit, pytest.mark.slow]


def require_e2e() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network and mount namespaces)")
    for program in ("dnsmasq", "busybox", "iptables", "socat", "rabbitmqctl", "nsenter"):
        if not shutil.which(program):
            pytest.skip(f"needs {program}")
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        pytest.skip("needs RabbitMQ on 127.0.0.1:5672")


# the e2e tests' wait_for: the first true value, or None after the timeout
wait_for = poll


def vhosts() -> list[str]:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, check=True
    ).stdout
    return [line.strip() for line in out.splitlines()[1:]]


def assert_no_leftovers(lab: lab_mod.Lab) -> None:
    """No namespace, mount, process, file or vhost of the lab is left."""
    assert_no_lab_leftovers(lab)
    assert lab.vhost not in vhosts()


@contextlib.contextmanager
def running_cloud(
    conf_extra: Mapping[str, str] | None = None, metadata: bool | None = None
) -> Iterator[Cloud]:
    """A lab with novanet started in it; removed afterwards whatever happened."""
    require_e2e()
    lab = lab_mod.Lab(unique_lab_name(), TEST_BASE)
    try:
        lab.up(conf_extra=conf_extra)
        cloud = Cloud.of(lab)
        cloud.novanet.start(metadata=metadata)
        yield cloud
    finally:
        lab.down()


def boot_seed_instances(cloud: Cloud) -> tuple[Booted, Booted]:
    """cirros on compute-1 with the article's MAC, a second instance on compute-2."""
    cirros = cloud.instances.boot("cirros", "compute-1", "fa:16:3e:2c:e8:ec")
    other = cloud.instances.boot("cirros-2", "compute-2")
    return cirros, other


def unique_rules(listing: list[str]) -> bool:
    """No rule twice in one table (iptables -S output, or iptables-save's with ``*table`` lines)."""
    seen: set[tuple[str, str]] = set()
    table = "filter"
    for line in listing:
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A "):
            if (table, line) in seen:
                return False
            seen.add((table, line))
    return True


def renewed(cloud: Cloud, booted: Booted) -> bool:
    """Make the guest's udhcpc renew now (SIGUSR1); True once its lease is renewed."""
    inst = booted.instance
    record = cloud.lab.process(inst.host, f"udhcpc-{inst.name}")
    assert record is not None
    lease_file = os.path.join(cloud.lab.paths.guests_dir(inst.host), inst.name, "lease")
    before = os.stat(lease_file).st_mtime_ns
    os.kill(record.pid, signal.SIGUSR1)
    return bool(wait_for(lambda: os.stat(lease_file).st_mtime_ns != before, 10))


class Pinger:
    """iputils ping from a node, every 0.2 s, in the background; SIGINT prints its statistics."""

    def __init__(self, cloud: Cloud, node: str, address: str) -> None:
        self.cloud = cloud
        self.node = node
        argv = ["ping", "-n", "-i", "0.2", "-w", "120", address]
        self.record = cloud.lab.start_process(node, "pinger", argv)
        self.started = time.monotonic()

    def replies(self) -> list[int]:
        with open(self.record.log) as handle:
            return [int(m) for m in re.findall(r"icmp_seq=(\d+) ttl=", handle.read())]

    def stop(self) -> tuple[int, int, list[int]]:
        """(transmitted, received, icmp_seq of replies)."""
        self.cloud.lab.kill_process(self.node, "pinger", signal.SIGINT)
        assert wait_for(lambda: not self.cloud.lab.process_running(self.node, "pinger"), 5)
        with open(self.record.log) as handle:
            text = handle.read()
        stats = re.search(r"(\d+) packets transmitted, (\d+) received", text)
        assert stats, text
        os.unlink(self.record.log)  # the next pinger starts a fresh log
        return int(stats.group(1)), int(stats.group(2)), self.replies_from(text)

    @staticmethod
    def replies_from(text: str) -> list[int]:
        return [int(m) for m in re.findall(r"icmp_seq=(\d+) ttl=", text)]


def bridge_ports(cloud: Cloud, node: str) -> dict[str, int]:
    """br100's ports on ``node`` (eth2, the instances' vnetN) -> ifindex."""
    return {
        link.name: link.index
        for link in netview.links(cloud.lab.topology.netns(node))
        if link.master == "br100"
    }


def gateway_first(cloud: Cloud, node: str) -> bool:
    links = {link.name: link for link in netview.links(cloud.lab.topology.netns(node))}
    br100 = links.get("br100")
    return br100 is not None and [a.address for a in br100.addresses][:1] == ["10.0.0.1/24"]


def spoofed_ping(vm: Vm, spoofed: str, destination: str, count: int = 2) -> CommandResult:
    """From inside a QEMU guest, ping ``destination`` from an address that is not the VM's.

    With ``vif_antispoof`` (the default) the compute node drops the guest's
    frames with a foreign source as they enter br100, so the ping gets no
    reply (exit code 1; 2 if the guest refused the address):
    tests/e2e/test_qemu_guest.py asserts it. The extra address is removed
    again whatever happened.
    """
    script = (
        f"ip addr add {spoofed}/32 dev eth0 || exit 2\n"
        f"ping -c {count} -W 2 -I {spoofed} {destination}\n"
        "rc=$?\n"
        f"ip addr del {spoofed}/32 dev eth0\n"
        "exit $rc\n"
    )
    return vm.run(script, timeout=10 + 3 * count)
