"""The compute agent after `ip link del br100`, and a resync that does not block creates.

With the stateful fake netlink: deleting a bridge leaves its ports without a
master (as the kernel does). The devices must come back on the new bridge
unchanged: same ifindex, same guest end.
"""

from __future__ import annotations

import dataclasses
import threading

from novanet.linux.devices import VifDevices
from tests.unit.compute.test_manager import CIRROS, make_agent

TAP = dataclasses.replace(
    CIRROS,
    id=10,
    uuid="0b7e40a4-5e52-4b5b-9a2b-0e8b8d0f7c11",
    name="instance-0000000a",
    vif_type="tap",
    mac="fa:16:3e:00:00:0a",
    address="10.0.0.3",
)


def devices(agent) -> dict[str, tuple[int, str | None, bool]]:
    """vnetN -> (ifindex, master, up), and the guest end of the netns instance."""
    found = {
        link.name: (link.index, link.master, link.up) for link in agent.ip.links("vnet")
    }
    guest = agent.ip.link("eth0", netns=CIRROS.name)
    found["guest"] = (guest.index, guest.mac, guest.up) if guest else None
    return found


def plugged(tmp_path):
    agent = make_agent(tmp_path)
    agent.manager.init_host()
    agent.manager.resync([])
    agent.manager.setup_instance(CIRROS)
    agent.manager.setup_instance(TAP)
    return agent


def test_a_deleted_bridge_is_made_again_with_every_device_unchanged(tmp_path):
    agent = plugged(tmp_path)
    before = devices(agent)
    agent.ip.delete_link("br100")
    assert agent.ip.link("vnet0").master is None  # what the kernel does to the ports

    repaired = agent.manager.check_bridges()

    assert any("create bridge br100" in line for line in repaired)
    assert agent.ip.link("br100").kind == "bridge"
    assert agent.ip.link("eth2").master == "br100"
    assert devices(agent) == before  # same devices, same indexes, back on br100
    assert agent.manager.check_bridges() == []  # converged: nothing more to do


def test_an_agent_restarted_after_the_bridge_was_deleted_reattaches(tmp_path):
    first = plugged(tmp_path)
    before = devices(first)
    first.ip.delete_link("br100")
    second = make_agent(tmp_path, ip=first.ip, fake=first.iptables)
    second.manager.init_host()
    summary = second.manager.resync([CIRROS, TAP])
    assert summary == {"instances": 2, "plugged": 0, "removed": 0, "attached": 2}
    assert devices(second) == before
    assert {i.devname for i in second.manager.instances()} == {"vnet0", "vnet1"}


def test_a_device_of_the_wrong_type_is_replaced(tmp_path):
    agent = plugged(tmp_path)
    # The controller says instance 10 has a netns VIF; the host has a tap with its MAC.
    as_netns = dataclasses.replace(TAP, vif_type="netns")
    summary = agent.manager.resync([CIRROS, as_netns])
    assert summary["plugged"] == 1
    assert agent.ip.link("vnet1").kind == "veth"
    assert agent.ip.link("eth0", netns=as_netns.name).mac == as_netns.mac


class GatedVifs(VifDevices):
    """The next list() waits for the test to let it go: a link dump that takes long."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.gate = False

    def list(self):
        if self.gate:
            self.gate = False  # only the resync's listing: plugging lists too
            self.entered.set()
            assert self.release.wait(30), "the test never released the listing"
        return super().list()


def test_a_create_does_not_wait_for_a_resync_reading_the_kernel(tmp_path):
    agent = plugged(tmp_path)
    vifs = GatedVifs(agent.ip, str(tmp_path / "lock"))
    agent.manager.kernel.vifs = vifs
    vifs.gate = True
    since = agent.manager.generation  # as the service does before asking the controller
    resync = threading.Thread(target=agent.manager.resync, args=([CIRROS, TAP], since))
    resync.start()
    try:
        assert vifs.entered.wait(30)
        # The resync is reading the kernel: a create goes through meanwhile.
        third = dataclasses.replace(
            TAP, id=11, uuid="7d0f2b9e-0000-4000-8000-00000000000b", name="instance-0000000b",
            mac="fa:16:3e:00:00:0b", address="10.0.0.4",
        )  # fmt: skip
        created: list[str] = []
        worker = threading.Thread(target=lambda: created.append(agent.manager.setup_instance(third)))
        worker.start()
        worker.join(30)
        assert created == ["vnet2"], "setup_instance waited for the resync's kernel read"
    finally:
        vifs.gate = False
        vifs.release.set()
        resync.join(30)
    # The resync's list was read before the create: the new instance is left alone.
    assert agent.ip.link("vnet2") is not None
