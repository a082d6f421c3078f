"""The RPC server side of topic ``compute`` (server = this host).

Version history: see :class:`novanet.rpc.compute_api.ComputeAPI`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from novanet.compute.manager import ComputeManager
from novanet.exception import BadRequest
from novanet.rpc import errors
from novanet.rpc import transport as rpc
from novanet.rpc.objects import InstanceNetwork

LOG = logging.getLogger(__name__)


# One line per refusal in the log, the traceback once per failure (novanet.rpc.errors).
_expected = errors.endpoint("novanet-compute")


class ComputeEndpoint:
    target = rpc.target("1.0")

    def __init__(self, manager: ComputeManager, resync: Callable[[], object]) -> None:
        self.manager = manager
        self._resync = resync

    def _instance(self, ctxt: Any, kw: dict[str, Any]) -> InstanceNetwork:
        if set(kw) != {"instance"}:
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
        return {"devname": self.manager.setup_instance(self._instance(ctxt, kw))}

    @_expected
    def teardown_instance(self, ctxt: Any, **kw: Any) -> None:
        self.manager.teardown_instance(self._instance(ctxt, kw))

    def refresh(self, ctxt: Any, **kw: Any) -> None:
        threading.Thread(target=self._resync, name="refresh", daemon=True).start()
