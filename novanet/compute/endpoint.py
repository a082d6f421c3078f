"""The RPC server side of topic ``compute`` (server = this host).

Version history: see :class:`novanet.rpc.compute_api.ComputeAPI`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from novanet.compute.manager import ComputeManager
from novanet.compute.resync_plan import instance_netns
from novanet.exception import BadRequest
from novanet.explain import facts, live
from novanet.rpc import errors, payloads
from novanet.rpc import transport as rpc
from novanet.rpc.objects import InstanceNetwork, members_from, rules_from

LOG = logging.getLogger(__name__)


# One line per refusal in the log, the traceback once per failure (novanet.rpc.errors).
_expected = errors.endpoint("novanet-compute")


class ComputeEndpoint:
    target = rpc.target("1.3")

    def __init__(self, manager: ComputeManager, resync: Callable[[], object]) -> None:
        self.manager = manager
        self._resync = resync

    def _instance(self, ctxt: Any, kw: dict[str, Any]) -> InstanceNetwork:
        if set(kw) - {"members"} != {"instance"}:
            raise BadRequest(
                f"expected one argument 'instance', got {', '.join(sorted(kw)) or 'none'}"
            )
        inst = InstanceNetwork.from_dict(kw["instance"])
        if inst.host != self.manager.host:
            raise BadRequest(
                f"instance {inst.uuid} belongs to {inst.host}, not {self.manager.host}"
            )
        return inst

    @_expected
    def setup_instance(self, ctxt: Any, **kw: Any) -> dict[str, Any]:
        inst = self._instance(ctxt, kw)
        members = members_from(kw.get("members"))  # 1.1
        return {"devname": self.manager.setup_instance(inst, members)}

    @_expected
    def teardown_instance(self, ctxt: Any, **kw: Any) -> None:
        self.manager.teardown_instance(self._instance(ctxt, kw))

    @_expected
    def update_security(self, ctxt: Any, **kw: Any) -> dict[str, int]:
        """1.1: new rules of instances here, new members of source groups."""
        if set(kw) != {"rules", "members"}:
            raise BadRequest(f"expected arguments rules, members; got {', '.join(sorted(kw))}")
        rules = payloads.mapping(kw["rules"], "rules")
        checked = {
            payloads.uuid(u, "rules"): rules_from(r, f"rules[{u}]") for u, r in rules.items()
        }
        return self.manager.update_security(checked, members_from(kw["members"]))

    @_expected
    def node_facts(self, ctxt: Any, **kw: Any) -> dict[str, Any]:
        """1.2: this node's facts (novanet.explain.facts); takes no argument."""
        if kw:
            raise BadRequest(f"unexpected argument(s): {', '.join(sorted(kw))}")
        manager = self.manager
        return facts.gather(
            manager.conf,
            "compute",
            vifs=facts.vif_facts(manager.instances(), instance_netns),
            drift=manager.drift,
        )

    @_expected
    def live_trace(self, ctxt: Any, **kw: Any) -> dict[str, Any]:
        """1.3: the kernel's trace of a probe's flow here (``trace --live``).

        Without ``instance_uuid`` the host's namespace is traced (and sends,
        with ``send``); with it, the probe is sent from that instance's
        namespace (a netns VIF: the agent cannot send from inside a VM) and
        the host's namespace, where its bridge and iptables are, is traced
        too. Returns ``{"lines": [...]}``.
        """
        unknown = sorted(set(kw) - {*payloads.LIVE_TRACE_ARGS, "instance_uuid"})
        if unknown:
            raise BadRequest(f"unexpected argument(s): {', '.join(unknown)}")
        request = payloads.live_trace(kw)
        netns = None
        if kw.get("instance_uuid") is not None:
            netns = self._sender_netns(payloads.uuid(kw["instance_uuid"], "instance_uuid"), request)
        watch: list[str | None] = [None] if netns else []
        lines = live.run(
            request.probe, request.seconds, request.send, request.delay, netns=netns, watch=watch
        )
        return {"lines": lines}

    def _sender_netns(self, uuid: str, request: payloads.LiveTrace) -> str:
        inst = next((i for i in self.manager.instances() if i.uuid == uuid), None)
        if inst is None:
            raise BadRequest(f"instance {uuid} is not on {self.manager.host}")
        netns = instance_netns(inst)
        if netns is None:
            raise BadRequest(
                f"instance {inst.name} has a {inst.vif_type} VIF (a VM): "
                "the agent cannot send a probe from inside it"
            )
        if request.probe.src != inst.address:
            raise BadRequest(
                f"probe.src {request.probe.src} is not instance {inst.name}'s address "
                f"{inst.address}"
            )
        return netns

    def refresh(self, ctxt: Any, **kw: Any) -> None:
        threading.Thread(target=self._resync, name="refresh", daemon=True).start()
