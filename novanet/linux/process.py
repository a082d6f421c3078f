"""Daemons started by novanet and tracked through their pid file (dnsmasq).

A pid file alone does not identify a process: after a crash or a reboot the
pid it names can belong to anything, and nova-network then sent SIGHUP or
SIGKILL to an unrelated process. Here a process is "ours" only if the pid
file names a live (not zombie) process whose ``/proc/PID/cmdline`` carries
``marker`` as an argument (for dnsmasq: the network's hostsfile path). Signals
go through a pidfd opened before that check, so a pid recycled between the
check and the signal cannot be hit.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from novanet.exception import NovanetError
from novanet.linux import processutils, procfs

LOG = logging.getLogger(__name__)

Execute = Callable[..., tuple[str, str]]


class ProcessError(NovanetError):
    """A managed daemon could not be started or stopped."""


class ManagedProcess(Protocol):
    """What the DHCP driver needs from a daemon handle (real or fake)."""

    pid_file: str

    def pid(self) -> int | None: ...
    def is_active(self) -> bool: ...
    def is_busy(self) -> bool: ...
    def cmdline(self) -> tuple[str, ...] | None: ...
    def environ(self) -> dict[str, str] | None: ...
    def start(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int: ...
    def hup(self) -> bool: ...
    def stop(self, timeout: float | None = None) -> bool: ...
    def remove_pid_file(self) -> None: ...


ProcessFactory = Callable[[str, str], ManagedProcess]


class PidFileProcess:
    """One daemon identified by ``pid_file`` and ``marker``.

    :param execute: runs the start command (``processutils.execute`` or a
        wrapper, e.g. one adding ``ip netns exec NS``); the daemon must fork
        into the background and its foreground parent exit 0, or non-zero
        with the reason on stderr (dnsmasq does both)
    :param proc_root: where procfs is mounted (tests may point elsewhere)
    :param start_timeout: seconds for the foreground process to exit and the
        pid file to name the daemon (dnsmasq's parent waits for the
        dhcp-script's ``init`` output: a big lease database takes a while)
    :param stop_timeout: seconds between SIGTERM and SIGKILL (a dnsmasq busy
        re-reading a 50,000-line hostsfile handles SIGTERM only afterwards)
    """

    def __init__(
        self,
        pid_file: str,
        marker: str,
        *,
        execute: Execute = processutils.execute,
        proc_root: str = "/proc",
        start_timeout: float = 60.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.pid_file = pid_file
        self.marker = marker
        self._execute = execute
        self._proc = proc_root
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout

    # -- inspection -----------------------------------------------------------

    def read_pid(self) -> int | None:
        """The pid written in the pid file, whatever process it is (or None)."""
        try:
            with open(self.pid_file, encoding="ascii", errors="replace") as handle:
                text = handle.read().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            LOG.warning("cannot read pid file %s: %s", self.pid_file, exc)
            return None
        return int(text) if text.isdigit() and int(text) > 0 else None

    def pid(self) -> int | None:
        """The pid of our running process, or None (no file, stale or foreign pid)."""
        pid = self.read_pid()
        return pid if pid is not None and self._is_ours(pid) else None

    def is_active(self) -> bool:
        return self.pid() is not None

    def is_busy(self, samples: int = 3, interval: float = 0.002) -> bool:
        """True if our process stays running or runnable (state R) over a few samples.

        dnsmasq is single-threaded and sleeps in poll() when idle; state R for
        more than a moment means it is re-reading its files, and a SIGHUP sent
        now would queue one more complete re-read (each SIGHUP is one). One
        sample could catch it answering a single DHCP packet: it must be R in
        ``samples`` samples ``interval`` s apart.
        """
        pid = self.pid()
        if pid is None:
            return False
        for sample in range(samples):
            if sample:
                time.sleep(interval)
            stat = procfs.stat(pid, self._proc)
            if stat is None or stat.state != "R":
                return False
        return True

    def cmdline(self) -> tuple[str, ...] | None:
        """The argv of our running process, or None."""
        pid = self.read_pid()
        if pid is None:
            return None
        argv = self._read_cmdline(pid)
        return argv if argv is not None and self._has_marker(argv) else None

    def environ(self) -> dict[str, str] | None:
        """The environment our running process was started with, or None."""
        pid = self.pid()
        if pid is None:
            return None
        try:
            with open(f"{self._proc}/{pid}/environ", "rb") as handle:
                raw = handle.read()
        except OSError:
            return None
        env: dict[str, str] = {}
        for item in raw.split(b"\0"):
            key, sep, value = item.decode("utf-8", "replace").partition("=")
            if sep:
                env[key] = value
        return env

    # -- actions --------------------------------------------------------------

    def start(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
        """Start the daemon and return its pid once the pid file names it.

        :raises ProcessExecutionError: the daemon's foreground process failed
            (its message, e.g. dnsmasq's "failed to create listening socket",
            is in the exception)
        :raises ProcessError: already running, or no pid file appeared
        """
        running = self.pid()
        if running is not None:
            raise ProcessError(f"{argv[0]} already runs as pid {running} ({self.pid_file})")
        old = self.read_pid()
        if old is not None and self._is_dying(old):
            self._wait_gone(old, self.stop_timeout)  # killed, still closing its sockets
        self._remove_stale_pid_file()
        self._stop_strays()
        self._execute(list(argv), env=dict(env or {}), timeout=self.start_timeout)
        deadline = time.monotonic() + self.start_timeout
        while True:
            pid = self.pid()
            if pid is not None:
                LOG.info("started %s as pid %d", argv[0], pid)
                return pid
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"{argv[0]} exited 0 but {self.pid_file} names no running {self.marker} daemon"
                )
            time.sleep(0.01)

    def hup(self) -> bool:
        """SIGHUP our process; False (nothing sent) if it is not running."""
        return self.signal(signal.SIGHUP)

    def signal(self, signum: int) -> bool:
        """Send ``signum`` to our process only; False if there is none."""
        pid = self.read_pid()
        if pid is None:
            return False
        return self._signal_checked(pid, signum)

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; remove the pid file.

        A pid file naming another program's process is removed without
        signalling anything. Returns True if a process of ours was stopped.
        """
        limit = self.stop_timeout if timeout is None else timeout
        pid = self.read_pid()
        stopped = False
        if pid is not None and self._signal_checked(pid, signal.SIGTERM):
            stopped = True
            if not self._wait_gone(pid, limit):
                LOG.warning("pid %d ignored SIGTERM for %.1f s; sending SIGKILL", pid, limit)
                self._signal_checked(pid, signal.SIGKILL)
                if not self._wait_gone(pid, 5.0):
                    raise ProcessError(f"pid {pid} ({self.marker}) survived SIGKILL")
        self.remove_pid_file()
        return stopped

    def remove_pid_file(self) -> None:
        try:
            os.unlink(self.pid_file)
        except FileNotFoundError:
            pass

    # -- internals ------------------------------------------------------------

    def _remove_stale_pid_file(self) -> None:
        pid = self.read_pid()
        if os.path.exists(self.pid_file) and (pid is None or not self._is_ours(pid)):
            LOG.info("removing stale pid file %s (pid %s is not ours)", self.pid_file, pid)
            self.remove_pid_file()

    def strays(self) -> list[int]:
        """Live processes carrying our marker that the pid file does not name.

        A daemon of ours whose pid file was lost or overwritten still holds
        its sockets: a new one could not start ("Address already in use").
        Children of such a process (dnsmasq's dhcp-script helper has the same
        command line) are not listed: they exit with their parent.
        """
        try:
            entries = os.listdir(self._proc)
        except OSError:
            return []
        ours = {int(e) for e in entries if e.isdigit() and self._is_ours(int(e))}
        named = self.read_pid()
        parents = ours | ({named} if named is not None else set())
        return sorted(pid for pid in ours if pid != named and self._ppid(pid) not in parents)

    def _stop_strays(self) -> None:
        for pid in self.strays():
            LOG.warning("stopping pid %d: a %s daemon its pid file does not name", pid, self.marker)
            if self._signal_checked(pid, signal.SIGTERM) and not self._wait_gone(
                pid, self.stop_timeout
            ):
                self._signal_checked(pid, signal.SIGKILL)
                self._wait_gone(pid, 5.0)

    def _signal_checked(self, pid: int, signum: int) -> bool:
        # Open a pidfd first, check the process behind the pid second: if the
        # pid was recycled in between, the pidfd names the old (dead) process
        # and the signal fails instead of reaching the new one.
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        except OSError:  # kernel without pidfd (< 5.3): best effort
            fd = -1
        try:
            if not self._is_ours(pid):
                LOG.warning(
                    "not signalling pid %d from %s: not a %s process",
                    pid,
                    self.pid_file,
                    self.marker,
                )
                return False
            if fd >= 0:
                signal.pidfd_send_signal(fd, signum)
            else:
                os.kill(pid, signum)
            return True
        except ProcessLookupError:
            return False
        finally:
            if fd >= 0:
                os.close(fd)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        """Wait until ``pid`` has exited (or was recycled by another program).

        "Not ours any more" is not enough: an exiting process loses its
        cmdline (exit_mm) before its sockets are closed (exit_files), and a
        new dnsmasq started in that window fails with "Address already in use".
        """
        deadline = time.monotonic() + timeout
        while self._is_ours(pid) or self._is_dying(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _is_dying(self, pid: int) -> bool:
        return not self._is_gone(pid) and self._read_cmdline(pid) is None

    def _is_ours(self, pid: int) -> bool:
        if self._is_gone(pid):
            return False
        argv = self._read_cmdline(pid)
        return argv is not None and self._has_marker(argv)

    def _has_marker(self, argv: Sequence[str]) -> bool:
        return any(arg == self.marker or arg.partition("=")[2] == self.marker for arg in argv)

    def _read_cmdline(self, pid: int) -> tuple[str, ...] | None:
        try:
            with open(f"{self._proc}/{pid}/cmdline", "rb") as handle:
                raw = handle.read()
        except OSError:
            return None
        if not raw:
            return None  # zombie or kernel thread
        return tuple(
            part.decode("utf-8", "surrogateescape") for part in raw.rstrip(b"\0").split(b"\0")
        )

    def _ppid(self, pid: int) -> int | None:
        stat = procfs.stat(pid, self._proc)
        return stat.ppid if stat is not None else None

    def _is_gone(self, pid: int) -> bool:
        # A daemon's parent is init; where init does not reap (containers),
        # a killed dnsmasq stays a zombie: its pid exists, kill(pid, 0) works.
        stat = procfs.stat(pid, self._proc)
        return stat is None or not stat.alive
