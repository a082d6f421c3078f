"""Client side of the network RPC API (topic ``network``, served by novanet-network)."""

from __future__ import annotations

from typing import Any

from novanet.rpc import context
from novanet.rpc import transport as rpc

TOPIC = "network"


class NetworkAPI:
    """Calls into novanet-network.

    API version history:

    * 1.0 - Initial version: ``create_instance``, ``delete_instance``,
      ``allocate_for_instance``, ``deallocate_for_instance``,
      ``get_instance_nw_info``, ``get_host_instances``, ``lease_fixed_ip``,
      ``release_fixed_ip``, ``report_state``, ``refresh_networks``.

    The context dict carries ``request_id`` (``req-<uuid>``) so the work of
    one operator command can be followed across daemons' logs; it is not an
    argument, a server that ignores it behaves the same: no version change.

    Bump the minor version for a compatible addition (new method or optional
    argument; callers ``can_send_version`` before using it), the major one for
    anything else.
    """

    VERSION = "1.0"

    def __init__(self, transport: Any, timeout: float | None = None) -> None:
        self.client = rpc.get_client(transport, TOPIC, self.VERSION, timeout=timeout)

    def _call(self, method: str, timeout: float | None = None, **kwargs: Any) -> Any:
        client = self.client.prepare(timeout=timeout) if timeout else self.client
        return client.call(context.rpc_context(), method, **kwargs)

    def create_instance(
        self,
        *,
        display_name: str,
        host: str,
        vif_type: str,
        mac: str | None = None,
        user_data: str | None = None,
        public_key: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Allocate an address, update dnsmasq, have ``host`` plug and filter it."""
        return self._call(  # type: ignore[no-any-return]
            "create_instance",
            timeout=timeout,
            display_name=display_name,
            host=host,
            vif_type=vif_type,
            mac=mac,
            user_data=user_data,
            public_key=public_key,
        )

    def delete_instance(self, *, instance_uuid: str, timeout: float | None = None) -> None:
        """Unplug on the compute host, release the address, remove the instance."""
        self._call("delete_instance", timeout=timeout, instance_uuid=instance_uuid)

    def allocate_for_instance(
        self, *, instance_uuid: str, mac: str | None = None
    ) -> dict[str, Any]:
        return self._call(  # type: ignore[no-any-return]
            "allocate_for_instance", instance_uuid=instance_uuid, mac=mac
        )

    def deallocate_for_instance(self, *, instance_uuid: str) -> None:
        self._call("deallocate_for_instance", instance_uuid=instance_uuid)

    def get_instance_nw_info(self, *, instance_uuid: str) -> dict[str, Any]:
        return self._call("get_instance_nw_info", instance_uuid=instance_uuid)  # type: ignore[no-any-return]

    def get_host_instances(
        self, *, host: str, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Every instance that should run on ``host``, with its network description."""
        return self._call("get_host_instances", timeout=timeout, host=host)  # type: ignore[no-any-return]

    def lease_fixed_ip(self, *, address: str, mac: str) -> bool:
        return bool(self._call("lease_fixed_ip", address=address, mac=mac))

    def release_fixed_ip(self, *, address: str, mac: str) -> bool:
        return bool(self._call("release_fixed_ip", address=address, mac=mac))

    def report_state(self, *, host: str, binary: str, topic: str) -> None:
        """A heartbeat from a service without database access (the compute agent)."""
        self.client.cast(
            context.rpc_context(), "report_state", host=host, binary=binary, topic=topic
        )

    def refresh_networks(self) -> None:
        """Networks changed in the database (novanet-manage): converge bridges, dnsmasq, rules."""
        self.client.cast(context.rpc_context(), "refresh_networks")
