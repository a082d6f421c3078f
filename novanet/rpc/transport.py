"""oslo.messaging plumbing: the transport from config, clients and servers.

Exceptions from ``novanet.exception`` raised by a server travel back to the
caller as the same class (allowed_remote_exmods), so a refused request reads
the same whether it was refused locally or on the controller.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from oslo_config import cfg

from novanet.conf import rpc as rpc_conf

EXCHANGE = "novanet"
ALLOWED_EXMODS = ["novanet.exception"]


def _messaging() -> Any:
    # oslo.messaging pulls eventlet-aware modules in; import it only when a
    # program actually talks RPC (novanet-manage db/network commands do not).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import oslo_messaging

    # Before any of its options is copied or registered: every copy must carry
    # the same default, or registering it twice is a DuplicateOptError.
    oslo_messaging.set_transport_defaults(EXCHANGE)
    return oslo_messaging


def _register_private_groups(conf: cfg.ConfigOpts) -> None:
    """oslo.messaging registers these groups only on cfg.CONF; tests use private confs."""
    from oslo_messaging._metrics import client as metrics  # noqa: PLC0415
    from oslo_messaging._tracing import client as tracing  # noqa: PLC0415

    for group, opts in (
        ("oslo_messaging_metrics", metrics.oslo_messaging_metrics),
        ("oslo_messaging_tracing", tracing.oslo_messaging_tracing),
    ):
        try:
            conf.register_opts(opts, group=group)
        except cfg.DuplicateOptError:
            pass


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register oslo.messaging's own options (transport_url & co) on ``conf``."""
    _messaging()  # imported with its deprecation warnings silenced
    _register_private_groups(conf)
    from oslo_messaging import opts as messaging_opts  # noqa: PLC0415

    for group, opts in messaging_opts.list_opts():
        try:
            conf.register_opts(opts, group=group)
        except cfg.DuplicateOptError:
            pass


def transport_url(conf: cfg.ConfigOpts) -> str:
    """transport_url if the operator set it, else the legacy rabbit_* flags, else the default."""
    register_opts(conf)
    explicit = None
    location = conf.get_location("transport_url")
    if location is not None and location.location != cfg.Locations.opt_default:
        explicit = conf.transport_url
    return explicit or rpc_conf.legacy_transport_url(conf) or rpc_conf.DEFAULT_TRANSPORT_URL


# user:password@ after the scheme or after a comma (oslo.messaging's host list)
_CREDENTIALS = re.compile(r"(://|,)([^:@/,]*):[^@/,]*@")


def display_url(url: str) -> str:
    """The transport URL with every password replaced by ``***`` (for messages and logs)."""
    return _CREDENTIALS.sub(r"\1\2:***@", url)


def check_broker(conf: cfg.ConfigOpts, timeout: float) -> None:
    """Connect to the broker once, within ``timeout`` seconds, or raise ServiceUnavailable.

    oslo.messaging retries a connection for ever (its ``retry`` reaches only
    the sending side, not the reply queue a call listens on), so a client
    that must fail in bounded time asks first. Only AMQP (rabbit) URLs are
    probed; other transports (fake:, kombu+memory:) have no broker to ask.
    """
    from novanet.exception import ServiceUnavailable

    url = transport_url(conf)
    parsed = _messaging().TransportURL.parse(conf, url)
    if parsed.transport != "rabbit" or not parsed.hosts:
        return
    import kombu

    shown = display_url(url)
    reason = "no host in the URL"
    for host in parsed.hosts:
        address = f"[{host.hostname}]" if host.hostname and ":" in host.hostname else host.hostname
        amqp_url = (
            f"amqp://{quote(host.username or 'guest', safe='')}:"
            f"{quote(host.password or 'guest', safe='')}@{address or '127.0.0.1'}:"
            f"{host.port or 5672}/{quote(parsed.virtual_host or '', safe='')}"
        )
        connection = kombu.Connection(
            amqp_url,
            connect_timeout=timeout,
            heartbeat=0,
            ssl=bool(conf.oslo_messaging_rabbit.ssl),
        )
        try:
            connection.ensure_connection(max_retries=0, timeout=timeout)
            return
        except Exception as exc:  # noqa: BLE001 - socket, AMQP and kombu errors alike
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "timed out" in reason or isinstance(exc, TimeoutError):
                reason = f"no AMQP handshake within {timeout:.0f} s ({reason})"
        finally:
            connection.release()
    raise ServiceUnavailable(f"cannot reach RabbitMQ at {shown}: {reason}")


def get_transport(conf: cfg.ConfigOpts) -> Any:
    om = _messaging()
    url = transport_url(conf)
    try:
        return om.get_rpc_transport(conf, url=url, allowed_remote_exmods=ALLOWED_EXMODS)
    except om.InvalidTransportURL as exc:
        from novanet.exception import UsageError

        raise UsageError(
            f"invalid transport_url {display_url(url)!r}: {display_url(str(exc))}"
        ) from None


def get_client(transport: Any, topic: str, version: str, timeout: float | None = None) -> Any:
    om = _messaging()
    target = om.Target(topic=topic, version=version)
    return om.get_rpc_client(transport, target, timeout=timeout)


def get_server(transport: Any, topic: str, server: str, endpoints: Sequence[Any]) -> Any:
    om = _messaging()
    target = om.Target(topic=topic, server=server)
    return om.get_rpc_server(transport, target, list(endpoints))


def target(version: str, namespace: str | None = None) -> Any:
    return _messaging().Target(version=version, namespace=namespace)
