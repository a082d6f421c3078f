"""Start one program in the background: ``python -m novanet.lab.spawn``.

The lab runs this helper through ``processutils.execute`` (the single
subprocess chokepoint); the helper forks the program into its own session,
so the program outlives the helper and its pid is also its process-group id
(``stop`` signals the group: socat's per-connection children go with it).

Order matters for crash safety: the child waits on a pipe until the helper
has written ``PID STARTTIME`` to the pid file, then execs; a second,
close-on-exec pipe tells the helper whether the exec worked (EOF) or failed
(the error text). stdout and stderr are appended to the log file, so a
restarted daemon keeps its previous run's log above a separator line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from novanet.linux import procfs


def _starttime(pid: int) -> int:
    stat = procfs.stat(pid)
    if stat is None:  # cannot be: our own child, not reaped yet
        raise OSError(f"pid {pid}: /proc/{pid}/stat unreadable")
    return stat.starttime


def _write_pidfile(path: str, pid: int, starttime: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(f"{pid} {starttime}\n")
    os.replace(tmp, path)


def spawn(argv: Sequence[str], pidfile: str, log: str, cwd: str = "/") -> tuple[int, int]:
    """Fork ``argv`` into a new session; return (pid, starttime) once it has exec'd."""
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe()  # both ends close-on-exec (PEP 446)
    pid = os.fork()
    if pid == 0:  # the child: becomes the program
        try:
            os.close(go_w)
            os.close(err_r)
            if os.read(go_r, 1) != b"x":
                os._exit(1)  # the helper died before recording us: do not run unrecorded
            os.setsid()
            os.chdir(cwd)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.execvp(argv[0], list(argv))
        except OSError as exc:
            os.write(err_w, f"{argv[0]}: {exc.strerror}".encode())
        os._exit(127)
    os.close(go_r)
    os.close(err_w)
    starttime = _starttime(pid)
    _write_pidfile(pidfile, pid, starttime)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    os.write(log_fd, f"--- novanet-lab {stamp} pid {pid}: {' '.join(argv)}\n".encode())
    os.close(log_fd)
    os.write(go_w, b"x")
    os.close(go_w)
    error = b""
    while chunk := os.read(err_r, 4096):
        error += chunk
    os.close(err_r)
    if error:
        os.waitpid(pid, 0)
        os.unlink(pidfile)
        raise OSError(error.decode(errors="replace"))
    return pid, starttime


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="novanet-lab-spawn")
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--cwd", default="/")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    ns = parser.parse_args(args)
    argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
    if not argv:
        parser.error("no program given")
    try:
        pid, starttime = spawn(argv, ns.pidfile, ns.log, ns.cwd)
    except OSError as exc:
        print(f"novanet-lab-spawn: error: {exc}", file=sys.stderr)
        return 1
    print(pid, starttime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
