"""The server side of every RPC endpoint: request id bound, latency measured.

oslo.messaging finds methods on an endpoint with ``getattr``; this wrapper
hands out each public method wrapped, so the endpoint classes stay plain:
the caller's request id (from the context dict, see
:mod:`novanet.rpc.context`) is bound while the method runs, and with
metrics on, the time it took is observed by method and outcome.
"""

from __future__ import annotations

import functools
from typing import Any

from novanet.metrics import Metrics
from novanet.rpc import context


class ServerEndpoint:
    def __init__(self, endpoint: Any, metrics: Metrics | None = None) -> None:
        self._endpoint = endpoint
        self._metrics = metrics
        self.target = endpoint.target

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._endpoint, name)
        if name.startswith("_") or not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(ctxt: Any, **kwargs: Any) -> Any:
            timer = self._metrics.rpc_timer(name) if self._metrics is not None else None
            outcome = "error"
            with context.bound(context.from_rpc(ctxt)):
                try:
                    result = attr(ctxt, **kwargs)
                    outcome = "ok"
                    return result
                finally:
                    if timer is not None:
                        timer.done(outcome)

        # Made once per method: __getattr__ is not called again for it.
        self.__dict__[name] = call
        return call
