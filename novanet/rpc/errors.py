"""Errors across RPC: one line for the caller, the traceback once in the server's log.

oslo.messaging sends the server's whole traceback with every exception and
the client's copy prints it as part of ``str(exc)``: a refused
``instance create`` showed operators a page of Python. Servers wrap their
endpoint methods with :func:`endpoint`; callers turn what comes back into
a one-line :class:`~novanet.exception.NovanetError` with :func:`one_line`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from novanet.exception import NovanetError

LOG = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# The suffix oslo.messaging gives the classes it rebuilds remote exceptions as.
_REMOTE_SUFFIX = "_Remote"


class InternalError(NovanetError):
    """A server failed in a way it did not anticipate (a bug); its log has the traceback."""


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def endpoint(service: str) -> Callable[[F], F]:
    """Decorate an RPC endpoint method of ``service`` (e.g. novanet-network).

    A :class:`NovanetError` is a refusal meant for the caller: logged as one
    line and returned as is. Anything else is a failure: logged once with
    its traceback, and returned as an :class:`InternalError` naming the
    exception, so the caller still gets one line and an exit code.
    """

    def decorate(func: F) -> F:
        import oslo_messaging

        @functools.wraps(func)
        def wrapper(self: Any, ctxt: Any, **kw: Any) -> Any:
            try:
                return func(self, ctxt, **kw)
            except NovanetError as exc:
                LOG.warning("%s refused: %s", func.__name__, first_line(str(exc)))
                raise
            except Exception as exc:
                LOG.exception("%s failed", func.__name__)
                reason = first_line(str(exc)) or "no message"
                raise InternalError(
                    f"{service} failed in {func.__name__}: {type(exc).__name__}: {reason} "
                    "(the traceback is in its log)"
                ) from None

        # Expected: oslo.messaging neither logs them again nor calls them
        # unexpected; the wrapper above already logged each exactly once.
        return oslo_messaging.expected_exceptions(NovanetError)(wrapper)  # type: ignore[no-any-return]

    return decorate


def one_line(exc: BaseException) -> NovanetError | None:
    """The one-line NovanetError an exception from an RPC call stands for (None: not remote).

    A NovanetError raised by the server comes back as a subclass that prints
    the server's traceback after the message; the message alone is its first
    argument. Its class (and so its exit code) is kept. Exceptions from
    modules the client may not rebuild arrive as oslo.messaging's RemoteError.
    """
    import oslo_messaging

    if isinstance(exc, NovanetError) and type(exc).__name__.endswith(_REMOTE_SUFFIX):
        base = next(
            cls
            for cls in type(exc).__mro__
            if issubclass(cls, NovanetError) and not cls.__name__.endswith(_REMOTE_SUFFIX)
        )
        message = first_line(str(exc.args[0])) if exc.args else base.__name__
        # Not base(message): some classes take other constructor arguments.
        clean = base.__new__(base)
        Exception.__init__(clean, message)
        return clean
    if isinstance(exc, oslo_messaging.RemoteError):
        reason = first_line(str(exc.value or "")) or "no message"
        return InternalError(f"the server failed: {exc.exc_type}: {reason}")
    return None
