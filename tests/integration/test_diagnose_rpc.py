"""node_facts over the real RabbitMQ: diagnose asks every daemon at once, a silent one is named."""

from __future__ import annotations

import pytest

from novanet import conf as novanet_conf
from novanet.compute.endpoint import ComputeEndpoint
from novanet.explain import diagnose as checks
from novanet.explain import facts
from novanet.manage import diagnose as diagnose_cmd
from novanet.network.endpoint import NetworkEndpoint
from novanet.rpc import transport as rpc
from tests.integration.test_rpc import _serve, transport  # noqa: F401 - the fixture
from tests.unit.compute.test_manager import make_agent
from tests.unit.explain.test_facts import fake_reader

pytestmark = pytest.mark.rabbit


def test_gather_gets_each_daemons_facts_and_names_the_silent_one(
    transport, vhost, controller, tmp_path, monkeypatch  # noqa: F811 - the fixture
):
    controller.manager.init_host()
    agent = make_agent(tmp_path / "compute-1")
    agent.manager.init_host()
    agent.manager.resync([])
    readers = {
        "network": fake_reader(controller.ip, controller.sysctl, controller.iptables),
        "compute": fake_reader(agent.ip, agent.sysctl, agent.iptables),
    }
    # each endpoint reads its own fake kernel (the role is the first argument)
    real_gather = facts.gather
    monkeypatch.setattr(
        facts, "gather", lambda conf, role, **kw: real_gather(conf, role, **kw, reader=readers[role])
    )
    servers = [
        _serve(transport, "network", "controller-1", [NetworkEndpoint(controller.manager)]),
        _serve(transport, "compute", "compute-1", [ComputeEndpoint(agent.manager, lambda: None)]),
    ]
    try:
        conf = novanet_conf.new_conf()
        conf([])
        rpc.register_opts(conf)
        conf.set_override("transport_url", vhost.url())
        conf.set_override("rpc_connect_timeout", 2)
        wanted = [
            ("controller-1", checks.NETWORK),
            ("compute-1", checks.COMPUTE),
            ("compute-2", checks.COMPUTE),  # in the services table, but nothing serves it
        ]
        got, unreachable = diagnose_cmd.gather(conf, wanted, 2)
    finally:
        for srv in servers:
            srv.stop()
            srv.wait()
    assert sorted(got) == ["compute-1/novanet-compute", "controller-1/novanet-network"]
    br100 = {li["name"]: li for li in got["controller-1/novanet-network"]["links"]}["br100"]
    assert br100["addresses"] == ["10.0.0.1/24"]
    assert got["compute-1/novanet-compute"]["vifs"] == []
    assert list(unreachable) == ["compute-2/novanet-compute"]
    assert unreachable["compute-2/novanet-compute"] == "no answer within 2 s"
