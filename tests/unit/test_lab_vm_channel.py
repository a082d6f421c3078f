"""The command channel: the host client against the guest's real loop (busybox sh on a pty).

The guest side is the ``serve`` function the VM's init runs, executed here by
busybox sh with a pseudo-terminal as its serial port; a relay thread plays
QEMU's ``-chardev socket,server=on``: one client at a time, and what the
guest writes while no client is connected is dropped.
"""

from __future__ import annotations

import base64
import os
import pty
import select
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from novanet.lab.vm import channel, initramfs


class FakeSerialPort:
    """busybox sh running ``serve`` on a pty, exposed on a unix socket like QEMU does."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, "channel.sock")
        master, slave = pty.openpty()
        self.master = master
        script = f"work={directory}\n{initramfs.SERVE}\nserve\n"
        self.proc = subprocess.Popen(
            ["busybox", "sh", "-c", script], stdin=slave, stdout=slave, stderr=slave
        )
        os.close(slave)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(4)
        self.stopping = False
        self.thread = threading.Thread(target=self._relay, daemon=True)
        self.thread.start()

    def _relay(self) -> None:
        client: socket.socket | None = None
        while not self.stopping:
            watched: list[object] = [self.master, self.server if client is None else client]
            ready, _, _ = select.select(watched, [], [], 0.1)
            if self.master in ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                if client is not None:
                    client.sendall(data)  # else dropped, as QEMU does
            if client is None and self.server in ready:
                client, _ = self.server.accept()
            elif client is not None and client in ready:
                data = client.recv(65536)
                if data:
                    os.write(self.master, data)
                else:
                    client.close()
                    client = None

    def close(self) -> None:
        self.stopping = True
        self.thread.join(timeout=5)
        self.proc.kill()
        self.proc.wait(timeout=5)
        self.server.close()
        os.close(self.master)


@pytest.fixture
def port(tmp_path: os.PathLike[str]) -> Iterator[FakeSerialPort]:
    if not shutil.which("busybox"):
        pytest.skip("needs busybox (the guest's shell)")
    fake = FakeSerialPort(os.fspath(tmp_path))
    try:
        yield fake
    finally:
        fake.close()


def test_stdout_stderr_and_exit_code(port: FakeSerialPort) -> None:
    chan = channel.Channel(port.path)
    chan.wait_ready(timeout=20)
    result = chan.run("echo hello; echo oops >&2; printf 'no newline'; exit 3", timeout=10)
    assert result == channel.CommandResult("hello\nno newline", "oops\n", 3)
    assert not result.ok and chan.run("true").ok


def test_output_is_carried_intact(port: FakeSerialPort) -> None:
    chan = channel.Channel(port.path)
    # Lines that look like the protocol, quotes, a long output.
    script = "echo '@@novanet end x 0'; echo \"it's\"; seq 1 20000"
    result = chan.run(script, timeout=30)
    expected = "@@novanet end x 0\nit's\n" + "".join(f"{i}\n" for i in range(1, 20001))
    assert result.stdout == expected and result.exit_code == 0


def test_a_command_is_killed_at_its_bound(port: FakeSerialPort) -> None:
    result = channel.Channel(port.path).run("sleep 30", timeout=1)
    assert result.exit_code == 137  # SIGKILL from the guest's timeout


def test_a_late_answer_to_another_client_is_skipped(port: FakeSerialPort) -> None:
    chan = channel.Channel(port.path)
    chan.wait_ready(timeout=20)
    gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    gone.connect(port.path)
    gone.sendall(channel.request("feedc0de0000", "sleep 1; echo late", timeout=10))
    gone.close()  # a client that timed out: its answer comes while the next one listens
    assert chan.run("echo now", timeout=10).stdout == "now\n"


def test_a_cut_request_never_runs(port: FakeSerialPort) -> None:
    chan = channel.Channel(port.path)
    chan.wait_ready(timeout=20)
    marker = os.path.join(port.directory, "ran")
    # Any first half of this script would create the marker if it ran.
    line = channel.request("0123456789ab", f"touch {marker}; : {'x' * 300}", timeout=5)
    code = line.split()[-1]
    # Bytes lost as the guest opened the port: a valid, shorter base64 text.
    cut = line.replace(code, code[: len(code) // 8 * 4])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(port.path)
        sock.sendall(cut)
    assert chan.run("echo after", timeout=10).stdout == "after\n"
    assert not os.path.exists(marker)
    assert base64.b64decode(code[: len(code) // 8 * 4]).decode().startswith(f"touch {marker};")


def test_no_guest_is_a_channel_error(tmp_path: os.PathLike[str]) -> None:
    chan = channel.Channel(os.path.join(os.fspath(tmp_path), "none.sock"))
    with pytest.raises(channel.ChannelError, match="no guest channel"):
        chan.run("true", timeout=0.1, margin=0.5)


def test_response_parser_takes_bytes_in_any_pieces() -> None:
    answer = (
        b"noise\n@@novanet out other\nZm9v\n@@novanet err other\n@@novanet end other 0\n"
        b"@@novanet out abc\naGVs\nbG8K\n@@novanet err abc\n@@novanet end abc 2\n"
    )
    response = channel.Response("abc")
    results = [response.feed(answer[i : i + 7]) for i in range(0, len(answer), 7)]
    assert results[-1] == channel.CommandResult("hello\n", "", 2)
    assert all(r is None for r in results[:-1])
