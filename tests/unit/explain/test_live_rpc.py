"""live_trace over RPC (network 1.5, compute 1.3): payloads checked, then the node's part run."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from novanet.compute.endpoint import ComputeEndpoint
from novanet.exception import BadRequest
from novanet.explain import live
from novanet.network.endpoint import NetworkEndpoint
from tests.unit.compute.test_manager import CIRROS, make_agent
from tests.unit.explain.test_live import Recorder
from tests.unit.network.test_endpoint import call

PROBE = {"src": "10.0.0.1", "dst": "10.0.0.2", "proto": "icmp"}
GOOD: dict[str, Any] = {"probe": PROBE, "seconds": 2, "send": True, "delay": 0.5}


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(live.processutils, "execute", rec)
    monkeypatch.setattr(live.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(live.os.path, "exists", lambda path: True)
    return rec


@pytest.fixture
def agent(tmp_path):  # type: ignore[no-untyped-def]
    agent = make_agent(tmp_path)
    agent.manager.init_host()
    agent.manager.resync([])
    agent.manager.setup_instance(CIRROS)
    return agent


BAD = [
    ({"probe": {**PROBE, "src": "10.0.0"}}, "probe.src '10.0.0' is not an IPv4 address"),
    ({"probe": {**PROBE, "dst": None}}, "probe.dst"),
    ({"probe": {**PROBE, "proto": "sctp"}}, "probe.proto 'sctp' is not one of icmp, tcp, udp"),
    ({"probe": {**PROBE, "proto": "tcp"}}, "a tcp probe needs dport"),
    ({"probe": {**PROBE, "proto": "tcp", "dport": 0}}, "probe.dport must be at least 1"),
    ({"probe": {**PROBE, "proto": "udp", "dport": 65536}}, "probe.dport 65536 is out of range"),
    ({"probe": {**PROBE, "dport": 22}}, "an icmp probe has no ports"),
    ({"probe": {**PROBE, "via": "x"}}, "unexpected key(s): via"),
    ({"probe": "10.0.0.1->10.0.0.2"}, "probe must be an object"),
    ({"seconds": 0}, "seconds 0 is out of range (1 to 30)"),
    ({"seconds": 31}, "seconds 31 is out of range"),
    ({"seconds": "3"}, "seconds must be a number"),
    ({"seconds": True}, "seconds must be a number"),
    ({"send": "yes"}, "send must be true or false"),
    ({"delay": -1}, "delay -1 is out of range"),
    ({"delay": 2}, "delay 2 is out of range (0 to 1.5)"),
    ({"verbose": True}, "unexpected argument(s): verbose"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_payloads_run_nothing(
    controller, agent, recorder: Recorder, change: dict[str, Any], message: str
) -> None:  # type: ignore[no-untyped-def]
    for method in (
        NetworkEndpoint(controller.manager).live_trace,
        ComputeEndpoint(agent.manager, lambda: None).live_trace,
    ):
        with pytest.raises(BadRequest) as caught:
            call(method, **{**GOOD, **change})
        assert message in str(caught.value)
    assert recorder.calls == []


def test_network_sends_after_the_delay(controller, recorder: Recorder) -> None:  # type: ignore[no-untyped-def]
    got = call(NetworkEndpoint(controller.manager).live_trace, **GOOD)
    assert len(got["lines"]) == 2 and got["lines"][0].startswith("trace id 1a inet ")
    commands = recorder.commands()
    assert "ping -n -c 1 -W 1 -I 10.0.0.1 10.0.0.2" in commands
    assert commands[-1].startswith("nft delete table inet novanet_trace_")


def test_watching_sends_nothing(controller, recorder: Recorder) -> None:  # type: ignore[no-untyped-def]
    probe = {"src": "10.0.0.1", "dst": "10.0.0.2", "proto": "tcp", "dport": 22}
    got = call(
        NetworkEndpoint(controller.manager).live_trace,
        probe=probe, seconds=3, send=False, delay=0,
    )  # fmt: skip
    assert len(got["lines"]) == 2
    commands = recorder.commands()
    assert "timeout 3 nft monitor trace" in commands
    assert not any(c.startswith(("ping", "socat")) for c in commands), commands


def test_compute_sends_from_the_instance_namespace_and_traces_the_host(
    agent, recorder: Recorder
) -> None:  # type: ignore[no-untyped-def]
    endpoint = ComputeEndpoint(agent.manager, lambda: None)
    probe = {"src": "10.0.0.2", "dst": "10.0.0.1", "proto": "icmp"}
    got = call(endpoint.live_trace, **{**GOOD, "probe": probe}, instance_uuid=CIRROS.uuid)
    prefixes = [line.split(" ")[0] for line in got["lines"]]
    assert prefixes == ["[instance-00000009]"] * 2 + ["[host]"] * 2
    commands = recorder.commands()
    assert "ip netns exec instance-00000009 ping -n -c 1 -W 1 -I 10.0.0.2 10.0.0.1" in commands
    assert "timeout 2 nft monitor trace" in commands  # the host's own namespace
    deletes = [c for c in commands if " delete table inet " in c]
    assert len(deletes) == 2 and commands[-2:] == deletes


def test_compute_refuses_what_it_cannot_send_from(agent, recorder: Recorder) -> None:  # type: ignore[no-untyped-def]
    endpoint = ComputeEndpoint(agent.manager, lambda: None)
    with pytest.raises(BadRequest, match="is not on compute-1"):
        call(endpoint.live_trace, **GOOD, instance_uuid="00000000-0000-0000-0000-000000000001")
    with pytest.raises(BadRequest, match="is not instance instance-00000009's address 10.0.0.2"):
        call(endpoint.live_trace, **GOOD, instance_uuid=CIRROS.uuid)
    with pytest.raises(BadRequest, match="is not a UUID"):
        call(endpoint.live_trace, **GOOD, instance_uuid="vm1")
    tap = dataclasses.replace(CIRROS, uuid="5357143d-66f5-446c-a82f-86648ebb3843", id=10,
                              name="instance-0000000a", vif_type="tap", address="10.0.0.3",
                              mac="fa:16:3e:2c:e8:ed")  # fmt: skip
    agent.manager.setup_instance(tap)
    probe = {**PROBE, "src": "10.0.0.3"}
    with pytest.raises(BadRequest, match="has a tap VIF .a VM.: the agent cannot send"):
        call(endpoint.live_trace, **{**GOOD, "probe": probe}, instance_uuid=tap.uuid)
    assert not any("ping" in c or "nft" in c for c in recorder.commands())
