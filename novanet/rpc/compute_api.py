"""Client side of the compute RPC API (topic ``compute``, server = the compute host)."""

from __future__ import annotations

from typing import Any

from novanet.rpc import context
from novanet.rpc import transport as rpc
from novanet.rpc.objects import InstanceNetwork

TOPIC = "compute"


class ComputeAPI:
    """Calls into one novanet-compute agent.

    API version history:

    * 1.0 - Initial version: ``setup_instance``, ``teardown_instance``,
      ``refresh``.

    The context dict carries ``request_id`` (the controller passes on the one
    of the request it is handling; see :mod:`novanet.rpc.context`): it is
    not an argument and needs no version change.
    """

    VERSION = "1.0"

    def __init__(
        self, transport: Any, timeout: float | None = None, retry: int | None = None
    ) -> None:
        """:param retry: connection attempts when sending (None: oslo.messaging's, for ever)."""
        self.client = rpc.get_client(transport, TOPIC, self.VERSION, timeout=timeout)
        self.retry = retry

    def setup_instance(
        self, instance: InstanceNetwork, timeout: float | None = None
    ) -> dict[str, Any]:
        """Plug the VIF and install the instance's chain; returns ``{"devname": "vnetN"}``."""
        client = self.client.prepare(server=instance.host, timeout=timeout, retry=self.retry)
        return client.call(context.rpc_context(), "setup_instance", instance=instance.to_dict())  # type: ignore[no-any-return]

    def teardown_instance(self, instance: InstanceNetwork, timeout: float | None = None) -> None:
        """Remove the instance's chain, device and namespace (idempotent)."""
        client = self.client.prepare(server=instance.host, timeout=timeout, retry=self.retry)
        client.call(context.rpc_context(), "teardown_instance", instance=instance.to_dict())

    def refresh(self, host: str) -> None:
        """Ask the agent to resync everything from the controller (fire and forget)."""
        self.client.prepare(server=host).cast(context.rpc_context(), "refresh")
