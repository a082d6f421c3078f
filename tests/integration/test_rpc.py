"""The RPC APIs over the real RabbitMQ: calls, casts, errors that keep their class."""

from __future__ import annotations

import threading
import time

import pytest

from novanet import conf as novanet_conf
from novanet.compute.endpoint import ComputeEndpoint
from novanet.exception import BadRequest, NotFound, ServiceUnavailable
from novanet.network.endpoint import NetworkEndpoint
from novanet.rpc import transport as rpc
from novanet.rpc.compute_api import ComputeAPI
from novanet.rpc.network_api import NetworkAPI
from tests.lib import broker
from tests.unit.compute.test_manager import CIRROS, make_agent

pytestmark = pytest.mark.rabbit


@pytest.fixture
def transport(vhost):
    made = broker.transport(vhost)
    yield made
    made.cleanup()


def _serve(transport, topic, server, endpoints):
    srv = rpc.get_server(transport, topic, server, endpoints)
    srv.start()
    return srv


def test_network_api_roundtrip_and_errors(transport, controller):
    controller.manager.init_host()
    srv = _serve(transport, "network", "controller-1", [NetworkEndpoint(controller.manager)])
    try:
        api = NetworkAPI(transport, timeout=10)
        created = api.create_instance(display_name="cirros", host="compute-1", vif_type="netns", mac="fa:16:3e:2c:e8:ec")
        assert created["address"] == "10.0.0.2" and created["devname"] == "vnet0"
        assert api.get_host_instances(host="compute-1")[0]["uuid"] == created["uuid"]
        with pytest.raises(BadRequest, match="vif_type"):
            api.create_instance(display_name="x", host="compute-1", vif_type="macvtap")
        with pytest.raises(NotFound, match="compute-9"):
            api.create_instance(display_name="x", host="compute-9", vif_type="tap")
        api.report_state(host="compute-2", binary="novanet-compute", topic="compute")
        api.delete_instance(instance_uuid=created["uuid"])
        assert api.get_host_instances(host="compute-1") == []
        deadline = time.monotonic() + 5
        from novanet.db import services

        while {s.host for s in services.list_services(controller.db)} != {"compute-1", "compute-2"}:
            assert time.monotonic() < deadline, "the report_state cast never arrived"
            time.sleep(0.05)
    finally:
        srv.stop()
        srv.wait()


def test_compute_api_reaches_the_named_host_only(transport, tmp_path):
    agents = {}
    servers = []
    for host in ("compute-1", "compute-2"):
        agent = make_agent(tmp_path / host, host=host)
        agent.manager.init_host()
        agent.manager.resync([])
        agents[host] = agent
        servers.append(_serve(transport, "compute", host, [ComputeEndpoint(agent.manager, resync=lambda: None)]))
    try:
        api = ComputeAPI(transport, timeout=10)
        assert api.setup_instance(CIRROS) == {"devname": "vnet0"}
        assert agents["compute-1"].ip.link("vnet0") is not None
        assert agents["compute-2"].ip.link("vnet0") is None
        api.teardown_instance(CIRROS)
        assert agents["compute-1"].ip.link("vnet0") is None
    finally:
        for srv in servers:
            srv.stop()
            srv.wait()


def test_call_to_an_absent_host_times_out(transport):
    import oslo_messaging

    api = ComputeAPI(transport)
    with pytest.raises(oslo_messaging.MessagingTimeout):
        api.setup_instance(CIRROS, timeout=1)


def test_manage_reports_an_absent_network_service(transport, vhost):
    from novanet.manage import rpcclient

    conf = novanet_conf.new_conf()
    conf([])
    rpc.register_opts(conf)
    conf.set_override("transport_url", vhost.url())
    with rpcclient.network_api(conf, 1) as api, pytest.raises(ServiceUnavailable, match="did not answer within 1 s"):
        api.delete_instance(instance_uuid="5357143d-66f5-446c-a82f-86648ebb3842")


def test_concurrent_calls(transport, controller):
    controller.manager.init_host()
    srv = _serve(transport, "network", "controller-1", [NetworkEndpoint(controller.manager)])
    try:
        api = NetworkAPI(transport, timeout=20)
        results: list[str] = []

        def create(i: int) -> None:
            results.append(api.create_instance(display_name=f"vm{i}", host="compute-1", vif_type="tap")["address"])

        threads = [threading.Thread(target=create, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == len(set(results)) == 10
    finally:
        srv.stop()
        srv.wait()
