"""The RPC server side of topic ``network``: checks every payload, then calls the manager.

Version history: see :class:`novanet.rpc.network_api.NetworkAPI`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from novanet.exception import BadRequest, NovanetError
from novanet.explain import facts, live
from novanet.ipam.macs import normalize_mac
from novanet.network.manager import NetworkManager
from novanet.rpc import errors, payloads
from novanet.rpc import transport as rpc
from novanet.rpc.objects import members_to

LOG = logging.getLogger(__name__)


# One line per refusal in the log, the traceback once per failure; the
# caller gets one line either way (novanet.rpc.errors).
_expected = errors.endpoint("novanet-network")


class NetworkEndpoint:
    target = rpc.target("1.5")

    def __init__(
        self, manager: NetworkManager, facts: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        """:param facts: this node's facts (default: gathered with the manager's drift)."""
        self.manager = manager
        self._facts = facts or (lambda: node_facts(manager))

    # -- diagnose (1.4) ---------------------------------------------------------------

    @_expected
    def node_facts(self, ctxt: Any, **kw: Any) -> dict[str, Any]:
        """This node's facts (novanet.explain.facts); takes no argument."""
        _only(kw)
        return self._facts()

    # -- trace --live (1.5) -------------------------------------------------------------

    @_expected
    def live_trace(self, ctxt: Any, **kw: Any) -> dict[str, Any]:
        """The kernel's trace of a probe's flow in this node's namespace; ``{"lines": [...]}``."""
        _only(kw, *payloads.LIVE_TRACE_ARGS)
        request = payloads.live_trace(kw)
        return {"lines": live.run(request.probe, request.seconds, request.send, request.delay)}

    @_expected
    def create_instance(self, ctxt: Any, **kw: Any) -> dict[str, Any]:
        _only(
            kw,
            "display_name",
            "host",
            "vif_type",
            "mac",
            "user_data",
            "user_data_b64",
            "public_key",
            "security_groups",
            "floating_ip",
        )
        mac = kw.get("mac")
        if mac is not None:
            try:
                mac = normalize_mac(payloads.text(mac, "mac", max_len=17))
            except NovanetError as exc:
                raise BadRequest(str(exc)) from None
        created = self.manager.create_instance(
            display_name=payloads.text(kw.get("display_name"), "display_name"),
            host=payloads.host(kw.get("host")),
            vif_type=payloads.vif_type(kw.get("vif_type")),
            mac=mac,
            user_data=_user_data(kw),
            public_key=payloads.optional_text(
                kw.get("public_key"), "public_key", payloads.MAX_PUBLIC_KEY
            ),
            security_groups=_names(kw.get("security_groups")),
            floating_ip=_floating_request(kw.get("floating_ip")),
        )
        # floating IPs (1.3): what it got, auto-assigned or asked for
        return created.to_dict() | {"floating_ips": self.manager.floating_ips_of(created.uuid)}

    # -- floating IPs (1.3) -----------------------------------------------------------

    @_expected
    def associate_floating_ip(self, ctxt: Any, **kw: Any) -> dict[str, Any]:
        _only(kw, "address", "instance_uuid", "force")
        force = kw.get("force", False)
        if not isinstance(force, bool):
            raise BadRequest("force must be a boolean")
        return self.manager.associate_floating_ip(
            payloads.ipv4(kw.get("address"), "address"),
            payloads.uuid(kw.get("instance_uuid"), "instance_uuid"),
            force=force,
        )

    @_expected
    def disassociate_floating_ip(self, ctxt: Any, **kw: Any) -> dict[str, Any]:
        _only(kw, "address")
        return self.manager.disassociate_floating_ip(payloads.ipv4(kw.get("address"), "address"))

    @_expected
    def security_groups_changed(self, ctxt: Any, **kw: Any) -> dict[str, Any]:
        _only(kw, "rules_changed", "members_changed", "instances")
        return self.manager.security_groups_changed(
            rules_changed=_ids(kw.get("rules_changed"), "rules_changed"),
            members_changed=_ids(kw.get("members_changed"), "members_changed"),
            instances=[
                payloads.uuid(u, "instances") for u in _list(kw.get("instances"), "instances")
            ],
        )

    @_expected
    def get_host_members(self, ctxt: Any, **kw: Any) -> dict[str, list[str]]:
        _only(kw, "host")
        return members_to(self.manager.host_members(payloads.host(kw.get("host"))))

    @_expected
    def delete_instance(self, ctxt: Any, **kw: Any) -> dict[str, Any]:
        _only(kw, "instance_uuid")
        return self.manager.delete_instance(payloads.uuid(kw.get("instance_uuid"), "instance_uuid"))

    @_expected
    def allocate_for_instance(self, ctxt: Any, **kw: Any) -> dict[str, Any]:
        _only(kw, "instance_uuid", "mac")
        mac = kw.get("mac")
        return self.manager.allocate_for_instance(
            payloads.uuid(kw.get("instance_uuid"), "instance_uuid"),
            None if mac is None else payloads.mac(mac),
        ).to_dict()

    @_expected
    def deallocate_for_instance(self, ctxt: Any, **kw: Any) -> None:
        _only(kw, "instance_uuid")
        self.manager.deallocate_for_instance(
            payloads.uuid(kw.get("instance_uuid"), "instance_uuid")
        )

    @_expected
    def get_instance_nw_info(self, ctxt: Any, **kw: Any) -> dict[str, Any]:
        _only(kw, "instance_uuid")
        uuid = payloads.uuid(kw.get("instance_uuid"), "instance_uuid")
        return self.manager.get_instance_nw_info(uuid).to_dict()

    @_expected
    def get_host_instances(self, ctxt: Any, **kw: Any) -> list[dict[str, Any]]:
        _only(kw, "host")
        return [i.to_dict() for i in self.manager.get_host_instances(payloads.host(kw.get("host")))]

    @_expected
    def lease_fixed_ip(self, ctxt: Any, **kw: Any) -> bool:
        _only(kw, "address", "mac")
        return self.manager.lease_fixed_ip(
            payloads.ipv4(kw.get("address"), "address"), payloads.mac(kw.get("mac"))
        )

    @_expected
    def release_fixed_ip(self, ctxt: Any, **kw: Any) -> bool:
        _only(kw, "address", "mac")
        return self.manager.release_fixed_ip(
            payloads.ipv4(kw.get("address"), "address"), payloads.mac(kw.get("mac"))
        )

    def report_state(self, ctxt: Any, **kw: Any) -> None:
        try:
            _only(kw, "host", "binary", "topic")
            self.manager.report_state(
                payloads.host(kw.get("host")),
                payloads.text(kw.get("binary"), "binary", max_len=64),
                payloads.text(kw.get("topic"), "topic", max_len=64),
            )
        except BadRequest as exc:  # a cast: nobody to tell but the log
            LOG.warning("ignored a malformed report_state: %s", exc)

    def refresh_networks(self, ctxt: Any, **kw: Any) -> None:
        self.manager.refresh_networks()


def node_facts(manager: NetworkManager, *more_iptables: Any) -> dict[str, Any]:
    """The controller's facts: its DHCP bridge's dnsmasq, the managers' drift."""
    serving = manager.serving()
    return facts.gather(
        manager.conf,
        "network",
        bridge=serving[0].bridge if serving else None,
        drift=lambda: manager.drift(*more_iptables),
    )


def _user_data(kw: dict[str, Any]) -> bytes | None:
    """Bytes from ``user_data_b64`` (1.1, any content) or ``user_data`` (1.0, text)."""
    if kw.get("user_data_b64") is not None:
        if kw.get("user_data") is not None:
            raise BadRequest("give user_data or user_data_b64, not both")
        return payloads.base64_bytes(kw["user_data_b64"], "user_data_b64", payloads.MAX_USER_DATA)
    text = payloads.optional_text(kw.get("user_data"), "user_data", payloads.MAX_USER_DATA)
    if text is None:
        return None
    data = text.encode("utf-8")
    if len(data) > payloads.MAX_USER_DATA:
        raise BadRequest(f"user_data is larger than {payloads.MAX_USER_DATA} bytes")
    return data


def _floating_request(value: Any) -> str | None:
    """None: none asked for; "": any free one; else an IPv4 address."""
    if value is None or value == "":
        return value  # type: ignore[no-any-return]
    return payloads.ipv4(value, "floating_ip")


def _list(value: Any, field: str, limit: int = 10000) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > limit:
        raise BadRequest(f"{field} must be a list of at most {limit} items")
    return value


def _ids(value: Any, field: str) -> list[int]:
    return [payloads.integer(v, field) for v in _list(value, field)]


def _names(value: Any) -> list[str] | None:
    if value is None:
        return None
    names = [payloads.text(v, "security_groups") for v in _list(value, "security_groups", 100)]
    return names or None


def _only(kw: dict[str, Any], *allowed: str) -> None:
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise BadRequest(f"unexpected argument(s): {', '.join(unknown)}")
