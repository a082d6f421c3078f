"""allow_same_net_traffic=false: instances no longer reach each other; DHCP and the way out stay.

The article's NOTE: "by default all traffic to VMs in the same network is
allowed (by iptables) unless you set --allow_same_net_traffic=false". The
instance chain then lacks ``-s 10.0.0.0/24 -j ACCEPT``; what still reaches
an instance is the DHCP server's answers (``-s 10.0.0.1/32 -p udp --sport 67
--dport 68``) and replies to its own connections (RELATED,ESTABLISHED).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from novanet.lab import expect
from novanet.lab.cloud import Cloud
from novanet.lab.instances import Booted
from tests.e2e.helpers import E2E, boot_seed_instances, running_cloud, wait_for

pytestmark = E2E

World = tuple[Cloud, Booted, Booted]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_cloud({"allow_same_net_traffic": "false"}) as cloud:
        cirros, other = boot_seed_instances(cloud)
        yield cloud, cirros, other


def test_instance_chain_has_no_same_net_rule(world: World) -> None:
    cloud, cirros, _ = world
    setup = cloud.observer.setup()
    assert setup.allow_same_net_traffic is False
    listing = cloud.observer.iptables("compute-1")
    assert listing == expect.compute_filter(setup, cirros.instance.id)
    assert f"-A nova-compute-inst-{cirros.instance.id} -s 10.0.0.0/24 -j ACCEPT" not in listing


def test_instances_cannot_reach_each_other(world: World) -> None:
    cloud, cirros, other = world
    assert not cloud.instances.ping(other.instance.name, cirros.instance.name, count=2).ok
    assert not cloud.instances.ping(cirros.instance.name, other.instance.name, count=2).ok


def test_dhcp_still_works_boot_and_renewal(world: World) -> None:
    cloud, cirros, other = world
    assert (cirros.lease.address, other.lease.address) == ("10.0.0.2/24", "10.0.0.3/24")
    inst = cirros.instance
    record = cloud.lab.process(inst.host, f"udhcpc-{inst.name}")
    assert record is not None
    lease_file = os.path.join(cloud.lab.paths.guests_dir(inst.host), inst.name, "lease")
    before = os.stat(lease_file).st_mtime_ns
    os.kill(record.pid, signal.SIGUSR1)  # udhcpc: renew now (a unicast DHCPREQUEST)
    assert wait_for(lambda: os.stat(lease_file).st_mtime_ns != before, timeout=10)
    with open(record.log) as handle:
        assert "renew: eth0 keeps 10.0.0.2/24" in handle.read()


def test_the_way_out_still_works(world: World) -> None:
    cloud, cirros, other = world
    # Replies to the instance's own traffic are RELATED,ESTABLISHED.
    assert cloud.instances.ping(cirros.instance.name, "10.0.0.1").ok
    assert cloud.instances.ping(cirros.instance.name, "192.168.56.101").ok
    assert cloud.instances.ping(other.instance.name, "192.168.56.101").ok
    if cloud.novanet.metadata_running():
        iid, _, _ = cloud.instances.cloud_setup(cirros.instance, tries=3)
        assert iid == expect.instance_id_text(cirros.instance.id)


def test_new_connections_from_the_controller_are_dropped_too(world: World) -> None:
    """Only the DHCP server's answers are accepted, as in nova-network.

    nova's IptablesFirewallDriver added ``-s <dhcp_server> -p udp --sport 67
    --dport 68 -j ACCEPT`` and, only with allow_same_net_traffic, the
    network's CIDR; the contract's compute listing is the same. So a ping
    the controller starts is dropped on the compute host like any other.
    """
    cloud, cirros, _ = world
    assert not cloud.instances.ping("controller-1", cirros.instance.name, count=2).ok
