"""Per-node mount namespaces: each node has its own /run/netns and /sys.

Why: the compute agent names an instance's network namespace exactly
``instance-00000001`` (the contract), and network namespace names are
global in /run/netns, so two compute nodes, two labs, or a lab and a test
would collide. Each node therefore gets a persistent mount namespace
(``unshare --mount=<handle> --propagation private``) in which /run/netns is
a bind mount of the node's own directory, and every program of the node is
started with ``nsenter --net=<node netns> --mount=<handle>``. Inside a node,
``ip netns`` (or pyroute2's netns.create) lists and creates only that node's
instance namespaces; their nsfs bind mounts live in the node's mount
namespace, which the handle keeps alive, so they survive a restart of the
daemon that made them, and nothing appears in the machine's /run/netns.

Kernel details this module works around:

- a mount-namespace handle cannot be bind-mounted on a shared mount
  (EINVAL), so the handle directory is a private bind mount of itself;
- a new mount namespace starts with private copies of every mount,
  including the machine's nsfs mounts (other labs' and tests' network
  namespaces, other nodes' handles); a private copy does not see the
  machine's later ``umount``, so it would keep those namespaces alive after
  their owner deleted them. We detach every nsfs mount (and the handle
  directories of all labs) in a new node view before using it;
- sysfs shows the interfaces of the network namespace of whoever mounted
  it, so each node view gets a fresh sysfs mounted from inside the node
  (``ip netns exec`` does the same per command).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from novanet.linux import processutils

RUN_NETNS = "/run/netns"
_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every line of /proc/PID/mountinfo."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        mounts.append((_unescape(fields[4]), fields[sep + 1]))
    return mounts


def stale_mounts(mounts: Sequence[tuple[str, str]], lab_base: str) -> list[str]:
    """Mount points a fresh node view must detach, outermost only.

    Stale: nsfs mounts (they pin namespaces), /run/netns (the machine's
    namespace directory) and anything under the labs' base directory (the
    handle directories of every lab). Detaching is lazy and recursive, so a
    mount below another stale one is dropped from the list.
    """
    base = lab_base.rstrip("/") + "/"
    wanted = sorted(
        {
            point
            for point, fstype in mounts
            if fstype == "nsfs" or point == RUN_NETNS or point.startswith(base)
        }
    )
    outermost: list[str] = []
    for point in wanted:
        if not any(point.startswith(top.rstrip("/") + "/") for top in outermost):
            outermost.append(point)
    return outermost


def own_mountinfo() -> list[tuple[str, str]]:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return parse_mountinfo(handle.read())


def is_mountpoint(path: str) -> bool:
    path = os.path.realpath(path)
    return any(point == path for point, _ in own_mountinfo())


def make_private_dir(path: str) -> None:
    """Make ``path`` a private bind mount of itself (a place for mnt handles)."""
    os.makedirs(path, exist_ok=True)
    if not is_mountpoint(path):
        processutils.execute(["mount", "--bind", path, path])
    processutils.execute(["mount", "--make-private", path])


def unmount(path: str) -> bool:
    """Unmount every mount stacked on ``path``; False if nothing was mounted."""
    done = False
    for _ in range(10):  # a bound, in case something keeps mounting there
        if not is_mountpoint(path):
            break
        processutils.execute(["umount", "--lazy", path])
        done = True
    return done


def enter(
    mnt_handle: str, netns_path: str | None = None, uts_handle: str | None = None
) -> list[str]:
    """argv prefix running a command in a node's mount view (and netns, hostname)."""
    prefix = ["nsenter"]
    if netns_path:
        prefix.append(f"--net={netns_path}")
    if uts_handle:
        prefix.append(f"--uts={uts_handle}")
    return [*prefix, f"--mount={mnt_handle}", "--"]


def create_uts(uts_handle: str, hostname: str) -> None:
    """A persistent UTS namespace with the node's hostname (``hostname`` in a
    node says compute-1, and so does Python's socket.gethostname())."""
    with open(uts_handle, "a", encoding="ascii"):
        pass
    processutils.execute(["unshare", f"--uts={uts_handle}", "hostname", hostname])


def create_node_view(mnt_handle: str, netns_path: str, netns_dir: str, lab_base: str) -> None:
    """Create a node's persistent mount namespace, held by ``mnt_handle``.

    :param netns_path: the node's network namespace (for its sysfs)
    :param netns_dir: the directory the node will see as /run/netns
    :param lab_base: base directory of all labs (their handles are detached)
    """
    os.makedirs(netns_dir, exist_ok=True)
    with open(mnt_handle, "a", encoding="ascii"):
        pass
    processutils.execute(["unshare", f"--mount={mnt_handle}", "--propagation", "private", "true"])
    view = enter(mnt_handle)
    for _ in range(3):
        out, _ = processutils.execute([*view, "cat", "/proc/self/mountinfo"])
        stale = stale_mounts(parse_mountinfo(out), lab_base)
        if not stale:
            break
        # Stacked mounts need one pass each; "not mounted" for a path whose
        # parent was already detached is harmless, the re-read decides.
        processutils.execute([*view, "umount", "--lazy", *stale], check=False, log_errors=False)
    else:
        raise RuntimeError(f"cannot detach {stale} in the mount view {mnt_handle}")
    processutils.execute([*view, "mount", "--bind", netns_dir, RUN_NETNS])
    node = enter(mnt_handle, netns_path)
    processutils.execute([*node, "umount", "--lazy", "/sys"])
    processutils.execute([*node, "mount", "-t", "sysfs", "sysfs", "/sys"])


def release_node_view(mnt_handle: str) -> None:
    """Drop what a node view holds (instance netns, its sysfs) and its handle.

    Detaching /run/netns inside the view releases the instance namespaces
    even if some unrelated process still holds a copy of the view; the
    handle's own unmount lets the kernel free the mount namespace.
    """
    if not is_mountpoint(mnt_handle):
        return
    processutils.execute(
        [*enter(mnt_handle), "umount", "--lazy", RUN_NETNS, "/sys"],
        check=False,
        log_errors=False,
    )
    unmount(mnt_handle)


def instance_ns_ids(mnt_handle: str, names: Sequence[str]) -> set[tuple[int, int]]:
    """(device, inode) of the named instance netns inside a node view."""
    if not names or not is_mountpoint(mnt_handle):
        return set()
    paths = [os.path.join(RUN_NETNS, name) for name in names]
    out, _ = processutils.execute(
        [*enter(mnt_handle), "stat", "--dereference", "--format=%d %i", *paths],
        check=False,
        log_errors=False,
    )
    ids = set()
    for line in out.splitlines():
        dev, _, ino = line.partition(" ")
        if dev.isdigit() and ino.isdigit():
            ids.add((int(dev), int(ino)))
    return ids
