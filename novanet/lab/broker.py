"""A RabbitMQ virtual host per lab, on the machine's broker.

Every lab (and every test) talks to the same broker, and oslo.messaging's
queue names are fixed by topic and host (``network``, ``compute.compute-1``):
two labs in one vhost would consume each other's RPC calls. Each lab
therefore gets its own vhost ``nl-<lab id>``, created at ``up`` and deleted
at ``down`` (also after a crash: the name derives from the lab id alone).
Deleting a vhost also drops its queues and closes its connections.

``rabbitmqctl`` starts an Erlang VM per call (about 0.5 s), so the lab calls
it as few times as it can: ``add_vhost`` is idempotent and ``delete_vhost``
of a missing vhost is recognised by its message instead of a prior listing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

from novanet import exception
from novanet.linux import processutils

RABBITMQCTL = "rabbitmqctl"
VHOST_PREFIX = "nl-"
USER = "guest"
# rabbitmqctl exits 65 (EX_DATAERR) for an unknown vhost; the text is what
# tells it apart from other data errors.
_MISSING = "does not exist"


def vhost_for(lab_id: str) -> str:
    """The lab's vhost name."""
    return f"{VHOST_PREFIX}{lab_id}"


# rabbitmqctl reaches the node over Erlang distribution; on a loaded machine
# a call now and then fails to connect ("unable to perform an operation on
# node", then a dump of the Erlang cookie hash) although the broker is fine.
ATTEMPTS = 3
RETRY_DELAY = 2.0


def _ctl(*args: str, sleep: Callable[[float], None] = time.sleep) -> tuple[str, str]:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return processutils.execute([RABBITMQCTL, "-q", *args], timeout=60, log_errors=False)
        except exception.ProcessExecutionError as exc:
            unreachable = exc.returncode is not None and _MISSING not in f"{exc.stdout}{exc.stderr}"
            if attempt == ATTEMPTS or not unreachable:
                raise
            sleep(RETRY_DELAY * attempt)
    raise AssertionError("unreachable")


def create_vhost(vhost: str, user: str = USER) -> None:
    """Create ``vhost`` (if needed) and give ``user`` every permission in it."""
    try:
        _ctl("add_vhost", vhost)
        _ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    except exception.ProcessExecutionError as exc:
        raise exception.NovanetError(
            f"cannot create the RabbitMQ vhost {vhost}: {_reason(exc)}"
        ) from None


def delete_vhost(vhost: str) -> bool:
    """Delete ``vhost``; False if it did not exist. Raises NovanetError otherwise."""
    try:
        _ctl("delete_vhost", vhost)
    except exception.ProcessExecutionError as exc:
        # Not installed (exit code None): no vhost of ours can exist either.
        if exc.returncode is None or _MISSING in f"{exc.stdout}{exc.stderr}":
            return False
        raise exception.NovanetError(
            f"cannot delete the RabbitMQ vhost {vhost}: {_reason(exc)}"
        ) from None
    return True


def _reason(exc: exception.ProcessExecutionError) -> str:
    if exc.returncode is None:
        return exc.description or "rabbitmqctl not found (package rabbitmq-server)"
    text = [line.strip() for line in (exc.stderr or exc.stdout or "").strip().splitlines()]
    # rabbitmqctl prints "Error: ..." first, then diagnostics (cookie hash, nodes tried)
    errors = [line for line in text if line.startswith("Error")]
    if errors:
        return errors[0]
    return text[-1] if text else f"rabbitmqctl exit code {exc.returncode}"


def queue_consumers(vhost: str, queue: str, port: int = 5672, timeout: float = 2.0) -> int:
    """Consumers of ``queue`` in ``vhost`` on the machine's broker (0 if it does not exist).

    An RPC server consumes from its topic queue once it serves, so this is
    the event the lab waits for before starting a client of that server: an
    oslo.messaging call published before the queue exists is dropped by the
    exchange and the caller waits out its whole timeout.
    """
    # Imported here: kombu comes with oslo.messaging and is needed only by the waits.
    import kombu

    url = f"amqp://{USER}:{USER}@127.0.0.1:{port}/{quote(vhost, safe='')}"
    conn = kombu.Connection(url, connect_timeout=timeout, transport_options={"max_retries": 0})
    try:
        channel = conn.channel()
        try:
            _, _, consumers = channel.queue_declare(queue=queue, passive=True)
        except conn.channel_errors:
            return 0  # 404 NOT_FOUND (the channel is closed by it): not declared yet
        return int(consumers)
    except (OSError, *conn.connection_errors):
        return 0  # no broker (yet): nobody consumes
    finally:
        conn.release()
