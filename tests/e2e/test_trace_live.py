"""``novanet-manage trace --live`` (issue 15 item 5): the kernel's own trace beside the prediction.

One lab with the defaults (allow_same_net_traffic on, the default group
without rules) and one instance vm1 (netns VIF) on compute-1:

- the seed's case, compute-1 pinging vm1 ("Operation not permitted"): the
  prediction says dropped in compute-1's OUTPUT by nova-compute-sg-fallback,
  and compute-1's kernel trace shows that drop verdict in that chain;
- the controller pinging vm1 (same network): delivered, the controller's
  kernel traced the request and the reply, and no node traced a drop;
- vm1 pinging the controller: the probe is sent from vm1's namespace by
  compute-1's agent, and both compute-1 and the controller trace it.

No tracing table is left on any node afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from novanet.lab.cloud import Cloud
from novanet.lab.instances import Instance, run_status
from tests.e2e.helpers import E2E, running_cloud

pytestmark = E2E

NODES = ("controller-1", "compute-1", "compute-2")


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Cloud, Instance]]:
    with running_cloud(metadata=False) as cloud:
        args = ["instance", "create", "--name", "vm1", "--host", "compute-1",
                "--vif-type", "netns"]  # fmt: skip
        inst = Instance.from_row(cloud.novanet.manage_json(*args)[0])
        cloud.instances.start_guest(inst)
        yield cloud, inst


def trace(cloud: Cloud, *args: str) -> tuple[str, int]:
    """novanet-manage trace on the controller: (stdout, exit code)."""
    novanet = cloud.novanet
    argv = [novanet.program("novanet-manage"), "--flagfile", novanet.conf("controller-1"),
            "trace", *args]  # fmt: skip
    out, err, code = run_status(cloud.lab.execute, "controller-1", argv, timeout=120)
    print(f"$ novanet-manage trace {' '.join(args)}  (exit {code})\n{out}{err}")
    return out, code


def live_json(cloud: Cloud, *args: str) -> tuple[dict[str, Any], int]:
    out, code = trace(cloud, *args, "--live", "--format", "json")
    data: dict[str, Any] = json.loads(out)
    return data, code


def no_tracing_table_left(cloud: Cloud) -> None:
    for node in NODES:
        out, _ = cloud.lab.execute(node, ["nft", "list", "tables"])
        assert "novanet_trace" not in out, (node, out)


def test_the_seeds_drop_is_the_kernels(lab: tuple[Cloud, Instance]) -> None:
    cloud, _ = lab
    data, code = live_json(cloud, "compute-1", "vm1", "--proto", "icmp")
    assert code == 1 and data["verdict"] == "dropped"
    assert data["hops"][-1]["chain"] == "nova-compute-sg-fallback"
    drops = [line for line in data["live"]["compute-1"] if "(verdict drop)" in line]
    assert drops and all(" ip filter nova-compute-sg-fallback rule " in d for d in drops), data
    assert data["live_drops"] == ["compute-1 ip filter nova-compute-sg-fallback"]
    # the probe never left compute-1: the others traced nothing of it
    assert data["live"]["controller-1"] == [] and data["live"]["compute-2"] == []
    # the text form: the kernel's lines after the prediction, the drop named at the end
    out, code = trace(cloud, "compute-1", "vm1", "--live")
    assert code == 1
    lines = out.splitlines()
    assert lines.index("kernel trace (nft monitor trace):") > lines.index("request:")
    assert lines[-1] == "  => kernel: verdict drop at compute-1 ip filter nova-compute-sg-fallback"
    no_tracing_table_left(cloud)


def test_a_delivered_ping_traced_without_a_drop(lab: tuple[Cloud, Instance]) -> None:
    cloud, inst = lab
    data, code = live_json(cloud, "controller-1", "vm1")
    assert code == 0 and data["verdict"] == "delivered"
    controller = data["live"]["controller-1"]
    assert any("echo-request" in line and "out packet" in line for line in controller), data
    assert any("echo-reply" in line and "pre packet" in line for line in controller), data
    # compute-1 bridges the request to vm1 (br_netfilter: iptables FORWARD sees it)
    assert any(f"ip daddr {inst.address}" in line for line in data["live"]["compute-1"]), data
    assert data["live_drops"] == [] and data["live_missing"] == {}
    no_tracing_table_left(cloud)


def test_an_instance_sends_from_its_namespace(lab: tuple[Cloud, Instance]) -> None:
    cloud, inst = lab
    out, code = trace(cloud, "vm1", "controller-1", "--live")
    assert code == 0
    live = out[out.index("kernel trace (nft monitor trace):") :].splitlines()
    # compute-1's lines: vm1's namespace (the probe leaving) and the host's
    assert any(line.startswith(f"  compute-1      [{inst.name}] trace id ") for line in live)
    assert any(line.startswith("  compute-1      [host] trace id ") for line in live)
    assert any(
        line.startswith("  controller-1   trace id ") and "echo-request" in line for line in live
    ), out
    assert live[-1] == "  => kernel: no drop verdict in the trace"
    no_tracing_table_left(cloud)


def test_an_outside_source_is_refused_and_nothing_sent(lab: tuple[Cloud, Instance]) -> None:
    cloud, _ = lab
    out, code = trace(cloud, "192.168.56.101", "vm1", "--live")
    assert code == 2 and out == ""
