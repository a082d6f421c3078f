"""Client side of the network RPC API (topic ``network``, served by novanet-network)."""

from __future__ import annotations

import base64
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
    * 1.1 - ``create_instance`` takes ``user_data_b64``: user data as bytes
      (base64 on the wire), any content; ``user_data`` (text) stays accepted.
    * 1.2 - Security groups: ``create_instance`` takes ``security_groups``
      (names; default ``["default"]``); new ``security_groups_changed``
      (``rules_changed``, ``members_changed``: group ids; ``instances``:
      uuids; returns ``{"hosts": [...], "notes": [...]}`` once the hosts
      concerned applied it) and ``get_host_members`` (``{"<group id>":
      [addresses]}`` of the source groups named by the rules of a host's
      instances: the compute agent's resync).
    * 1.3 - Floating IPs: new ``associate_floating_ip`` (``address``,
      ``instance_uuid``, ``force``) and ``disassociate_floating_ip``
      (``address``), each returning ``{"address", "fixed_address",
      "instance_uuid", "interface", "host", "changed"}`` once the
      controller's addresses and rules are in place; ``create_instance``
      takes ``floating_ip`` (an address, or "" for any free one of
      default_floating_pool) and its answer carries ``floating_ips``.
    * 1.4 - Diagnose: new ``node_facts()`` (no argument) returning the
      controller's facts (:mod:`novanet.explain.facts`, schema 1: links,
      routes, sysctls, iptables-save texts, ipsets, dnsmasq, hostsfile,
      and ``drift``: what its periodic checks would repair now).
    * 1.5 - ``trace --live``: new ``live_trace(probe, seconds, send,
      delay)``: ``probe`` ``{"src", "dst", "proto" (icmp|tcp|udp),
      "sport"?, "dport"?}`` (IPv4 addresses, ports 1-65535, dport for
      tcp/udp only); the controller traces the probe's flow with nftables
      tracing (:mod:`novanet.explain.live`) for ``seconds`` (1-30) and, with
      ``send``, sends the probe itself ``delay`` seconds in; returns
      ``{"lines": [nft monitor trace lines]}``.

    The context dict carries ``request_id`` (``req-<uuid>``) so the work of
    one operator command can be followed across daemons' logs; it is not an
    argument, a server that ignores it behaves the same: no version change.

    Bump the minor version for a compatible addition (new method or optional
    argument; callers ``can_send_version`` before using it), the major one for
    anything else.
    """

    VERSION = "1.5"

    def __init__(
        self, transport: Any, timeout: float | None = None, retry: int | None = None
    ) -> None:
        """:param retry: connection attempts when sending (None: oslo.messaging's, for ever)."""
        self.client = rpc.get_client(transport, TOPIC, "1.0", timeout=timeout)
        self.retry = retry

    def _call(
        self, method: str, timeout: float | None = None, version: str = "1.0", **kwargs: Any
    ) -> Any:
        options: dict[str, Any] = {"version": version}
        if timeout:
            options["timeout"] = timeout
        if self.retry is not None:
            options["retry"] = self.retry
        return self.client.prepare(**options).call(context.rpc_context(), method, **kwargs)

    def create_instance(
        self,
        *,
        display_name: str,
        host: str,
        vif_type: str,
        mac: str | None = None,
        user_data: bytes | None = None,
        public_key: str | None = None,
        timeout: float | None = None,
        security_groups: list[str] | None = None,
        floating_ip: str | None = None,
    ) -> dict[str, Any]:
        """Allocate an address, update dnsmasq, have ``host`` plug and filter it."""
        extra: dict[str, Any] = {}
        version = "1.0"
        if user_data is not None:
            # JSON carries no bytes: base64, so that any user data arrives as it was.
            extra["user_data_b64"] = base64.b64encode(user_data).decode("ascii")
            version = "1.1"
        if security_groups is not None:
            extra["security_groups"] = list(security_groups)
            version = "1.2"
        if floating_ip is not None:
            extra["floating_ip"] = floating_ip
            version = "1.3"
        return self._call(  # type: ignore[no-any-return]
            "create_instance",
            timeout=timeout,
            version=version,
            display_name=display_name,
            host=host,
            vif_type=vif_type,
            mac=mac,
            public_key=public_key,
            **extra,
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

    def security_groups_changed(
        self,
        *,
        rules_changed: list[int] | None = None,
        members_changed: list[int] | None = None,
        instances: list[str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Groups changed in the database (novanet-manage): tell the hosts concerned."""
        return self._call(  # type: ignore[no-any-return]
            "security_groups_changed",
            timeout=timeout,
            version="1.2",
            rules_changed=rules_changed or [],
            members_changed=members_changed or [],
            instances=instances or [],
        )

    def get_host_members(self, *, host: str, timeout: float | None = None) -> dict[str, Any]:
        """Addresses of the source groups the rules of ``host``'s instances name."""
        return self._call("get_host_members", timeout=timeout, version="1.2", host=host)  # type: ignore[no-any-return]

    def associate_floating_ip(
        self, *, address: str, instance_uuid: str, force: bool = False, timeout: float | None = None
    ) -> dict[str, Any]:
        """Map a floating IP onto an instance; returns once the controller applied it."""
        return self._call(  # type: ignore[no-any-return]
            "associate_floating_ip",
            timeout=timeout,
            version="1.3",
            address=address,
            instance_uuid=instance_uuid,
            force=force,
        )

    def disassociate_floating_ip(
        self, *, address: str, timeout: float | None = None
    ) -> dict[str, Any]:
        """Unmap a floating IP; returns once rules, address and conntrack entries are gone."""
        return self._call(  # type: ignore[no-any-return]
            "disassociate_floating_ip", timeout=timeout, version="1.3", address=address
        )

    def node_facts(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The controller's facts (1.4): what its kernel and dnsmasq hold now."""
        return self._call("node_facts", timeout=timeout, version="1.4")  # type: ignore[no-any-return]

    def live_trace(
        self,
        probe: dict[str, Any],
        seconds: float,
        send: bool,
        delay: float,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The controller's kernel trace of ``probe``'s flow (1.5); ``{"lines": [...]}``."""
        return self._call(  # type: ignore[no-any-return]
            "live_trace",
            timeout=timeout,
            version="1.5",
            probe=probe,
            seconds=seconds,
            send=send,
            delay=delay,
        )

    def refresh_networks(self) -> None:
        """Networks changed in the database (novanet-manage): converge bridges, dnsmasq, rules."""
        self.client.cast(context.rpc_context(), "refresh_networks")
