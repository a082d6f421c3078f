"""RPC payloads: anything malformed is refused with BadRequest and changes nothing."""

from __future__ import annotations

import pytest

from novanet.compute.endpoint import ComputeEndpoint
from novanet.db import instances
from novanet.exception import BadRequest
from novanet.ipam import queries
from novanet.network.endpoint import NetworkEndpoint

GOOD = {"display_name": "vm", "host": "compute-1", "vif_type": "tap"}


def call(method, **kw):
    """Call an endpoint method as the RPC dispatcher does (it unwraps expected errors)."""
    import oslo_messaging

    try:
        return method({}, **kw)
    except oslo_messaging.ExpectedException as wrapped:
        raise wrapped.exc_info[1] from None


def _nothing_allocated(db):
    return instances.list_instances(db) == [] and not any(r.instance_uuid for r in queries.list_fixed_ips(db))


@pytest.mark.parametrize(
    "change",
    [
        {"display_name": ""},
        {"display_name": 42},
        {"display_name": "x" * 256},
        {"host": "bad host!"},
        {"host": None},
        {"vif_type": "macvtap"},
        {"mac": "zz:zz"},
        {"mac": "01:00:5e:00:00:01"},
        {"user_data": b"bytes"},
        {"user_data": "x" * 70000},
        {"public_key": ["list"]},
        {"surprise": 1},
    ],
)
def test_create_instance_payloads(controller, change):
    controller.manager.init_host()
    endpoint = NetworkEndpoint(controller.manager)
    with pytest.raises(BadRequest):
        call(endpoint.create_instance, **{**GOOD, **change})
    assert _nothing_allocated(controller.db)
    assert controller.compute.plugged == {}


def test_create_instance_ok_and_lifecycle_through_endpoint(controller):
    controller.manager.init_host()
    endpoint = NetworkEndpoint(controller.manager)
    created = call(endpoint.create_instance, **GOOD, mac="FA:16:3E:2C:E8:EC")
    assert created["mac"] == "fa:16:3e:2c:e8:ec" and created["address"] == "10.0.0.2"
    info = call(endpoint.get_instance_nw_info, instance_uuid=created["uuid"])
    assert info["devname"] == "vnet0"
    assert call(endpoint.lease_fixed_ip, address="10.0.0.2", mac="fa:16:3e:2c:e8:ec") is True
    with pytest.raises(BadRequest):
        call(endpoint.lease_fixed_ip, address="10.0.0.999", mac="fa:16:3e:2c:e8:ec")
    with pytest.raises(BadRequest):
        call(endpoint.delete_instance, instance_uuid="not-a-uuid")
    call(endpoint.delete_instance, instance_uuid=created["uuid"])
    assert instances.list_instances(controller.db) == []


def test_report_state_with_garbage_is_ignored(controller):
    endpoint = NetworkEndpoint(controller.manager)
    call(endpoint.report_state, host="bad host", binary="x", topic="y")
    call(endpoint.report_state, host="compute-2", binary="novanet-compute", topic="compute")
    from novanet.db import services

    assert {s.host for s in services.list_services(controller.db)} == {"compute-1", "compute-2"}


@pytest.mark.parametrize(
    "instance",
    [
        None,
        "string",
        {},
        {"id": "9"},
        {"id": 9, "uuid": "5357143d-66f5-446c-a82f-86648ebb3842", "name": "../../etc", "display_name": "c",
         "host": "compute-1", "vif_type": "netns", "mac": "fa:16:3e:2c:e8:ec", "address": "10.0.0.2",
         "cidr": "10.0.0.0/24", "dhcp_server": "10.0.0.1", "bridge": "br100"},
        {"id": 9, "uuid": "5357143d-66f5-446c-a82f-86648ebb3842", "name": "instance-00000009", "display_name": "c",
         "host": "compute-2", "vif_type": "netns", "mac": "fa:16:3e:2c:e8:ec", "address": "10.0.0.2",
         "cidr": "10.0.0.0/24", "dhcp_server": "10.0.0.1", "bridge": "br100"},
    ],
)
def test_compute_payloads(tmp_path, instance):
    from tests.unit.compute.test_manager import make_agent

    agent = make_agent(tmp_path)
    agent.manager.init_host()
    agent.manager.resync([])
    before = agent.iptables.listing("filter")
    endpoint = ComputeEndpoint(agent.manager, resync=lambda: None)
    with pytest.raises(BadRequest):
        call(endpoint.setup_instance, instance=instance)
    assert agent.iptables.listing("filter") == before
    assert agent.ip.links("vnet") == [] and agent.ip.list_netns() == []


@pytest.mark.parametrize(
    ("method", "kw"),
    [
        ("associate_floating_ip", {"address": "300.1.1.1", "instance_uuid": "x"}),
        ("associate_floating_ip", {"address": "192.168.56.225", "instance_uuid": "not-a-uuid"}),
        ("associate_floating_ip", {"address": "192.168.56.225",
                                   "instance_uuid": "7b1c4f8e-0000-4000-8000-000000000000", "force": "yes"}),
        ("associate_floating_ip", {"address": "192.168.56.225", "extra": 1}),
        ("disassociate_floating_ip", {"address": ["192.168.56.225"]}),
        ("create_instance", {**GOOD, "floating_ip": "nope"}),
    ],
)
def test_floating_payloads(controller, method, kw):
    from novanet.db import floating

    floating.create_range(controller.db, "192.168.56.224/28", "nova", "eth1")
    controller.manager.init_host()
    endpoint = NetworkEndpoint(controller.manager)
    with pytest.raises(BadRequest):
        call(getattr(endpoint, method), **kw)
    assert all(r.fixed_address is None for r in floating.list_floating(controller.db))
    assert _nothing_allocated(controller.db)
