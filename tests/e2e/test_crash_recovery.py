"""novanet-network killed (-9) in the middle of creates and deletes, in the seed's lab.

The issue's probe: kill -9 of novanet-network during 8 parallel creates left
instances in ``building`` for ever, with an address, a hostsfile line and a
plugged namespace, while every caller had been told the create failed.
Here the compute agent of compute-2 is frozen (SIGSTOP) while the creates
are in flight, so that all 8 are exactly half-made when novanet-network dies;
the agent then thaws and plugs them from its queue, as in the probe. After
the restart, novanet-network must roll each back everywhere.

The same lab checks the smaller faults the issue lists for a running cloud:
a never-leased address free at once after delete, unique hostnames in the
hostsfile, and no secret readable by another local user.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from novanet import exception
from novanet.lab.cloud import Cloud
from novanet.lab.instances import Booted
from tests.e2e.helpers import E2E, boot_seed_instances, running_cloud, wait_for
from tests.e2e.test_faults import kernel_instances, wanted_instances

pytestmark = E2E

# Long enough for the creates to be in flight while the agent is frozen,
# short enough for their callers to give up within the test.
CONF = {"service_down_time": "30", "instance_create_timeout": "15"}
BURST = 8

World = tuple[Cloud, Booted, Booted]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with running_cloud(CONF) as cloud:
        cirros, other = boot_seed_instances(cloud)
        yield cloud, cirros, other


def rows(cloud: Cloud) -> dict[str, dict[str, Any]]:
    return {r["display_name"]: r for r in cloud.novanet.manage_json("instance", "list")}


def hostsfile(cloud: Cloud) -> list[str]:
    return cloud.observer.hostsfile(cloud.observer.setup())


def associated(cloud: Cloud) -> dict[str, str]:
    """address -> instance uuid of every address not free."""
    return {
        r["address"]: r["instance_uuid"]
        for r in cloud.novanet.manage_json("fixed", "list")
        if r["instance_uuid"] or r["allocated"] or r["leased"]
    }


def consistent(cloud: Cloud, host: str) -> bool:
    mine = [i for i in cloud.instances.all() if i.host == host]
    return kernel_instances(cloud, host) == wanted_instances(mine)


def kill_network(cloud: Cloud) -> None:
    ctl = cloud.novanet.controller
    assert cloud.lab.kill_process(ctl, "network")  # SIGKILL: no cleanup of any kind
    assert wait_for(lambda: not cloud.lab.process_running(ctl, "network"), 10)


def restart_network(cloud: Cloud) -> None:
    daemon = cloud.novanet.find(cloud.novanet.controller, "network")
    cloud.novanet.start_daemon(daemon)
    cloud.novanet.wait_ready([daemon], timeout=60, heartbeats=False)


def test_kill_9_during_parallel_creates_leaves_nothing_half_made(world: World) -> None:
    cloud, cirros, other = world
    before = {"rows": rows(cloud), "hosts": hostsfile(cloud), "fixed": associated(cloud)}
    names = [f"burst-{i}" for i in range(BURST)]
    outcomes: dict[str, str] = {}

    def create(name: str) -> None:
        try:
            cloud.instances.create(name, "compute-2")
            outcomes[name] = "created"
        except exception.NovanetError as exc:
            outcomes[name] = "failed: " + str(exc).splitlines()[-1][-100:]

    assert cloud.lab.kill_process("compute-2", "compute", signal.SIGSTOP)
    threads = [threading.Thread(target=create, args=(name,)) for name in names]
    try:
        for thread in threads:
            thread.start()

        def all_building() -> bool:
            now = rows(cloud)
            return all(now.get(n, {}).get("state") == "building" and now[n]["address"] for n in names)

        assert wait_for(all_building, 60, 0.2), rows(cloud)
        assert wait_for(lambda: len(hostsfile(cloud)) == len(before["hosts"]) + BURST, 10)
        kill_network(cloud)
    finally:
        cloud.lab.kill_process("compute-2", "compute", signal.SIGCONT)
    # The agent plugs what it was asked to: the half-made instances.
    half = rows(cloud)
    burst_netns = {half[n]["name"] for n in names}
    assert wait_for(lambda: burst_netns <= set(cloud.lab.instances("compute-2")), 30)
    assert {half[n]["state"] for n in names} == {"building"}
    for thread in threads:
        thread.join(timeout=120)
    print("callers:", outcomes)
    assert sorted(outcomes) == names and not [o for o in outcomes.values() if o == "created"]

    restart_network(cloud)

    assert wait_for(lambda: rows(cloud) == before["rows"], 30, 0.5), rows(cloud)
    assert hostsfile(cloud) == before["hosts"]
    assert associated(cloud) == before["fixed"]  # never leased: every address free at once
    assert wait_for(lambda: consistent(cloud, "compute-2"), 30, 0.5), kernel_instances(cloud, "compute-2")
    assert cloud.lab.instances("compute-2") == [other.instance.name]
    # A retry makes exactly one instance per name.
    retried = cloud.instances.boot("burst-0", "compute-2")
    assert [r for r in rows(cloud) if r.startswith("burst-")] == ["burst-0"]
    assert cloud.instances.ping("controller-1", retried.instance.name).ok
    cloud.instances.delete("burst-0")
    assert cloud.instances.ping("controller-1", cirros.instance.name).ok


def test_kill_9_during_a_delete_finishes_it(world: World) -> None:
    cloud, _, _ = world
    victim = cloud.instances.create("victim", "compute-2")
    before = hostsfile(cloud)
    outcome: list[str] = []

    def delete() -> None:
        try:
            cloud.novanet.manage("instance", "delete", victim.uuid)
            outcome.append("deleted")
        except exception.NovanetError as exc:
            outcome.append(f"failed: {exc}")

    assert cloud.lab.kill_process("compute-2", "compute", signal.SIGSTOP)
    deleting = threading.Thread(target=delete)
    try:
        deleting.start()
        assert wait_for(lambda: rows(cloud).get("victim", {}).get("state") == "deleting", 30, 0.2)
        kill_network(cloud)
    finally:
        cloud.lab.kill_process("compute-2", "compute", signal.SIGCONT)
    deleting.join(timeout=120)
    assert outcome and outcome[0].startswith("failed")
    restart_network(cloud)
    assert wait_for(lambda: "victim" not in rows(cloud), 30, 0.5)
    assert len(hostsfile(cloud)) == len(before) - 1
    assert victim.address not in associated(cloud)
    assert wait_for(lambda: consistent(cloud, "compute-2"), 30, 0.5)


def test_a_never_leased_address_is_free_as_soon_as_its_instance_is_deleted(world: World) -> None:
    cloud, _, _ = world
    brief = cloud.instances.create("brief", "compute-2")  # no guest ever asks for a lease
    assert associated(cloud)[brief.address or ""] == brief.uuid
    cloud.instances.delete("brief")
    assert brief.address not in associated(cloud)  # not held for fixed_ip_disassociate_timeout


def test_two_instances_with_one_name_get_distinct_hostnames(world: World) -> None:
    cloud, _, _ = world
    a = cloud.instances.create("twin", "compute-2")
    b = cloud.instances.create("twin", "compute-2")
    lines = {ln.split(",")[2]: ln.split(",")[1] for ln in hostsfile(cloud)}
    assert lines[a.address or ""] == "twin.novalocal"
    assert lines[b.address or ""] == f"{b.name}.novalocal"
    assert len(set(lines.values())) == len(lines)
    for inst in (a, b):
        cloud.instances.delete(inst.uuid)


def test_no_secret_in_the_lab_is_readable_by_another_user(world: World) -> None:
    cloud, _, _ = world
    ctl = cloud.novanet.controller
    node_dir = cloud.lab.paths.node_dir(ctl)
    secrets = [cloud.lab.paths.nova_conf(ctl)] + [
        os.path.join(node_dir, name)
        for name in ("novanet.sqlite", "novanet.sqlite-wal", "novanet.sqlite-shm")
        if os.path.exists(os.path.join(node_dir, name))
    ]
    assert len(secrets) >= 2
    for path in secrets:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode & 0o007 == 0, f"{path} is {mode:04o}"
        read = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat", path],
            capture_output=True, timeout=30,
        )
        assert read.returncode != 0 and b"Permission denied" in read.stderr, path
