"""A controller made of stateful fakes around a real SQLite database."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from novanet import conf as novanet_conf
from novanet.db import migration, services
from novanet.db.api import Database
from novanet.dhcp.models import DhcpHost, DhcpNetwork
from novanet.ipam import networks, plan
from novanet.linux.bridge import BridgeManager
from novanet.linux.fakes.floating import FakeArp, FakeConntrack
from novanet.linux.fakes.iptables import FakeIptables
from novanet.linux.fakes.netlink import FakeIpLib, FakeSysctl
from novanet.linux.iptables.manager import IptablesManager
from novanet.network.floating import FloatingKernel
from novanet.network.manager import CONTROLLER_TABLES, NetworkManager
from novanet.rpc.objects import InstanceNetwork


class FakeDhcp:
    """Keeps what dnsmasq would hold: the hosts of each enabled network."""

    def __init__(self) -> None:
        self.provider: Any = None
        self.enabled: dict[int, DhcpNetwork] = {}
        self.hosts: dict[int, list[DhcpHost]] = {}
        self.released: list[tuple[str, str, list[DhcpHost]]] = []
        self.restarts: list[int] = []  # network ids, each time dnsmasq was restarted

    def enable(self, network: DhcpNetwork) -> None:
        self.enabled[network.id] = network
        self.reload_allocations(network)

    def disable(self, network: DhcpNetwork) -> None:
        self.enabled.pop(network.id, None)
        self.hosts.pop(network.id, None)

    def reload_allocations(self, network: DhcpNetwork) -> None:
        if network.id in self.enabled:
            self.hosts[network.id] = list(self.provider(network.id))

    def release(self, network: DhcpNetwork, address: str, mac: str) -> None:
        self.reload_allocations(network)
        # what dnsmasq held when the DHCPRELEASE went out
        self.released.append((address, mac, list(self.hosts.get(network.id, []))))

    def check_alive(self) -> list[int]:
        return []

    def restart(self, network: DhcpNetwork) -> None:
        self.restarts.append(network.id)
        self.enable(network)


class FakeCompute:
    """Compute hosts: what each has plugged; can be told to fail."""

    def __init__(self) -> None:
        self.plugged: dict[str, InstanceNetwork] = {}
        self.fail: Exception | None = None
        self.torn_down: list[str] = []
        # security groups: host -> gid -> addresses told; the hosts told, in order
        self.members: dict[str, dict[int, set[str]]] = {}
        self.told: list[str] = []
        self.unreachable: set[str] = set()

    def setup_instance(
        self, instance: InstanceNetwork, timeout: float | None = None, members: Any = None
    ) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        devname = f"vnet{len(self.plugged)}"
        self.plugged[instance.uuid] = dataclasses.replace(instance, devname=devname)
        self._tell(instance.host, members)
        return {"devname": devname}

    def update_security(self, host, rules, members, timeout=None) -> dict[str, Any]:
        if host in self.unreachable:
            raise TimeoutError(f"{host} did not answer")
        self.told.append(host)
        for uuid, texts in rules.items():
            if uuid in self.plugged and self.plugged[uuid].host == host:
                self.plugged[uuid] = dataclasses.replace(self.plugged[uuid], rules=tuple(texts))
        self._tell(host, members)
        return {"chains": len(rules)}

    def _tell(self, host: str, members: Any) -> None:
        for gid, addresses in (members or {}).items():
            self.members.setdefault(host, {})[int(gid)] = set(addresses)

    def teardown_instance(self, instance: InstanceNetwork, timeout: float | None = None) -> None:
        if self.fail is not None:
            raise self.fail
        self.plugged.pop(instance.uuid, None)
        self.torn_down.append(instance.uuid)


@dataclasses.dataclass
class Controller:
    manager: NetworkManager
    db: Database
    ip: FakeIpLib
    sysctl: FakeSysctl
    iptables: FakeIptables
    dhcp: FakeDhcp
    compute: FakeCompute
    conf: Any


@pytest.fixture
def controller(tmp_path) -> Controller:
    conf = novanet_conf.new_conf()
    conf([])
    for name, value in {
        "my_ip": "192.168.56.200",
        "flat_interface": "eth2",
        "flat_network_bridge": "br100",
        "dmz_cidr": ["10.128.0.0/24"],
        "host": "controller-1",
        "state_path": str(tmp_path),
    }.items():
        conf.set_override(name, value)
    db = Database(f"sqlite:///{tmp_path}/novanet.sqlite")
    migration.upgrade(db.engine)
    networks.create_networks(
        db,
        plan.plan_networks(
            label="novanetwork", fixed_range_v4="10.0.0.0/24", bridge="br100", bridge_interface="eth2"
        ),
    )
    services.heartbeat(db, "compute-1", "novanet-compute", "compute")
    ip = FakeIpLib()
    ip.add_link("eth1", up=True)
    ip.add_link("eth2", up=True)
    sysctl = FakeSysctl()
    fake_iptables = FakeIptables()
    dhcp = FakeDhcp()
    compute = FakeCompute()
    manager = NetworkManager(
        conf,
        db,
        bridges=BridgeManager(ip, str(tmp_path / "lock"), sysctl),
        iptables=IptablesManager("network", fake_iptables, tables=CONTROLLER_TABLES),
        dhcp=dhcp,
        compute=compute,
        floating_kernel=FloatingKernel(ip, FakeConntrack(), FakeArp()),
    )
    dhcp.provider = manager.hosts
    yield Controller(manager, db, ip, sysctl, fake_iptables, dhcp, compute, conf)
    db.dispose()
