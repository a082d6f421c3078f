"""Exceptions shared across novanet.

Every error meant for an operator carries a one-line message; programs print
it as ``<prog>: error: <message>`` and exit 1 (runtime) or 2 (usage/config).
"""

from __future__ import annotations


class NovanetError(Exception):
    """Base class: a failure whose message is fit for an operator."""

    exit_code = 1


class UsageError(NovanetError):
    """Bad command-line arguments or configuration."""

    exit_code = 2


class NotFound(NovanetError):
    """A named object (network, address, instance) does not exist."""


class Conflict(NovanetError):
    """The request contradicts the current state (overlap, address in use...)."""


class BadRequest(NovanetError):
    """An RPC request whose payload is malformed; nothing was changed."""


class ServiceUnavailable(NovanetError):
    """A daemon that had to take part did not answer in time."""


class NoMoreFixedIps(NovanetError):
    """The pool of a network is exhausted."""


class ProcessExecutionError(NovanetError):
    """A command failed. Carries everything needed to debug it."""

    def __init__(
        self,
        cmd: list[str],
        exit_code: int | None,
        stdout: str = "",
        stderr: str = "",
        description: str = "",
    ) -> None:
        self.cmd = list(cmd)
        self.returncode = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.description = description
        detail = (stderr or stdout).strip().splitlines()
        reason = description or (detail[-1] if detail else "no output")
        super().__init__(
            f"command {' '.join(self.cmd)!s} failed with exit code {exit_code}: {reason}"
        )
