"""The one place novanet runs external commands.

Every subprocess goes through :func:`execute`, so a failure always raises
:class:`~novanet.exception.ProcessExecutionError` carrying the command, its
exit code, stdout and stderr, and tests can substitute a single seam.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence

from novanet.exception import ProcessExecutionError

LOG = logging.getLogger(__name__)


def execute(
    cmd: Sequence[str],
    *,
    input: str | None = None,  # noqa: A002 - mirrors subprocess
    check: bool = True,
    timeout: float | None = 60.0,
    env: Mapping[str, str] | None = None,
    log_errors: bool = True,
) -> tuple[str, str]:
    """Run ``cmd`` (no shell) and return ``(stdout, stderr)``.

    :param input: text written to the command's stdin
    :param check: raise ProcessExecutionError on a non-zero exit code
    :param timeout: seconds before the command is killed and an error raised
    :param env: extra environment variables added to ours
    """
    argv = [str(part) for part in cmd]
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            close_fds=True,
            check=False,
        )
    except FileNotFoundError:
        raise ProcessExecutionError(
            argv, None, description=f"{argv[0]}: command not found"
        ) from None
    except subprocess.TimeoutExpired as exc:
        raise ProcessExecutionError(
            argv,
            None,
            _text(exc.stdout),
            _text(exc.stderr),
            description=f"timed out after {timeout} s",
        ) from None
    elapsed = time.monotonic() - started
    LOG.debug("ran %s in %.3f s: exit %s", argv, elapsed, proc.returncode)
    if check and proc.returncode != 0:
        error = ProcessExecutionError(argv, proc.returncode, proc.stdout, proc.stderr)
        if log_errors:
            LOG.error("%s; stderr: %s", error, proc.stderr.strip())
        raise error
    return proc.stdout, proc.stderr


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data
