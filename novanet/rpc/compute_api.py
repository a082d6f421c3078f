"""Client side of the compute RPC API (topic ``compute``, server = the compute host)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from novanet.rpc import context
from novanet.rpc import transport as rpc
from novanet.rpc.objects import InstanceNetwork, members_to

TOPIC = "compute"


class ComputeAPI:
    """Calls into one novanet-compute agent.

    API version history:

    * 1.0 - Initial version: ``setup_instance``, ``teardown_instance``,
      ``refresh``.
    * 1.1 - Security groups: ``instance`` carries ``rules`` (compact strings
      of :mod:`novanet.secrules`); ``setup_instance`` takes ``members``
      (``{"<group id>": [addresses]}`` of the source groups its rules name);
      new ``update_security(rules={uuid: [rules]}, members=...)``: new rules
      of instances on that host and new members of groups, applied as set
      updates and chain rewrites without a re-plug. A 1.0 agent would drop
      the rules: the controller sends them only with version 1.1.
    * 1.2 - Diagnose: new ``node_facts()`` (no argument; server = the host)
      returning the agent's node facts (:mod:`novanet.explain.facts`, schema
      1), its VIFs from its own state and ``drift``: what its periodic checks
      (iptables, ipsets, anti-spoofing) would repair now.
    * 1.3 - ``trace --live``: new ``live_trace(probe, seconds, send, delay,
      instance_uuid=None)`` (server = the host; arguments as the network
      API's 1.5): the host traces the probe's flow with nftables tracing
      and, with ``send``, sends it; with ``instance_uuid`` the probe is sent
      from that instance's namespace (netns VIFs only: a tap instance is a
      VM the agent cannot send from) and both namespaces are traced.
      Returns ``{"lines": [...]}``.

    The context dict carries ``request_id`` (the controller passes on the one
    of the request it is handling; see :mod:`novanet.rpc.context`): it is
    not an argument and needs no version change.
    """

    VERSION = "1.3"

    def __init__(
        self, transport: Any, timeout: float | None = None, retry: int | None = None
    ) -> None:
        """:param retry: connection attempts when sending (None: oslo.messaging's, for ever)."""
        self.client = rpc.get_client(transport, TOPIC, self.VERSION, timeout=timeout)
        self.retry = retry

    def setup_instance(
        self,
        instance: InstanceNetwork,
        timeout: float | None = None,
        members: Mapping[int, Iterable[str]] | None = None,
    ) -> dict[str, Any]:
        """Plug the VIF and install the instance's chain; returns ``{"devname": "vnetN"}``."""
        extra: dict[str, Any] = {}
        version = "1.0"
        if instance.rules or members:
            extra["members"] = members_to(members or {})
            version = "1.1"
        client = self.client.prepare(
            server=instance.host, timeout=timeout, retry=self.retry, version=version
        )
        return client.call(  # type: ignore[no-any-return]
            context.rpc_context(), "setup_instance", instance=instance.to_dict(), **extra
        )

    def update_security(
        self,
        host: str,
        rules: Mapping[str, Iterable[str]],
        members: Mapping[int, Iterable[str]],
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """New rules of instances on ``host`` and new members of source groups (1.1)."""
        client = self.client.prepare(server=host, timeout=timeout, retry=self.retry, version="1.1")
        return client.call(  # type: ignore[no-any-return]
            context.rpc_context(),
            "update_security",
            rules={uuid: list(r) for uuid, r in rules.items()},
            members=members_to(members),
        )

    def teardown_instance(self, instance: InstanceNetwork, timeout: float | None = None) -> None:
        """Remove the instance's chain, device and namespace (idempotent)."""
        client = self.client.prepare(server=instance.host, timeout=timeout, retry=self.retry)
        client.call(context.rpc_context(), "teardown_instance", instance=instance.to_dict())

    def node_facts(self, host: str, timeout: float | None = None) -> dict[str, Any]:
        """The facts of compute host ``host`` (1.2)."""
        client = self.client.prepare(server=host, timeout=timeout, retry=self.retry, version="1.2")
        return client.call(context.rpc_context(), "node_facts")  # type: ignore[no-any-return]

    def live_trace(
        self,
        host: str,
        probe: dict[str, Any],
        seconds: float,
        send: bool,
        delay: float,
        instance_uuid: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Compute host ``host``'s kernel trace of ``probe``'s flow (1.3); ``{"lines": [...]}``."""
        client = self.client.prepare(server=host, timeout=timeout, retry=self.retry, version="1.3")
        extra = {} if instance_uuid is None else {"instance_uuid": instance_uuid}
        return client.call(  # type: ignore[no-any-return]
            context.rpc_context(),
            "live_trace",
            probe=probe,
            seconds=seconds,
            send=send,
            delay=delay,
            **extra,
        )

    def refresh(self, host: str) -> None:
        """Ask the agent to resync everything from the controller (fire and forget)."""
        self.client.prepare(server=host).cast(context.rpc_context(), "refresh")
