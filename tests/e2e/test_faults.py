"""Faults in a running lab: daemon restarts, a killed dnsmasq, deleted rules, a cut broker,
a compute agent killed while instances are being created.

One lab for the module: cirros on compute-1 (the seed's), a second
instance on compute-2. Every test leaves the lab as it found it, so the
kernel state is compared with the seed's listings again and again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from novanet import exception
from novanet.lab import checks, expect, netview, relay
from novanet.lab.cloud import Cloud
from novanet.lab.instances import Booted, Instance
from tests.e2e.helpers import (
    E2E,
    Pinger,
    boot_seed_instances,
    bridge_ports,
    gateway_first,
    renewed,
    running_cloud,
    unique_rules,
    wait_for,
)

pytestmark = E2E

CHECK_INTERVAL = 2  # iptables_check_interval and dnsmasq_check_interval of the lab's nova.conf
SERVICE_DOWN_TIME = 5
CONF = {"service_down_time": str(SERVICE_DOWN_TIME), "instance_create_timeout": "8"}

World = tuple[Cloud, Booted, Booted]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_cloud(CONF) as cloud:
        cirros, other = boot_seed_instances(cloud)
        yield cloud, cirros, other


def snapshot(cloud: Cloud) -> dict[str, Any]:
    """Kernel state of every node that must survive a fault unchanged."""
    obs = cloud.observer
    setup = obs.setup()
    return {
        "iptables": {node: obs.iptables_save(node) for node in ("controller-1", *cloud.novanet.computes)},
        "dnsmasq": obs.dnsmasq_pids(),
        "hostsfile": obs.hostsfile(setup),
        "instances": {node: cloud.lab.instances(node) for node in cloud.novanet.computes},
    }  # fmt: skip


def leased(cloud: Cloud, address: str) -> bool:
    rows = {r["address"]: r for r in cloud.novanet.manage_json("fixed", "list")}
    return bool(rows[address]["leased"] and rows[address]["allocated"])


def guest_address(cloud: Cloud, booted: Booted) -> list[str]:
    return cloud.observer.guest_interface(booted.instance)[1:]


def services(cloud: Cloud) -> dict[tuple[str, str], str]:
    return {(r["host"], r["binary"]): r["state"] for r in cloud.novanet.services()}


@pytest.mark.parametrize(
    ("node", "name"),
    [("controller-1", "network"), ("compute-1", "compute"), ("controller-1", "metadata")],
)
def test_daemon_restart_while_pinging(world: World, node: str, name: str) -> None:
    cloud, cirros, _ = world
    daemon = cloud.novanet.find(node, name)
    if not cloud.lab.process_running(node, name):
        pytest.skip(f"{daemon.program} is not running in this lab (not installed)")
    before = snapshot(cloud)
    pinger = Pinger(cloud, "controller-1", "10.0.0.2")
    assert wait_for(lambda: pinger.replies(), 5), "no reply before the restart"
    seconds = cloud.novanet.restart(daemon)
    restarted_at = time.monotonic()
    # Connectivity: the kernel state never went away, so replies keep coming.
    count = len(pinger.replies())
    assert wait_for(lambda: len(pinger.replies()) > count + 2, 5), "no replies after restart"
    after = snapshot(cloud)
    transmitted, received, _ = pinger.stop()
    print(f"{daemon.program} restarted in {seconds:.1f} s; ping {received}/{transmitted}")
    assert transmitted - received <= 1, f"lost {transmitted - received} of {transmitted} pings"

    # Nothing was rebuilt or duplicated: every node's iptables-save is the same.
    for host, listing in after["iptables"].items():
        assert listing == before["iptables"][host], host
        assert unique_rules(listing), host
    assert after == before  # one dnsmasq (same pids), hostsfile, instance namespaces
    assert len(after["dnsmasq"]) >= 1
    # Leases kept: the database and the guest agree.
    assert leased(cloud, "10.0.0.2")
    assert guest_address(cloud, cirros) == ["inet 10.0.0.2/24 brd 10.0.0.255 scope global eth0"]
    assert cloud.lab.process_running("compute-1", f"udhcpc-{cirros.instance.name}")
    if name == "metadata":
        iid, _, _ = cloud.instances.cloud_setup(cirros.instance, tries=5)
        assert iid == expect.instance_id_text(cirros.instance.id)
    cloud.novanet.wait_ready(timeout=SERVICE_DOWN_TIME + 10)
    print(f"every service up {time.monotonic() - restarted_at:.1f} s after the restart")


def test_dnsmasq_killed_comes_back(world: World) -> None:
    cloud, cirros, _ = world
    obs = cloud.observer
    setup = obs.setup()
    old = obs.dnsmasq_pids()
    assert old
    for pid in old:  # dnsmasq and its dhcp-script helper, as a crash would
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    def respawned() -> list[int]:
        pids = obs.dnsmasq_pids()
        main = obs.dnsmasq_pid(setup)
        return pids if pids and not set(pids) & set(old) and main in pids else []

    pids = wait_for(respawned, CHECK_INTERVAL + 5, interval=0.05)
    elapsed = time.monotonic() - killed_at
    print(f"dnsmasq back after {elapsed:.1f} s (dnsmasq_check_interval {CHECK_INTERVAL} s)")
    assert pids, "dnsmasq did not come back"  # within the wait's bound
    argv = checks.with_extras(
        "d", "dnsmasq", expect.dnsmasq_argv(setup), obs.dnsmasq_argv(setup), expect.DNSMASQ_EXTRAS
    )
    assert argv.status == checks.PASS, "\n".join(checks.render(argv))
    assert leased(cloud, "10.0.0.2")

    # The guest's renewal is answered by the new dnsmasq (--dhcp-authoritative).
    assert renewed(cloud, cirros), "renewal unanswered"
    assert guest_address(cloud, cirros) == ["inet 10.0.0.2/24 brd 10.0.0.255 scope global eth0"]
    # A new guest gets its first lease from it too.
    booted = cloud.instances.boot("after-dnsmasq", "compute-2")
    assert booted.lease.ip == booted.instance.address
    cloud.instances.delete("after-dnsmasq")


def test_rule_deleted_on_compute_is_restored(world: World) -> None:
    cloud, cirros, other = world
    obs = cloud.observer
    want = expect.compute_filter(obs.setup(), cirros.instance.id)
    assert obs.iptables("compute-1") == want
    chain = f"nova-compute-inst-{cirros.instance.id}"
    # Rule 5 of the chain is the seed's "-s 10.0.0.0/24 -j ACCEPT".
    cloud.lab.execute("compute-1", ["iptables", "-D", chain, "5"])
    assert obs.iptables("compute-1") != want
    deleted_at = time.monotonic()
    assert wait_for(lambda: obs.iptables("compute-1") == want, CHECK_INTERVAL + 5, 0.1)
    print(f"compute-1 rule restored after {time.monotonic() - deleted_at:.1f} s")
    assert unique_rules(obs.iptables("compute-1"))
    assert cloud.instances.ping(other.instance.name, cirros.instance.name).ok


def test_rules_deleted_on_controller_are_restored(world: World) -> None:
    cloud, cirros, _ = world
    obs = cloud.observer
    setup = obs.setup()
    want_filter, want_nat = expect.controller_filter(setup), expect.controller_nat(setup)
    cloud.lab.execute("controller-1", ["iptables", "-D", "nova-network-INPUT", "1"])
    cloud.lab.execute("controller-1", ["iptables", "-t", "nat", "-D", "nova-network-snat", "2"])
    assert obs.iptables("controller-1", "nat") != want_nat
    deleted_at = time.monotonic()

    def restored() -> bool:
        return (
            obs.iptables("controller-1") == want_filter
            and obs.iptables("controller-1", "nat") == want_nat
        )

    assert wait_for(restored, CHECK_INTERVAL + 5, 0.1)
    print(f"controller rules restored after {time.monotonic() - deleted_at:.1f} s")
    assert cloud.instances.ping(cirros.instance.name, "192.168.56.101").ok  # the SNAT is back


def test_broker_cut_and_restored(world: World) -> None:
    cloud, cirros, _ = world
    lab, ctl = cloud.lab, cloud.novanet.controller
    computes = [("compute-1", "novanet-compute"), ("compute-2", "novanet-compute")]
    assert lab.stop_process(ctl, relay.NAME)  # every AMQP connection of the lab drops
    cut_at = time.monotonic()
    try:
        # The agents' heartbeats travel over RPC: they stop, the agents show down.
        down = wait_for(
            lambda: all(services(cloud).get(c) == "down" for c in computes),
            SERVICE_DOWN_TIME + 8,
            0.5,
        )
        assert down, services(cloud)
        # The data path does not need the broker.
        assert cloud.instances.ping(ctl, cirros.instance.name).ok
    finally:
        lab.restart_process(ctl, relay.NAME)
    restored_at = time.monotonic()
    assert wait_for(lambda: set(services(cloud).values()) == {"up"}, 60, 0.5), services(cloud)
    up_at = time.monotonic()
    # Each daemon's RPC server reconnects on its own connection, with
    # oslo.messaging's back-off (1 s, growing by 2 s, at most
    # rabbit_interval_max = 30 s): it may consume again some seconds after
    # the heartbeats, which take a fresh connection, are back.
    daemons = cloud.novanet.running()
    serving = wait_for(lambda: all(cloud.novanet.serving(d) for d in daemons), 45, 0.2)
    assert serving, [d.queue for d in daemons if not cloud.novanet.serving(d)]
    print(
        f"broker cut for {restored_at - cut_at:.1f} s; every service up again "
        f"{up_at - restored_at:.1f} s after it came back, every RPC server consuming "
        f"after {time.monotonic() - restored_at:.1f} s"
    )
    booted = cloud.instances.boot("after-cut", "compute-2")
    assert cloud.instances.ping(ctl, booted.instance.name).ok
    cloud.instances.delete("after-cut")


def kernel_instances(cloud: Cloud, host: str) -> dict[str, Any]:
    """What the kernel of ``host`` holds per instance: netns, vnet MACs, chains, local rules."""
    links = netview.links(cloud.lab.topology.netns(host))
    listing = cloud.observer.iptables(host)
    return {
        "netns": sorted(cloud.lab.instances(host)),
        "vnet_macs": sorted(k.mac or "" for k in links if k.master == "br100" and k.name != "eth2"),
        "chains": sorted(ln.split()[1] for ln in listing if ln.startswith("-N nova-compute-inst-")),
        "local": sorted(ln for ln in listing if ln.startswith("-A nova-compute-local ")),
    }  # fmt: skip


def wanted_instances(instances: list[Instance], template: str = "instance-%08x") -> dict[str, Any]:
    return {
        "netns": sorted(template % i.id for i in instances),
        "vnet_macs": sorted("fe" + (i.mac or "")[2:] for i in instances),
        "chains": sorted(f"nova-compute-inst-{i.id}" for i in instances),
        "local": sorted(
            f"-A nova-compute-local -d {i.address}/32 -j nova-compute-inst-{i.id}"
            for i in instances
        ),
    }


@pytest.mark.parametrize("back", ["at once", "after the creates gave up"])
def test_compute_agent_killed_during_creates(world: World, back: str) -> None:
    """No half-plugged instance: each is fully plugged and filtered, or gone everywhere.

    "at once": the agent is back while the creates wait; it serves their
    queued requests. "after the creates gave up": novanet-network's
    instance_create_timeout (8 s here) passes first, it rolls the
    allocations back, and the returning agent must leave nothing of them.
    """
    cloud, _, other = world
    daemon = cloud.novanet.find("compute-2", "compute")
    outcomes: dict[str, str] = {}

    def create(name: str) -> None:
        try:
            cloud.instances.create(name, "compute-2")
            outcomes[name] = "created"
        except exception.NovanetError as exc:
            outcomes[name] = "failed: " + str(exc).splitlines()[-1][-80:]

    record = cloud.lab.process("compute-2", "compute")
    assert record is not None
    with open(record.log) as handle:
        seen = len(handle.read())

    def plugging() -> bool:
        with open(record.log) as handle:
            return "plugged instance-" in handle.read()[seen:]

    threads = [threading.Thread(target=create, args=(f"burst-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    # kill -9 as soon as the agent plugs the first one: the others are in flight.
    assert wait_for(plugging, 20, 0.01), "the agent never plugged anything"
    assert cloud.lab.kill_process("compute-2", "compute")
    assert wait_for(lambda: not cloud.lab.process_running("compute-2", "compute"), 5)
    if back != "at once":
        for thread in threads:
            thread.join(timeout=60)
    cloud.novanet.start_daemon(daemon)
    cloud.novanet.wait_ready([daemon], timeout=30)
    for thread in threads:
        thread.join(timeout=60)
    print(f"creates ({back}):", outcomes)
    assert len(outcomes) == 4
    if back != "at once":
        assert list(outcomes.values()).count("created") < 4  # the timeout did strike

    def consistent() -> bool:
        mine = [i for i in cloud.instances.all() if i.host == "compute-2"]
        return kernel_instances(cloud, "compute-2") == wanted_instances(mine)

    # The agent converges at its first resync after the restart; allow one more pass.
    assert wait_for(consistent, 15, 0.5), (
        kernel_instances(cloud, "compute-2"),
        wanted_instances([i for i in cloud.instances.all() if i.host == "compute-2"]),
    )
    instances = cloud.instances.all()
    created = {i.display_name for i in instances if i.display_name.startswith("burst-")}
    assert created == {n for n, o in outcomes.items() if o == "created"}
    assert all(i.state == "active" for i in instances), instances
    # The database agrees with itself: each allocated address belongs to a live instance,
    # and the hostsfile lists exactly the instances.
    uuids = {i.uuid for i in instances}
    allocated = [r for r in cloud.novanet.manage_json("fixed", "list") if r["allocated"]]
    assert sorted(r["instance_uuid"] for r in allocated) == sorted(uuids)
    hosts = cloud.observer.hostsfile(cloud.observer.setup())
    assert sorted(ln.split(",")[2] for ln in hosts) == sorted(i.address or "" for i in instances)
    assert unique_rules(cloud.observer.iptables("compute-2"))
    assert cloud.instances.ping("controller-1", other.instance.name).ok
    for name in created:
        cloud.instances.delete(name)
    assert cloud.lab.instances("compute-2") == [other.instance.name]


def test_bridges_deleted_by_hand_come_back_with_every_device(world: World) -> None:
    """issue 11: `ip link del br100` on the controller and on a compute host.

    Both come back by themselves (bridge_check_interval), with every device
    unchanged (same ifindex), dnsmasq answering again and every instance
    reachable; then again with the compute agent restarted after the deletion.
    """
    cloud, cirros, other = world
    obs = cloud.observer
    setup = obs.setup()
    ctl = cloud.novanet.controller
    ports = {node: bridge_ports(cloud, node) for node in (ctl, "compute-1")}
    assert "eth2" in ports[ctl] and len(ports["compute-1"]) == 2  # eth2 and cirros' vnet
    before = snapshot(cloud)

    def repaired(old_dnsmasq: int | None) -> bool:
        now = {node: bridge_ports(cloud, node) for node in ports}
        dnsmasq = obs.dnsmasq_pid(setup)
        return now == ports and gateway_first(cloud, ctl) and dnsmasq not in (None, old_dnsmasq)

    def serving() -> None:
        assert renewed(cloud, cirros), "the guest's renewal was not answered"
        assert guest_address(cloud, cirros) == ["inet 10.0.0.2/24 brd 10.0.0.255 scope global eth0"]
        assert cloud.instances.ping(ctl, cirros.instance.name).ok
        assert cloud.instances.ping(other.instance.name, cirros.instance.name).ok
        after = snapshot(cloud)
        assert after["iptables"] == before["iptables"]
        assert after["hostsfile"] == before["hostsfile"]
        assert after["instances"] == before["instances"]

    old = obs.dnsmasq_pid(setup)
    for node in ports:
        cloud.lab.execute(node, ["ip", "link", "del", "br100"])
    deleted_at = time.monotonic()
    assert wait_for(lambda: repaired(old), CHECK_INTERVAL + 20, 0.2), (
        {node: bridge_ports(cloud, node) for node in ports},
        ports,
    )
    print(f"both bridges back after {time.monotonic() - deleted_at:.1f} s")
    serving()

    # Deleted while the compute agent is down: its start re-attaches, replaces nothing.
    daemon = cloud.novanet.find("compute-1", "compute")
    assert cloud.lab.stop_process("compute-1", "compute")
    cloud.lab.execute("compute-1", ["ip", "link", "del", "br100"])
    cloud.novanet.start_daemon(daemon)
    cloud.novanet.wait_ready([daemon], timeout=30)
    assert wait_for(lambda: bridge_ports(cloud, "compute-1") == ports["compute-1"], 20, 0.2)
    serving()
