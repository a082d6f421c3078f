"""Named network namespaces without forking.

pyroute2 reaches another namespace (``IPRoute(netns=...)``,
``pyroute2.netns.create``) by forking a child that calls setns() and passes a
socket back; its parent waits with ``select.poll``, which eventlet's green
``select`` does not have, so under monkey patching it fails with
``AttributeError``. novanet does not use those helpers. setns(2) and
unshare(CLONE_NEWNET) change the namespace of the calling *thread* only, so:

- a netlink socket for a named namespace is made by switching this thread
  into it, creating the socket, and switching back at once. The socket stays
  bound to the namespace it was created in; the switch window holds only
  system calls (no Python I/O that could yield to another green thread);
- a namespace is created the way ``ip netns add`` does it: unshare the
  thread's network namespace, bind-mount ``/proc/thread-self/ns/net`` on
  ``<netns_dir>/<name>``, switch the thread back.

The names live in ``netns_dir`` (/run/netns, as iproute2). That directory is
made a shared mount like iproute2 does, so namespaces created here are seen
by the other mount namespaces of the host. A process started with
``ip netns exec`` has a private (slave) mount namespace: the namespaces it
creates are visible to it and its children only.
"""

from __future__ import annotations

import _socket
import ctypes
import errno
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from novanet.linux.netlink import NetlinkError, NetnsNotFound, check_netns_name

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2
NETLINK_ROUTE = 0
DEFAULT_NETNS_DIR = "/run/netns"
_THREAD_NS = "/proc/thread-self/ns/net"


class _Libc:
    """The few libc calls Python 3.11's os module lacks (setns, unshare, mount)."""

    def __init__(self) -> None:
        self._lib = ctypes.CDLL(None, use_errno=True)

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"{what}: {os.strerror(code)}")

    def setns(self, fd: int) -> None:
        self._check(self._lib.setns(fd, CLONE_NEWNET), "setns")

    def unshare_net(self) -> None:
        self._check(self._lib.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")

    def mount(self, source: str, target: str, fstype: str, flags: int) -> None:
        self._check(
            self._lib.mount(source.encode(), target.encode(), fstype.encode(), flags, None),
            f"mount {target}",
        )

    def umount_detach(self, target: str) -> None:
        self._check(self._lib.umount2(target.encode(), MNT_DETACH), f"umount {target}")


class NamespaceFiles:
    """Create, find, enter and delete named network namespaces."""

    def __init__(self, netns_dir: str = DEFAULT_NETNS_DIR) -> None:
        self.netns_dir = netns_dir
        self._libc = _Libc()

    def path(self, name: str) -> str:
        return os.path.join(self.netns_dir, check_netns_name(name))

    def exists(self, name: str) -> bool:
        """True if ``name`` is a mounted namespace (not a stale, unmounted file)."""
        try:
            st = os.stat(self.path(name))
        except FileNotFoundError:
            return False
        # A namespace file is an nsfs bind mount: same device as our own
        # /proc/self/ns/net. A crashed `ip netns add`, or a namespace mounted
        # in another mount namespace only, leaves an empty regular file.
        return st.st_dev == os.stat(_THREAD_NS).st_dev

    def list(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.netns_dir))
        except FileNotFoundError:
            return []
        return [name for name in names if self.exists(name)]

    def open(self, name: str) -> int:
        """An O_RDONLY fd of the namespace (for IFLA_NET_NS_FD); caller closes it."""
        if not self.exists(name):
            raise NetnsNotFound(f"network namespace {name} does not exist", errno.ENOENT)
        return os.open(self.path(name), os.O_RDONLY | os.O_CLOEXEC)

    def socket_fd(self, name: str | None, family: int, kind: int, proto: int = 0) -> int:
        """The fd of a socket created inside namespace ``name`` (None: this thread's own).

        Every socket novanet needs in another namespace (rtnetlink for
        IpLib and the lab, nfnetlink and raw sockets for the iptables change
        probes) is made here. The caller owns the fd.
        """
        if name is None:
            return int(_socket.socket(family, kind, proto).detach())
        target = self.open(name)
        try:
            with self._away():
                self._libc.setns(target)
                # The C-level socket: no eventlet wrapper code runs while this
                # thread sits in the other namespace.
                raw = _socket.socket(family, kind, proto)
            return int(raw.detach())
        finally:
            os.close(target)

    def socket(self, name: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
        """A socket object created inside namespace ``name`` (see :meth:`socket_fd`)."""
        return socket.socket(family, kind, proto, fileno=self.socket_fd(name, family, kind, proto))

    def netlink_fd(self, name: str) -> int:
        """The fd of an rtnetlink socket created inside namespace ``name``.

        The caller owns the fd (IPRoute(fileno=...) takes it over).
        """
        return self.socket_fd(name, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)

    def create(self, name: str) -> bool:
        """Create namespace ``name`` unless it exists; True if created."""
        path = self.path(name)
        if self.exists(name):
            return False
        self._share_netns_dir()
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
        except FileExistsError:
            if self.exists(name):  # created meanwhile by another thread
                return False
            # else a stale file (see exists()): reuse it as the mount point.
        try:
            with self._away():
                self._libc.unshare_net()
                self._libc.mount(_THREAD_NS, path, "none", MS_BIND)
        except OSError as exc:
            self._remove_file(path)
            raise NetlinkError(
                f"cannot create network namespace {name}: {exc}", exc.errno
            ) from None
        return True

    @contextmanager
    def _away(self) -> Iterator[None]:
        """Let the body move this thread to another namespace; always come back.

        Signals are held off meanwhile: a Python signal handler would run in
        this thread between two bytecodes, in the wrong namespace.
        """
        own = os.open(_THREAD_NS, os.O_RDONLY | os.O_CLOEXEC)
        held = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            yield
        finally:
            try:
                self._libc.setns(own)
            except OSError as exc:  # pragma: no cover - would need a broken kernel
                # Going on would run this thread's later work in the wrong
                # namespace; there is no safe way on.
                os.write(2, f"novanet: cannot return to own network namespace: {exc}\n".encode())
                os._exit(70)
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            os.close(own)

    def delete(self, name: str) -> bool:
        """Unmount and remove namespace ``name``; True if it existed.

        Like `ip netns delete`: the namespace itself lives on while a process
        still runs in it (and so do its interfaces, veth peers included).
        """
        path = self.path(name)
        existed = self.exists(name)
        if existed:
            try:
                self._libc.umount_detach(path)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise NetlinkError(
                        f"cannot delete network namespace {name}: {exc}", exc.errno
                    ) from None
        self._remove_file(path)
        return existed

    def _share_netns_dir(self) -> None:
        # iproute2 (ip/ipnetns.c): make the directory a shared mount point so
        # the bind mounts below propagate to every mount namespace of the host;
        # if it is not a mount point yet, bind-mount it on itself first.
        os.makedirs(self.netns_dir, mode=0o755, exist_ok=True)
        try:
            self._libc.mount("", self.netns_dir, "none", MS_SHARED | MS_REC)
            return
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise NetlinkError(f"cannot share {self.netns_dir}: {exc}", exc.errno) from None
        self._libc.mount(self.netns_dir, self.netns_dir, "none", MS_BIND | MS_REC)
        self._libc.mount("", self.netns_dir, "none", MS_SHARED | MS_REC)

    @staticmethod
    def _remove_file(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
