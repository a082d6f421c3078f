"""Long-running programs inside lab nodes: start, stop, restart, kill -9.

Programs are started by the spawn helper (:mod:`novanet.lab.spawn`) through
``processutils.execute``; in a node they run under ``nsenter --net --mount``
so they see the node's interfaces and the node's private /run/netns. Every
signal goes to a recorded (pid, start time) that is checked first, so a pid
reused by an unrelated program is never signalled.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence

from novanet import exception
from novanet.lab import state
from novanet.linux import processutils, procfs
from novanet.wait import poll

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Prefix = Callable[[str | None], list[str]]


def is_running(pid: int, starttime: int) -> bool:
    """True if ``pid`` still is the process that started at ``starttime``."""
    stat = procfs.stat(pid)
    return stat is not None and stat.starttime == starttime and stat.alive


def _live_groups() -> set[int]:
    """Process groups that still have a live member (one scan of /proc)."""
    return {stat.pgrp for pid in procfs.pids() if (stat := procfs.stat(pid)) and stat.alive}


def terminate(
    targets: Iterable[tuple[int, int]], *, group: bool = True, timeout: float = 5.0
) -> list[int]:
    """SIGTERM each (pid, starttime) still running, SIGKILL after ``timeout``.

    With ``group``, a target that leads its own process group (everything the
    spawn helper starts does) is signalled as a group, so children it forked
    without a new session go too. Returns the pids that were signalled.
    """
    live = [(pid, st) for pid, st in targets if is_running(pid, st) and pid != os.getpid()]
    groups = {pid for pid, _ in live if group and _leads_group(pid)}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, st in live:
            if not is_running(pid, st) and pid not in groups:
                continue
            try:
                if pid in groups:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
            except ProcessLookupError:
                pass
        # One /proc scan per look for all the groups (not one per group).
        if poll(
            lambda: (
                not any(is_running(pid, st) for pid, st in live) and not groups & _live_groups()
            ),
            timeout if sig == signal.SIGTERM else 2.0,
            0.02,
        ):
            return [pid for pid, _ in live]
    return [pid for pid, _ in live]


def _leads_group(pid: int) -> bool:
    stat = procfs.stat(pid)
    return stat is not None and stat.pgrp == pid


NsId = tuple[int, int]


def ns_id(path: str) -> NsId | None:
    """(device, inode) of the namespace a handle (nsfs bind mount or /proc link) names."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _live_processes(match: Callable[[int], bool]) -> list[tuple[int, int]]:
    """(pid, starttime) of every live process but this one for which ``match(pid)`` holds."""
    found = []
    me = os.getpid()
    for pid in procfs.pids():
        if pid == me:
            continue
        try:
            if not match(pid):
                continue
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile
        stat = procfs.stat(pid)
        if stat and stat.alive:
            found.append((pid, stat.starttime))
    return found


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read()


def processes_in(net_ids: set[NsId], mnt_ids: set[NsId]) -> list[tuple[int, int]]:
    """(pid, starttime) of every live process in one of the given namespaces."""

    def inside(pid: int) -> bool:
        net = ns_id(f"/proc/{pid}/ns/net")
        mnt = ns_id(f"/proc/{pid}/ns/mnt")
        return (net is not None and net in net_ids) or (mnt is not None and mnt in mnt_ids)

    return _live_processes(inside)


def processes_mentioning(text: str) -> list[tuple[int, int]]:
    """(pid, starttime) of live processes whose command line contains ``text``."""
    needle = text.encode()
    return _live_processes(lambda pid: needle in _cmdline(pid))


def processes_with_args(*args: str) -> list[tuple[int, int]]:
    """(pid, starttime) of live processes having every one of ``args`` as a whole argument."""
    wanted = {a.encode() for a in args}
    return _live_processes(lambda pid: wanted <= set(_cmdline(pid).split(b"\0")))


def wait_gone(targets: Iterable[tuple[int, int]], timeout: float) -> bool:
    """Wait until none of ``targets`` runs any more; False on timeout."""
    targets = list(targets)
    return bool(poll(lambda: not any(is_running(pid, st) for pid, st in targets), timeout))


class Launcher:
    """Starts and stops a lab's long-running programs.

    :param paths: the lab's filesystem layout (logs and pid files go there)
    :param prefix: returns the argv prefix that enters a node (``[]`` for the
        machine itself, node None)
    """

    def __init__(self, paths: state.LabPaths, prefix: Prefix) -> None:
        self.paths = paths
        self.prefix = prefix

    def start(
        self,
        node: str | None,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
    ) -> state.ProcessRecord:
        """Start ``argv`` in ``node`` in the background; log to the node's log dir."""
        if not NAME_RE.match(name):
            raise exception.UsageError(f"invalid process name {name!r}")
        if not argv or shutil.which(argv[0]) is None:
            # In a node the program is exec'd by nsenter, after the helper's
            # exec succeeded: find it first (every node view has the same /usr).
            raise exception.NotFound(f"program not found: {argv[0] if argv else '(none)'}")
        current = self.get(node, name)
        if current and is_running(current.pid, current.starttime):
            raise exception.Conflict(
                f"process {name} already runs in {node or 'the lab'} (pid {current.pid})"
            )
        os.makedirs(self.paths.logs_dir(node), exist_ok=True)
        os.makedirs(self.paths.pids_dir(node), exist_ok=True)
        log = os.path.join(self.paths.logs_dir(node), f"{name}.log")
        pidfile = state.pidfile(self.paths, node, name)
        helper = [sys.executable, "-m", "novanet.lab.spawn", "--pidfile", pidfile, "--log", log]
        out, _ = processutils.execute(
            [*helper, "--", *self.prefix(node), *argv], env=dict(env or {}), timeout=30
        )
        pid, starttime = (int(x) for x in out.split())
        record = state.ProcessRecord(
            name=name,
            node=node,
            argv=list(argv),
            env=dict(env or {}),
            pid=pid,
            starttime=starttime,
            log=log,
        )
        state.save_process(self.paths, record)
        return record

    def get(self, node: str | None, name: str) -> state.ProcessRecord | None:
        record = state.load_process(self.paths, node, name)
        if record is None:
            ident = state.read_pidfile(state.pidfile(self.paths, node, name))
            if ident is None:
                return None
            # The helper recorded the pid but we died before the JSON record.
            log = os.path.join(self.paths.logs_dir(node), f"{name}.log")
            record = state.ProcessRecord(name, node, [], {}, ident[0], ident[1], log)
        return record

    def running(self, node: str | None, name: str) -> bool:
        record = self.get(node, name)
        return record is not None and is_running(record.pid, record.starttime)

    def stop(
        self, node: str | None, name: str, *, timeout: float = 5.0, group: bool = True
    ) -> bool:
        """SIGTERM (then SIGKILL) the program; True if it was running."""
        record = self.get(node, name)
        if record is None:
            return False
        return bool(terminate([(record.pid, record.starttime)], group=group, timeout=timeout))

    def kill(self, node: str | None, name: str, sig: int = signal.SIGKILL) -> bool:
        """Send one signal to the program alone (a crash, for fault tests)."""
        record = self.get(node, name)
        if record is None or not is_running(record.pid, record.starttime):
            return False
        os.kill(record.pid, sig)
        return True

    def wait_exit(self, node: str | None, name: str, timeout: float = 5.0) -> bool:
        record = self.get(node, name)
        if record is None:
            return True
        return bool(poll(lambda: not is_running(record.pid, record.starttime), timeout, 0.02))

    def restart(self, node: str | None, name: str, *, timeout: float = 5.0) -> state.ProcessRecord:
        """Stop the program (if running) and start it again with the same argv and env."""
        record = state.load_process(self.paths, node, name)
        if record is None:
            raise exception.NotFound(f"no process {name} in {node or 'the lab'}")
        self.stop(node, name, timeout=timeout)
        return self.start(node, name, record.argv, record.env)

    def records(self, nodes: Sequence[str]) -> list[state.ProcessRecord]:
        result = []
        for node, name, _ in state.iter_pidfiles(self.paths, list(nodes)):
            record = self.get(node, name)
            if record is not None:
                result.append(record)
        return result


def as_dict(record: state.ProcessRecord) -> dict[str, object]:
    data = dataclasses.asdict(record)
    data["running"] = is_running(record.pid, record.starttime)
    return data
