"""novanet-manage talking to novanet-network over RabbitMQ: bounded in time, one-line errors.

Every call ends within a known time, whatever the broker does:

1. the broker is asked first (:func:`novanet.rpc.transport.check_broker`,
   within ``rpc_connect_timeout``): a closed port, a host that accepts TCP
   but never speaks AMQP, or a refused login fail here, naming the broker
   URL without its password;
2. the call itself runs with oslo.messaging's reply timeout and a bounded
   number of connection retries, in a worker thread that the command stops
   waiting for after that timeout plus ``rpc_connect_timeout`` (the reply
   queue oslo.messaging opens for a call retries its connection for ever,
   so a broker lost between 1. and 2. must not hang the command);
3. an error raised by novanet-network arrives as one line with its exit
   code (:func:`novanet.rpc.errors.one_line`), never with the server's
   traceback.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, TypeVar

from oslo_config import cfg

from novanet.exception import ServiceUnavailable
from novanet.rpc import context, errors
from novanet.rpc import transport as rpc
from novanet.rpc.network_api import NetworkAPI

# Connection attempts of the sending side of a call (oslo.messaging's retry=).
SEND_RETRIES = 1

K = TypeVar("K", bound=Hashable)
# One call of ask_all: given the network and compute API clients, the answer.
NodeCall = Callable[[Any, Any], Any]


def bounded(func: Callable[[], Any], seconds: float, on_timeout: Callable[[], Exception]) -> Any:
    """``func()``'s result, or ``on_timeout()`` raised once ``seconds`` have passed.

    The worker is a daemon thread: a call stuck in a connection retry loop
    is abandoned, not waited for, and does not keep the process alive. It
    runs in a copy of the caller's context, so the command's request id
    (novanet.rpc.context) travels with the call.
    """
    outcome: dict[str, Any] = {}
    caller = contextvars.copy_context()

    def run() -> None:
        try:
            outcome["value"] = caller.run(func)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="rpc-call", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise on_timeout()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class _Api:
    """NetworkAPI whose calls are bounded in time and fail with one line."""

    def __init__(self, api: NetworkAPI, timeout: float, connect_timeout: float, url: str) -> None:
        self._api = api
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._url = url
        self.stuck = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._api, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            limit = self._timeout + self._connect_timeout

            def gave_up() -> Exception:
                self.stuck = True
                return ServiceUnavailable(
                    f"no answer from novanet-network through RabbitMQ at {self._url} "
                    f"within {limit:.0f} s (the broker stopped answering?)"
                )

            try:
                return bounded(lambda: method(*args, **kwargs), limit, gave_up)
            except Exception as exc:
                raise self._translate(exc) from None

        return call

    def _translate(self, exc: Exception) -> Exception:
        import oslo_messaging

        clean = errors.one_line(exc)
        if clean is not None:
            return clean
        if isinstance(exc, oslo_messaging.MessagingTimeout):
            return ServiceUnavailable(
                f"novanet-network did not answer within {self._timeout:.0f} s: is it "
                f"running? (RabbitMQ at {self._url} answers)"
            )
        if isinstance(exc, oslo_messaging.MessagingException):
            reason = errors.first_line(rpc.display_url(str(exc))) or type(exc).__name__
            return ServiceUnavailable(f"RabbitMQ at {self._url}: {reason}")
        return exc


@contextlib.contextmanager
def network_api(conf: cfg.ConfigOpts, timeout: float) -> Iterator[Any]:
    """A NetworkAPI for one command; its calls take at most ``timeout`` + rpc_connect_timeout."""
    connect_timeout = float(conf.rpc_connect_timeout)
    url = rpc.display_url(rpc.transport_url(conf))
    transport = rpc.get_transport(conf)
    api = _Api(
        NetworkAPI(transport, timeout=timeout, retry=SEND_RETRIES), timeout, connect_timeout, url
    )
    try:
        rpc.check_broker(conf, connect_timeout)
        yield api
    finally:
        if not api.stuck:
            # A worker stuck in oslo.messaging's reconnect loop holds the
            # transport's connection: cleaning up would wait for it.
            transport.cleanup()


def notify_networks_changed(conf: cfg.ConfigOpts) -> bool:
    """Tell a running novanet-network to converge now (it also polls); never fails, bounded."""
    try:
        connect_timeout = float(conf.rpc_connect_timeout)
        rpc.check_broker(conf, connect_timeout)
        transport = rpc.get_transport(conf)
    except Exception:  # noqa: BLE001 - the daemon picks the change up on its own
        return False
    api = NetworkAPI(transport)

    def cast() -> None:
        api.client.prepare(retry=SEND_RETRIES).cast(context.rpc_context(), "refresh_networks")

    try:
        bounded(cast, connect_timeout, lambda: TimeoutError())
    except Exception:  # noqa: BLE001 - the daemon picks the change up on its own
        return False
    transport.cleanup()
    return True


def ask_all(
    conf: cfg.ConfigOpts, calls: Mapping[K, NodeCall], timeout: float
) -> tuple[dict[K, Any], dict[K, str]]:
    """Every call at once, each bounded: the answers, and for the others why, in one line.

    Each call gets the NetworkAPI and ComputeAPI clients (reply ``timeout``,
    SEND_RETRIES) and is abandoned after ``timeout`` + ``rpc_connect_timeout``
    (see :func:`bounded`): a daemon that is down or a broker lost meanwhile
    costs that much once, not once per node. The transport is cleaned up
    unless a call is still stuck in it.
    """
    import oslo_messaging

    from novanet.rpc.compute_api import ComputeAPI

    transport = rpc.get_transport(conf)
    network = NetworkAPI(transport, timeout=timeout, retry=SEND_RETRIES)
    compute = ComputeAPI(transport, timeout=timeout, retry=SEND_RETRIES)
    limit = timeout + float(conf.rpc_connect_timeout)
    answers: dict[K, Any] = {}
    failures: dict[K, str] = {}
    lock = threading.Lock()

    def ask(key: K, call: NodeCall) -> None:
        try:
            answer = bounded(
                lambda: call(network, compute),
                limit,
                lambda: TimeoutError(f"no answer within {limit:g} s"),
            )
        except oslo_messaging.MessagingTimeout:
            reason = f"no answer within {timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - a line of the report, not a crash
            clean = errors.one_line(exc)
            reason = errors.first_line(str(clean or exc)) or type(exc).__name__
        else:
            with lock:
                answers[key] = answer
            return
        with lock:
            failures[key] = reason

    threads = [
        threading.Thread(target=ask, args=item, name="rpc-ask", daemon=True)
        for item in calls.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(limit + 1)
    if not any(thread.is_alive() for thread in threads):
        transport.cleanup()
    return answers, failures
