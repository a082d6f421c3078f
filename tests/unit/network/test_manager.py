"""The controller's logic with fakes: host convergence and the instance lifecycle."""

from __future__ import annotations

import datetime

import pytest

from novanet.db import instances
from novanet.db.models import SERVICES
from novanet.exception import NotFound, ServiceUnavailable
from novanet.ipam import networks, plan, pool, queries
from tests.lib.paths import SEED


def _seed_without_api(name: str) -> list[str]:
    return [line for line in (SEED / name).read_text().splitlines() if "nova-api" not in line]


def _fixed(db, address):
    return next(r for r in queries.list_fixed_ips(db) if r.address == address)


def test_init_host_builds_the_seed_controller(controller):
    controller.manager.init_host()
    dump = controller.ip.dump()
    assert "link br100 bridge" in " ".join(dump)
    assert controller.ip.link("eth2").master == "br100"
    first = controller.ip.addresses("br100")[0]
    assert str(first.interface) == "10.0.0.1/24" and str(first.broadcast) == "10.0.0.255"
    assert controller.sysctl.values["net.ipv4.ip_forward"] == "1"
    assert controller.iptables.listing("filter") == _seed_without_api("controller-iptables-filter.txt")
    assert controller.iptables.listing("nat") == _seed_without_api("controller-iptables-nat.txt")
    assert list(controller.dhcp.enabled) == [1]
    assert controller.dhcp.hosts[1] == []


def test_init_host_twice_changes_nothing(controller):
    controller.manager.init_host()
    before = (controller.ip.dump(), controller.iptables.listing("filter"), controller.iptables.listing("nat"))
    controller.manager.init_host()
    assert (controller.ip.dump(), controller.iptables.listing("filter"), controller.iptables.listing("nat")) == before


def test_create_instance_like_the_seed(controller):
    m = controller.manager
    m.init_host()
    created = m.create_instance(
        display_name="cirros", host="compute-1", vif_type="netns", mac="fa:16:3e:2c:e8:ec"
    )
    assert (created.address, created.mac, created.devname) == ("10.0.0.2", "fa:16:3e:2c:e8:ec", "vnet0")
    assert created.name == f"instance-{created.id:08x}"
    assert (created.cidr, created.dhcp_server, created.bridge) == ("10.0.0.0/24", "10.0.0.1", "br100")
    assert [(h.mac, h.hostname, h.address) for h in controller.dhcp.hosts[1]] == [
        ("fa:16:3e:2c:e8:ec", "cirros", "10.0.0.2")
    ]
    assert controller.compute.plugged[created.uuid].address == "10.0.0.2"
    row = instances.get_by_uuid(controller.db, created.uuid)
    assert (row.state, row.vif_devname, row.hostname) == ("active", "vnet0", "cirros")


def test_hostname_is_a_dns_label(controller):
    controller.manager.init_host()
    created = controller.manager.create_instance(
        display_name="My VM, with\nnewlines é" + "x" * 300, host="compute-1", vif_type="tap"
    )
    (host,) = controller.dhcp.hosts[1]
    # a long name keeps its first two characters and its end (nova's shortening)
    assert host.hostname == "my-" + "x" * 60
    nameless = controller.manager.create_instance(display_name="!!!", host="compute-1", vif_type="tap")
    assert instances.get_by_uuid(controller.db, nameless.uuid).hostname == nameless.name
    assert created.display_name.startswith("My VM")


def test_compute_failure_rolls_everything_back(controller):
    controller.manager.init_host()
    controller.compute.fail = TimeoutError("no answer in 30 s")
    with pytest.raises(ServiceUnavailable, match="did not plug the instance: no answer"):
        controller.manager.create_instance(display_name="vm", host="compute-1", vif_type="tap")
    assert instances.list_instances(controller.db) == []
    row = _fixed(controller.db, "10.0.0.2")
    assert row.instance_uuid is None and not row.allocated
    assert controller.dhcp.hosts[1] == []
    # and the address is handed out again
    controller.compute.fail = None
    again = controller.manager.create_instance(display_name="vm", host="compute-1", vif_type="tap")
    assert again.address in ("10.0.0.2", "10.0.0.3")


def test_unknown_or_down_host_refused_before_anything_is_written(controller):
    controller.manager.init_host()
    with pytest.raises(NotFound, match="compute-9"):
        controller.manager.create_instance(display_name="vm", host="compute-9", vif_type="tap")
    with controller.db.transaction() as conn:
        conn.execute(SERVICES.update().values(updated_at=datetime.datetime(2020, 1, 1)))
    with pytest.raises(ServiceUnavailable, match="compute-1 is down"):
        controller.manager.create_instance(display_name="vm", host="compute-1", vif_type="tap")
    assert instances.list_instances(controller.db) == []
    assert not any(r.instance_uuid for r in queries.list_fixed_ips(controller.db))


def test_disabled_host_gets_no_new_instance_and_says_why(controller):
    from novanet.db import services
    from novanet.exception import Conflict

    m = controller.manager
    m.init_host()
    kept = m.create_instance(display_name="kept", host="compute-1", vif_type="tap")
    assert services.set_disabled(controller.db, "compute-1", "novanet-compute", True)
    services.heartbeat(controller.db, "compute-1", "novanet-compute", "compute")  # keeps it disabled
    with pytest.raises(Conflict) as refused:
        m.create_instance(display_name="vm", host="compute-1", vif_type="tap")
    assert str(refused.value).splitlines() == [
        "compute host compute-1 is disabled: it takes no new instances "
        "('novanet-manage service enable compute-1 novanet-compute' to undo)"
    ]
    assert [i.uuid for i in instances.list_instances(controller.db)] == [kept.uuid]
    assert kept.uuid in controller.compute.plugged  # running instances stay
    assert services.set_disabled(controller.db, "compute-1", "novanet-compute", False)
    m.create_instance(display_name="vm", host="compute-1", vif_type="tap")
    assert len(instances.list_instances(controller.db)) == 2


def test_delete_releases_after_the_hostsfile_no_longer_has_it(controller):
    m = controller.manager
    m.init_host()
    created = m.create_instance(display_name="cirros", host="compute-1", vif_type="tap", mac="fa:16:3e:2c:e8:ec")
    assert pool.lease_fixed_ip(controller.db, "10.0.0.2", "fa:16:3e:2c:e8:ec")  # the guest's DHCP
    result = m.delete_instance(created.uuid)
    assert result["notes"] == []
    assert controller.compute.plugged == {}
    (address, mac, hosts_at_release) = controller.dhcp.released[0]
    assert (address, mac) == ("10.0.0.2", "fa:16:3e:2c:e8:ec")
    assert hosts_at_release == []  # reloaded BEFORE dhcp_release
    assert instances.list_instances(controller.db) == []
    row = _fixed(controller.db, "10.0.0.2")
    assert not row.allocated and row.instance_uuid == created.uuid  # until dnsmasq's del


def test_delete_with_compute_down_still_frees_the_controller_side(controller):
    m = controller.manager
    m.init_host()
    created = m.create_instance(display_name="vm", host="compute-1", vif_type="tap")
    controller.compute.fail = TimeoutError("timed out")
    result = m.delete_instance(created.uuid)
    assert "resyncs" in result["notes"][0]
    assert instances.list_instances(controller.db) == []
    assert controller.dhcp.hosts[1] == []


def test_get_host_instances(controller):
    m = controller.manager
    m.init_host()
    a = m.create_instance(display_name="a", host="compute-1", vif_type="tap")
    listed = m.get_host_instances("compute-1")
    assert [(i.uuid, i.address, i.devname) for i in listed] == [(a.uuid, a.address, "vnet0")]
    assert m.get_host_instances("compute-2") == []


def test_refresh_picks_up_a_new_network(controller):
    m = controller.manager
    m.init_host()
    assert m.refresh_networks() == []
    controller.ip.add_link("eth3", up=True)
    networks.create_networks(
        controller.db,
        plan.plan_networks(label="second", fixed_range_v4="10.1.0.0/24", bridge="br101", bridge_interface="eth3"),
    )
    changes = m.refresh_networks()
    assert changes == ["network 10.1.0.0/24 set up"]
    assert str(controller.ip.addresses("br101")[0].interface) == "10.1.0.1/24"
    assert sorted(controller.dhcp.enabled) == [1, 2]
    listing = controller.iptables.listing("filter")
    assert "-A nova-network-FORWARD -i br101 -j ACCEPT" in listing
    assert "-A nova-network-snat -s 10.1.0.0/24 -j SNAT --to-source 192.168.56.200" in controller.iptables.listing("nat")
    # and a removed network goes away
    networks.delete_network(controller.db, networks.find_network(controller.db, cidr="10.1.0.0/24"))
    assert m.refresh_networks() == ["network 10.1.0.0/24 removed"]
    assert sorted(controller.dhcp.enabled) == [1]
    assert "-A nova-network-FORWARD -i br101 -j ACCEPT" not in controller.iptables.listing("filter")


def test_drift_is_repaired(controller):
    controller.manager.init_host()
    controller.iptables.run("-D nova-network-INPUT 1")
    controller.manager.check_iptables()
    assert controller.iptables.listing("filter") == _seed_without_api("controller-iptables-filter.txt")
