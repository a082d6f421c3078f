"""The command channel of a QEMU guest: its second serial port, on a unix socket.

Why a serial port: it needs no guest driver (8250 is built into Debian's
kernel, virtio-serial is a module), no network (the guest's own network is
what tests break on purpose), and QEMU exposes it as a unix socket
(``-chardev socket,server=on,wait=off``) that the lab reaches from outside
the node's network namespace.

Protocol, one command at a time (see the guest's loop in
:mod:`novanet.lab.vm.initramfs`):

- the host sends ``\\nRUN <id> <seconds> <length> <base64 of a shell script>\\n``
  (the leading newline ends whatever a dead client left half-written; the
  guest drops a line whose base64 is not ``length`` long: the 8250 driver
  clears the UART's FIFO when the guest opens the port, so the first bytes
  sent during boot can be lost);
- the guest runs the script with ``sh`` under ``timeout -s KILL <seconds>``,
  stdin /dev/null, and answers ``@@novanet out <id>``, stdout in base64,
  ``@@novanet err <id>``, stderr in base64, ``@@novanet end <id> <exit code>``.

The port is in raw mode without echo, base64 keeps any output intact, and
the random id lets the host skip what a command that outlived an earlier
client printed. QEMU accepts one client at a time and drops what the guest
writes while none is connected, so clients take a lock file first.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import fcntl
import secrets
import socket
import time
from collections.abc import Iterator

MARK = "@@novanet"
VERB = "RUN"
# What the guest waits for a command at most when the caller gives no bound.
DEFAULT_TIMEOUT = 60.0
# Added to the command's own bound: base64 through an emulated UART, a busy host.
MARGIN = 15.0


class ChannelError(Exception):
    """The guest did not answer (not booted yet, QEMU gone, timed out)."""


@dataclasses.dataclass(frozen=True)
class CommandResult:
    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def request(ident: str, script: str, timeout: float) -> bytes:
    """The request line for ``script`` (shell text run by the guest's sh)."""
    code = base64.b64encode(script.encode()).decode("ascii")
    return f"\n{VERB} {ident} {max(1, int(timeout))} {len(code)} {code}\n".encode("ascii")


class Response:
    """Parses the guest's answer to request ``ident`` as bytes arrive.

    Lines before ``@@novanet out <ident>`` (an earlier command's late answer,
    an echo from before the guest set raw mode) are skipped.
    """

    def __init__(self, ident: str) -> None:
        self.ident = ident
        self._pending = b""
        self._section: str | None = None
        self._parts: dict[str, list[str]] = {"out": [], "err": []}
        self.result: CommandResult | None = None

    def feed(self, data: bytes) -> CommandResult | None:
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for raw in lines:
            if self.result is None:
                self._line(raw.decode("ascii", "replace").strip())
        return self.result

    def _line(self, line: str) -> None:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == MARK and fields[2] == self.ident:
            if fields[1] in ("out", "err"):
                self._section = fields[1]
            elif fields[1] == "end" and self._section == "err" and len(fields) == 4:
                self.result = CommandResult(
                    _decode(self._parts["out"]), _decode(self._parts["err"]), int(fields[3])
                )
            return
        if self._section is not None and line:
            self._parts[self._section].append(line)


def _decode(lines: list[str]) -> str:
    try:
        return base64.b64decode("".join(lines)).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return "(undecodable output) " + "".join(lines)


@contextlib.contextmanager
def _locked(path: str, deadline: float) -> Iterator[None]:
    with open(path, "a", encoding="ascii") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ChannelError(f"{path}: another command still runs") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Channel:
    """Client of one guest's channel socket.

    :param path: the unix socket QEMU listens on
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def _connect(self, deadline: float) -> socket.socket:
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                return sock
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                sock.close()
                if time.monotonic() > deadline:
                    raise ChannelError(f"no guest channel at {self.path}: {exc}") from None
                time.sleep(0.1)

    def run(
        self, script: str, timeout: float = DEFAULT_TIMEOUT, margin: float = MARGIN
    ) -> CommandResult:
        """Run shell text in the guest; its stdout, stderr and exit code.

        The guest kills the command after ``timeout`` seconds (exit code 137);
        :class:`ChannelError` when no answer came ``margin`` seconds later.
        """
        deadline = time.monotonic() + timeout + margin
        ident = secrets.token_hex(6)
        with _locked(self.path + ".lock", deadline), self._connect(deadline) as sock:
            sock.sendall(request(ident, script, timeout))
            response = Response(ident)
            while response.result is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChannelError(f"the guest did not answer within {timeout + margin:.0f} s")
                sock.settimeout(left)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    raise ChannelError("the guest channel closed (did QEMU exit?)")
                response.feed(data)
            return response.result

    def wait_ready(self, timeout: float) -> None:
        """Until the guest's command loop answers (it starts early in its boot).

        Short attempts: a request sent while the guest opens the port can be
        cut (see the module's docstring) and is then never answered.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.run("true", timeout=1, margin=3)
                return
            except ChannelError:
                if time.monotonic() > deadline:
                    raise
