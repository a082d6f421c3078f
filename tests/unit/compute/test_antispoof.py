"""The agent with anti-spoofing on (fakes): each port's filter follows its device."""

from __future__ import annotations

import dataclasses

import pytest

from novanet import conf as novanet_conf
from novanet.compute import antispoof
from novanet.compute.manager import ComputeManager
from novanet.compute.resync_plan import Attach, ResyncPlan
from novanet.exception import NovanetError
from novanet.linux.bridge import BridgeManager
from novanet.linux.devices import VifDevices
from novanet.linux.fakes.iptables import FakeIptables
from novanet.linux.fakes.netlink import FakeIpLib, FakeSysctl
from novanet.linux.fakes.nftables import FakeNftKernel
from novanet.linux.iptables.manager import IptablesManager
from novanet.linux.nftables.table import NftTable
from novanet.rpc.objects import InstanceNetwork
from tests.unit.compute.test_manager import CIRROS

OTHER = dataclasses.replace(
    CIRROS, id=10, uuid="0b7e40a4-5e52-4b5b-9a2b-0e8b8d0f7c11", name="instance-0000000a",
    vif_type="tap", mac="fa:16:3e:00:00:0a", address="10.0.0.3",
)  # fmt: skip


class Host:
    """One compute host's fake kernel: links, iptables, nf_tables."""

    def __init__(self) -> None:
        self.ip = FakeIpLib()
        self.ip.add_link("eth2", up=True)
        self.iptables = FakeIptables()
        self.nft = FakeNftKernel(antispoof.TABLE)
        # What the port looked like whenever its filter was put in place.
        self.seen: list[tuple[str, str | None, bool]] = []

    def filtered(self) -> dict[str, tuple[str, str]]:
        """port -> (MAC, IP) as the table's sets say (a port missing one is left out)."""
        ports = {antispoof.PORTS.decode(k)[0] for k in self.nft.keys(antispoof.PORTS.name)}
        macs = dict(antispoof.MACS.decode(k) for k in self.nft.keys(antispoof.MACS.name))
        ips = dict(antispoof.IPS.decode(k) for k in self.nft.keys(antispoof.IPS.name))
        return {port: (macs[port], ips[port]) for port in ports if port in macs and port in ips}


class WatchedFilter(antispoof.PortFilter):
    def __init__(self, table: NftTable, host: Host) -> None:
        super().__init__(table)
        self.host = host

    def filter(self, port: str, inst: InstanceNetwork) -> None:
        self._saw(port)
        super().filter(port, inst)

    def ensure(self, ports) -> None:  # type: ignore[no-untyped-def]
        for port in ports:
            self._saw(port)
        super().ensure(ports)

    def _saw(self, port: str) -> None:
        link = self.host.ip.link(port)
        assert link is not None
        self.host.seen.append((port, link.master, link.up))


def agent(tmp_path, host: Host) -> ComputeManager:
    conf = novanet_conf.new_conf()
    conf([])
    for name, value in {"flat_interface": "eth2", "flat_network_bridge": "br100", "host": "compute-1"}.items():
        conf.set_override(name, value)
    manager = ComputeManager(
        conf,
        bridges=BridgeManager(host.ip, str(tmp_path / "lock"), FakeSysctl()),
        iptables=IptablesManager("compute", host.iptables),
        vifs=VifDevices(host.ip, str(tmp_path / "lock")),
        namespaces=host.ip,
        antispoof=WatchedFilter(NftTable(antispoof.TABLE, host.nft), host),
    )
    manager.init_host()
    return manager


@pytest.fixture
def host() -> Host:
    return Host()


@pytest.mark.parametrize("vif_type", ["netns", "tap"])
def test_the_filter_is_in_place_before_the_port_is_on_the_bridge(tmp_path, host, vif_type):
    manager = agent(tmp_path, host)
    manager.resync([])
    devname = manager.setup_instance(dataclasses.replace(CIRROS, vif_type=vif_type))
    assert host.seen == [(devname, None, False)]  # off the bridge and down at that moment
    assert host.filtered() == {devname: ("fa:16:3e:2c:e8:ec", "10.0.0.2")}
    assert host.ip.link(devname).master == "br100"


def test_teardown_removes_the_filter_after_the_device(tmp_path, host):
    manager = agent(tmp_path, host)
    manager.resync([])
    manager.setup_instance(CIRROS)
    manager.setup_instance(OTHER)
    manager.teardown_instance(CIRROS)
    assert host.ip.link("vnet0") is None
    assert host.filtered() == {"vnet1": ("fa:16:3e:00:00:0a", "10.0.0.3")}
    manager.teardown_instance(CIRROS)  # idempotent
    assert host.filtered() == {"vnet1": ("fa:16:3e:00:00:0a", "10.0.0.3")}


def test_no_filter_no_port(tmp_path, host):
    manager = agent(tmp_path, host)
    manager.resync([])
    host.nft.fail_scripts = True  # the table is gone and cannot be written
    host.nft.drop_table()
    with pytest.raises(NovanetError, match="anti-spoofing: cannot filter vnet0"):
        manager.setup_instance(CIRROS)
    assert host.ip.link("vnet0") is None  # the device never reached the bridge
    assert "instance-00000009" not in host.ip.list_netns()


def test_a_reused_port_name_carries_only_the_new_instance(tmp_path, host):
    manager = agent(tmp_path, host)
    manager.resync([])
    manager.setup_instance(CIRROS)
    manager.teardown_instance(CIRROS)
    manager.setup_instance(OTHER)  # gets vnet0 again
    assert host.filtered() == {"vnet0": ("fa:16:3e:00:00:0a", "10.0.0.3")}
    assert len(host.nft.keys(antispoof.MACS.name)) == 1


def test_a_replaced_device_moves_the_filter(tmp_path, host):
    manager = agent(tmp_path, host)
    manager.resync([])
    manager.setup_instance(OTHER)  # vnet0
    manager.setup_instance(CIRROS)  # vnet1, netns
    host.ip.delete_netns("instance-00000009")  # its guest is gone: the veth must be replaced
    manager.resync([CIRROS, OTHER])
    assert host.filtered() == {
        "vnet0": ("fa:16:3e:00:00:0a", "10.0.0.3"),
        "vnet1": ("fa:16:3e:2c:e8:ec", "10.0.0.2"),
    }


def test_restart_adopts_and_removes_stale_ports(tmp_path, host):
    first = agent(tmp_path, host)
    first.resync([])
    first.setup_instance(CIRROS)
    first.setup_instance(OTHER)
    scripts = len(host.nft.scripts)
    # The agent restarts; OTHER was deleted meanwhile.
    second = agent(tmp_path, host)
    second.resync([CIRROS])
    assert host.filtered() == {"vnet0": ("fa:16:3e:2c:e8:ec", "10.0.0.2")}
    # One whole rewrite at the first look, with both ports still in it (vnet1's
    # device was still there): nothing was ever unfiltered during the restart.
    assert len(host.nft.scripts) == scripts + 1
    assert '"vnet1" . fa:16:3e:00:00:0a' in host.nft.scripts[-1]


def test_a_table_lost_while_the_agent_was_away_is_back_before_devices_move(tmp_path, host):
    first = agent(tmp_path, host)
    first.resync([])
    first.setup_instance(CIRROS)
    host.nft.drop_table()
    host.ip.set_master("vnet0", None)  # and the port fell off the bridge
    second = agent(tmp_path, host)
    second.resync([CIRROS])
    assert host.seen[-1] == ("vnet0", None, True)  # filtered before it went back on br100
    assert host.filtered() == {"vnet0": ("fa:16:3e:2c:e8:ec", "10.0.0.2")}
    assert host.ip.link("vnet0").master == "br100"


def test_drift_is_repaired_by_the_periodic_check(tmp_path, host):
    manager = agent(tmp_path, host)
    manager.resync([])
    manager.setup_instance(CIRROS)
    assert manager.check_antispoof() == []
    host.nft.flush_rules()
    assert manager.check_antispoof()
    host.nft.delete_element(antispoof.IPS.name, antispoof.IPS.encode("vnet0", "10.0.0.2"))
    assert manager.check_antispoof() == ['table bridge novanet: added vif_ips { "vnet0" . 10.0.0.2 }']
    assert host.filtered() == {"vnet0": ("fa:16:3e:2c:e8:ec", "10.0.0.2")}


def test_ports_in_place_of_a_plan():
    plan = ResyncPlan((Attach(OTHER, "vnet3"),), {CIRROS.uuid: "vnet0"})
    assert antispoof.ports_in_place(plan, [CIRROS, OTHER]) == {"vnet0": CIRROS, "vnet3": OTHER}
    plugged = dataclasses.replace(CIRROS, devname="vnet5")
    assert antispoof.ports_of([plugged, OTHER]) == {"vnet5": plugged}


def test_swapped_ports_in_one_declaration(host):
    ports = antispoof.PortFilter(NftTable(antispoof.TABLE, host.nft))
    ports.converge({"vnet0": CIRROS, "vnet1": OTHER})
    ports.ensure({"vnet0": OTHER, "vnet1": CIRROS})
    assert host.filtered() == {
        "vnet0": ("fa:16:3e:00:00:0a", "10.0.0.3"),
        "vnet1": ("fa:16:3e:2c:e8:ec", "10.0.0.2"),
    }


def test_a_resync_with_nothing_new_still_repairs(host):
    ports = antispoof.PortFilter(NftTable(antispoof.TABLE, host.nft))
    ports.converge({"vnet0": CIRROS, "vnet1": OTHER})
    host.nft.delete_element(antispoof.MACS.name, antispoof.MACS.encode("vnet1", OTHER.mac))
    ports.converge({"vnet0": CIRROS, "vnet1": OTHER})  # the same ports: the quick path
    assert host.filtered() == {
        "vnet0": ("fa:16:3e:2c:e8:ec", "10.0.0.2"),
        "vnet1": ("fa:16:3e:00:00:0a", "10.0.0.3"),
    }
    ports.converge({"vnet0": CIRROS})
    assert host.filtered() == {"vnet0": ("fa:16:3e:2c:e8:ec", "10.0.0.2")}
