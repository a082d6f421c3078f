"""The compute resync planner: pure, from (wanted, known, host view) to steps."""

from __future__ import annotations

import dataclasses

from novanet.compute.resync_plan import (
    AddRules,
    Attach,
    EnsureBridge,
    HostView,
    Plug,
    RemoveDevice,
    RemoveNamespace,
    RemoveRules,
    Replace,
    SyncRules,
    plan_resync,
)
from novanet.linux.devices import VifDevice, host_mac
from novanet.rpc.objects import InstanceNetwork


def inst(n: int, vif_type: str = "netns", bridge: str = "br100") -> InstanceNetwork:
    return InstanceNetwork(
        id=n,
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        name=f"instance-{n:08x}",
        display_name=f"vm{n}",
        host="compute-1",
        vif_type=vif_type,
        mac=f"fa:16:3e:00:{n >> 8 & 255:02x}:{n & 255:02x}",
        address=f"10.0.{n >> 8 & 255}.{n & 255}",
        cidr="10.0.0.0/16",
        dhcp_server="10.0.0.1",
        bridge=bridge,
    )


def device(i: InstanceNetwork, name: str, bridge: str | None = "br100", up: bool = True) -> VifDevice:
    kind = "veth" if i.vif_type == "netns" else "tap"
    return VifDevice(name, kind, host_mac(i.mac), bridge, up)


def converged(instances: list[InstanceNetwork]) -> HostView:
    return HostView(
        tuple(device(i, f"vnet{k}") for k, i in enumerate(instances)),
        frozenset(i.name for i in instances if i.vif_type == "netns"),
    )


def known(instances: list[InstanceNetwork]) -> dict[str, InstanceNetwork]:
    return {i.uuid: i for i in instances}


def test_a_converged_host_needs_nothing_and_every_device_is_in_place() -> None:
    wanted = [inst(2), inst(3, "tap")]
    plan = plan_resync(wanted, known(wanted), converged(wanted), bridges_ready={"br100"})
    assert plan.steps == ()
    assert str(plan) == "nothing to do"
    assert plan.in_place == {wanted[0].uuid: "vnet0", wanted[1].uuid: "vnet1"}


def test_devices_off_their_bridge_are_attached_never_replaced() -> None:
    """`ip link del br100`: the ports stay, without a master (issue 11, item 3)."""
    wanted = [inst(2), inst(3, "tap"), inst(4)]
    view = converged(wanted)
    view = HostView(
        (
            dataclasses.replace(view.devices[0], bridge=None),
            dataclasses.replace(view.devices[1], bridge="br999"),
            dataclasses.replace(view.devices[2], up=False),
        ),
        view.namespaces,
    )
    plan = plan_resync(wanted, known(wanted), view, bridges_ready={"br100"})
    assert plan.steps == (
        Attach(wanted[0], "vnet0"),
        Attach(wanted[1], "vnet1"),
        Attach(wanted[2], "vnet2"),
    )
    assert str(plan.steps[0]) == "attach vnet0 of instance-00000002 to br100, up"


def test_a_device_that_cannot_be_the_instances_is_replaced() -> None:
    wanted = [inst(2), inst(3)]
    view = converged(wanted)
    tap = dataclasses.replace(view.devices[0], kind="tap")
    view = HostView((tap, view.devices[1]), frozenset({wanted[0].name}))  # 3's namespace is gone
    steps = plan_resync(wanted, known(wanted), view, bridges_ready={"br100"}).steps
    assert steps == (
        Replace(wanted[0], "vnet0", "a tap device, the instance has a netns VIF"),
        Replace(wanted[1], "vnet1", "its namespace instance-00000003 is gone"),
    )


def test_the_first_resync_declares_every_chain_and_converges_last() -> None:
    wanted = [inst(2), inst(3)]
    stale = VifDevice("vnet7", "veth", "fe:16:3e:00:00:63", "br100", True)
    view = HostView(
        (*converged(wanted).devices, stale), frozenset({"instance-00000002", "instance-00000063"})
    )
    steps = plan_resync(wanted, {}, view, first=True).steps
    assert steps == (
        EnsureBridge("br100"),
        AddRules(wanted[0]),
        AddRules(wanted[1]),
        Replace(wanted[1], "vnet1", "its namespace instance-00000003 is gone"),
        RemoveDevice("vnet7", "fe:16:3e:00:00:63"),
        RemoveNamespace("instance-00000063"),
        SyncRules(),
    )


def test_instances_gone_lose_their_device_before_their_chain() -> None:
    """No device of a deleted instance is ever on the bridge without its chain."""
    kept, gone = inst(2), inst(3, "tap")
    plan = plan_resync([kept], known([kept, gone]), converged([kept, gone]), bridges_ready={"br100"})
    assert plan.steps == (RemoveDevice("vnet1", host_mac(gone.mac)), RemoveRules(gone))


def test_a_changed_instance_gets_its_chain_rewritten() -> None:
    old = inst(2)
    new = dataclasses.replace(old, address="10.0.9.9")
    plan = plan_resync([new], known([old]), converged([old]), bridges_ready={"br100"})
    assert plan.steps == (RemoveRules(old), AddRules(new))


def test_instances_changed_while_the_list_was_read_are_left_alone() -> None:
    listed, created = inst(2), inst(3)
    view = HostView(converged([listed, created]).devices[1:], frozenset({created.name}))
    plan = plan_resync(
        [listed, created], known([created]), view, bridges_ready={"br100"}, settled={created.uuid}
    )
    # 2 is new: chain and device; 3 was plugged meanwhile: untouched, not stale
    assert plan.steps == (AddRules(listed), Plug(listed))


def test_a_second_device_with_an_instances_mac_is_removed() -> None:
    one = inst(2, "tap")
    view = HostView((device(one, "vnet0"), device(one, "vnet5")))
    plan = plan_resync([one], known([one]), view, bridges_ready={"br100"})
    assert plan.steps == (RemoveDevice("vnet5", host_mac(one.mac), "vnet0 has the same MAC"),)
    assert plan.in_place == {one.uuid: "vnet0"}


def test_a_repair_plan_removes_nothing() -> None:
    wanted = [inst(2)]
    stray = VifDevice("vnet9", "tap", "fe:00:00:00:00:09", None, True)
    view = HostView(
        (dataclasses.replace(device(wanted[0], "vnet0"), bridge=None), stray),
        frozenset({wanted[0].name}),
    )
    plan = plan_resync(wanted, known(wanted), view, bridges_ready={"br100"}, remove_stale=False)
    assert plan.steps == (Attach(wanted[0], "vnet0"),)


def test_instances_on_several_bridges() -> None:
    wanted = [inst(2, bridge="br100"), inst(3, bridge="br101"), inst(4, bridge="br101")]
    plan = plan_resync(wanted, known(wanted), converged(wanted), bridges_ready={"br100"})
    assert plan.steps[0] == EnsureBridge("br101")
    assert plan.steps[1:] == (Attach(wanted[1], "vnet1"), Attach(wanted[2], "vnet2"))
