"""Request ids: one per operator command, carried through every RPC it causes.

novanet-manage makes one id per command (``req-<uuid>``, printed with
``--debug``); clients put the bound id in the RPC context dict
(``{"request_id": ...}``, oslo.messaging's context); servers bind it for the
duration of the call, so every log line of that work - on the controller and
on the compute host it calls - carries the same id. The id lives in a
context variable: each (green) thread has its own, nothing leaks between
concurrent requests.

The RPC APIs' versions do not change: the context travels beside the
arguments, and a server that does not know ``request_id`` ignores it.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "novanet_request_id", default=None
)
_VALID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


def current() -> str | None:
    return REQUEST_ID.get()


def rpc_context() -> dict[str, Any]:
    """The context dict of an outgoing call: the bound id, or a fresh one."""
    return {"request_id": REQUEST_ID.get() or new_request_id()}


@contextlib.contextmanager
def bound(request_id: str | None = None) -> Iterator[str]:
    """Bind ``request_id`` (a fresh one when None) for the block."""
    rid = request_id or new_request_id()
    token = REQUEST_ID.set(rid)
    try:
        yield rid
    finally:
        REQUEST_ID.reset(token)


def from_rpc(ctxt: Any) -> str | None:
    """The caller's id if it is one of ours (anything else is not trusted into the logs)."""
    if isinstance(ctxt, Mapping):
        value = ctxt.get("request_id")
        if isinstance(value, str) and _VALID.match(value):
            return value
    return None
