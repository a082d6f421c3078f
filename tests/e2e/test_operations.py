"""Operating novanet in the lab: service list/disable/enable, request ids across hosts, SIGHUP.

One lab for the module (novanet-network and novanet-metadata on
controller-1, novanet-compute on compute-1 and compute-2).
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from novanet import exception
from novanet.lab.cloud import Cloud
from tests.e2e.helpers import E2E, running_cloud, wait_for

pytestmark = E2E


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with running_cloud(metadata=True) as made:
        yield made


def manage(cloud: Cloud, *args: str, check: bool = True) -> tuple[str, str]:
    """novanet-manage on the controller: (stdout, stderr)."""
    novanet = cloud.novanet
    argv = [novanet.program("novanet-manage"), "--flagfile", novanet.conf(novanet.controller), *args]
    try:
        return cloud.lab.execute(novanet.controller, argv, check=check, timeout=90, log_errors=False)
    except exception.ProcessExecutionError as exc:
        return exc.stdout, exc.stderr


def test_service_list_shows_every_daemon(cloud: Cloud) -> None:
    rows = json.loads(manage(cloud, "service", "list", "--format", "json")[0])
    seen = {(r["host"], r["binary"]): (r["state"], r["status"]) for r in rows}
    assert seen == {
        ("controller-1", "novanet-network"): ("up", "enabled"),
        ("controller-1", "novanet-metadata"): ("up", "enabled"),
        ("compute-1", "novanet-compute"): ("up", "enabled"),
        ("compute-2", "novanet-compute"): ("up", "enabled"),
    }


def test_a_disabled_compute_host_gets_no_new_instance(cloud: Cloud) -> None:
    assert manage(cloud, "service", "disable", "compute-2", "novanet-compute")[0] == (
        "novanet-compute on compute-2: disabled\n"
    )
    try:
        before = manage(cloud, "instance", "list", "--format", "json")[0]
        out, err = manage(cloud, "instance", "create", "--name", "nope", "--host", "compute-2", check=False)
        assert out == ""
        assert err == (
            "novanet-manage: error: compute host compute-2 is disabled: it takes no new instances "
            "('novanet-manage service enable compute-2 novanet-compute' to undo)\n"
        )
        assert manage(cloud, "instance", "list", "--format", "json")[0] == before
        # compute-1 still takes instances
        cloud.instances.create("yes", "compute-1")
    finally:
        manage(cloud, "service", "enable", "compute-2", "novanet-compute")
    cloud.instances.create("again", "compute-2")


def test_one_request_id_across_controller_and_compute_logs(cloud: Cloud) -> None:
    out, err = manage(
        cloud, "--debug", "instance", "create", "--name", "traced", "--host", "compute-1",
        "--vif-type", "netns",
    )
    (request_id,) = re.findall(r"request id (req-[0-9a-f-]{36})", err)
    novanet = cloud.novanet
    controller = Path(novanet.log_of(novanet.find("controller-1", "network"))).read_text()
    compute = Path(novanet.log_of(novanet.find("compute-1", "compute"))).read_text()
    assert re.search(rf"\[{request_id}\]: instance instance-\S+ \(traced\) on compute-1", controller)
    assert re.search(rf"\[{request_id}\]: plugged instance-\S+ ", compute)
    other = Path(novanet.log_of(novanet.find("compute-2", "compute"))).read_text()
    assert request_id not in other


def test_sighup_stops_no_daemon(cloud: Cloud) -> None:
    novanet = cloud.novanet
    daemons = novanet.running()
    assert len(daemons) == 4
    for daemon in daemons:
        record = cloud.lab.process(daemon.node, daemon.name)
        assert record is not None
        os.kill(record.pid, signal.SIGHUP)
    for daemon in daemons:
        wait_for(
            lambda d=daemon: "SIGHUP: re-read" in Path(novanet.log_of(d)).read_text(),
            timeout=20,
        )
    assert novanet.running() == daemons
    novanet.wait_ready(daemons, timeout=60)
    cloud.instances.create("after-hup", "compute-2")
