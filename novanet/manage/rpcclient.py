"""novanet-manage talking to novanet-network over RabbitMQ, with clear failures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from oslo_config import cfg

from novanet.exception import ServiceUnavailable
from novanet.rpc import context
from novanet.rpc import transport as rpc
from novanet.rpc.network_api import NetworkAPI


class _Api:
    """NetworkAPI whose transport-level failures become one-line ServiceUnavailable errors."""

    def __init__(self, api: NetworkAPI, timeout: float) -> None:
        self._api = api
        self._timeout = timeout

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._api, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            import oslo_messaging

            try:
                return method(*args, **kwargs)
            except oslo_messaging.MessagingTimeout:
                raise ServiceUnavailable(
                    f"novanet-network did not answer within {self._timeout:.0f} s "
                    "(is it running, and is RabbitMQ reachable?)"
                ) from None
            except oslo_messaging.MessageDeliveryFailure as exc:
                raise ServiceUnavailable(f"cannot reach RabbitMQ: {exc}") from None

        return call


@contextlib.contextmanager
def network_api(conf: cfg.ConfigOpts, timeout: float) -> Iterator[Any]:
    transport = rpc.get_transport(conf)
    try:
        yield _Api(NetworkAPI(transport, timeout=timeout), timeout)
    finally:
        transport.cleanup()


def notify_networks_changed(conf: cfg.ConfigOpts) -> bool:
    """Tell a running novanet-network to converge now (it also polls); never fails."""
    try:
        transport = rpc.get_transport(conf)
    except Exception:  # noqa: BLE001
        return False
    try:
        api = NetworkAPI(transport)
        api.client.prepare(retry=1).cast(context.rpc_context(), "refresh_networks")
        return True
    except Exception:  # noqa: BLE001 - the daemon picks the change up on its own
        return False
    finally:
        transport.cleanup()
