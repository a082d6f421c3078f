"""The guest image cache: built once per package versions and recipe, reused, replaced.

The package tools are a stateful fake (an apt archive of two packages whose
.debs unpack into a kernel tree and busybox); everything else is real: the
vmlinux extraction, the module order, the initramfs, the cache directory.
"""

from __future__ import annotations

import gzip
import lzma
import os
import time

import pytest

from novanet import exception
from novanet.lab.vm import apt as apt_mod
from novanet.lab.vm import image

ELF = b"\x7fELF" + b"kernel" * 1000
DEPENDS = {
    "virtio_net": ["virtio_ring", "virtio", "net_failover"],
    "net_failover": ["failover"],
    "virtio_pci": ["virtio_ring", "virtio"],
    "virtio": [],
    "virtio_ring": [],
    "failover": [],
}


class FakeApt(apt_mod.Apt):
    """An apt with lists (or not), one kernel and busybox-static, and their .debs."""

    def __init__(self) -> None:
        self.kernel = "linux-image-6.1.0-57-amd64"
        self.kernel_version = "6.1.192-3"
        self.busybox_version = "1:1.35.0-4"
        self.lists = True
        self.broken = False  # apt itself fails (no network, no lists)
        self.modules = dict(DEPENDS)
        self.download_delay = 0.0

    def resolve(self, timeout: float) -> apt_mod.Packages:
        if self.broken or not self.lists:
            raise exception.ProcessExecutionError(["apt-cache", "depends"], 100, "", "E: no lists")
        return apt_mod.Packages(self.kernel, self.kernel_version, self.busybox_version)

    def update(self, timeout: float) -> None:
        if self.broken:
            raise exception.ProcessExecutionError(["apt-get", "update"], 100, "", "E: offline")
        self.lists = True

    def download(
        self, packages: apt_mod.Packages, directory: str, timeout: float
    ) -> dict[str, str]:
        time.sleep(self.download_delay)
        debs = {}
        for name, version in (
            (packages.kernel, packages.kernel_version),
            (apt_mod.BUSYBOX, packages.busybox_version),
        ):
            debs[name] = os.path.join(directory, f"{name}_{version}_amd64.deb")
            with open(debs[name], "w") as handle:
                handle.write(name)
        return debs

    def unpack(self, deb: str, directory: str, timeout: float) -> None:
        with open(deb) as handle:
            package = handle.read()
        if package == apt_mod.BUSYBOX:
            write(os.path.join(directory, "bin", "busybox"), b"\x7fELF busybox")
            return
        release = package.removeprefix("linux-image-")
        xz = lzma.compress(ELF, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
        write(os.path.join(directory, "boot", f"vmlinuz-{release}"), b"MZ setup" + xz + b"tail")
        kernel = os.path.join(directory, "lib", "modules", release, "kernel")
        for module in self.modules:
            write(os.path.join(kernel, "drivers", f"{module}.ko"), f"ko {module}".encode())

    def module_depends(self, path: str, timeout: float) -> list[str]:
        return list(self.modules[os.path.basename(path)[:-3]])


def write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


@pytest.fixture
def apt() -> FakeApt:
    return FakeApt()


def cache(root: str, apt: FakeApt, said: list[str] | None = None) -> image.ImageCache:
    return image.ImageCache(root, progress=(said.append if said is not None else None), apt=apt)


def entries(root: str) -> list[str]:
    return sorted(e for e in os.listdir(os.path.join(root, "guest")) if e != ".lock")


def test_first_use_builds_the_image(tmp_path: os.PathLike[str], apt: FakeApt) -> None:
    root = os.fspath(tmp_path)
    said: list[str] = []
    built = cache(root, apt, said).ensure()
    with open(built.vmlinux, "rb") as handle:
        assert handle.read() == ELF
    with open(built.initrd, "rb") as handle:
        archive = gzip.decompress(handle.read())
    order = [b"virtio_ring", b"virtio", b"failover", b"net_failover", b"virtio_net", b"virtio_pci"]
    assert b"\n".join(order) + b"\n" in archive  # /etc/modules
    assert b"ko virtio_net" in archive and b"\x7fELF busybox" in archive
    assert built.kernel_release == "6.1.0-57-amd64"
    assert built.packages == {apt.kernel: "6.1.192-3", apt_mod.BUSYBOX: "1:1.35.0-4"}
    assert entries(root) == [os.path.basename(built.directory)]
    assert any("downloading linux-image-6.1.0-57-amd64 6.1.192-3" in s for s in said)


def test_the_cached_image_is_reused(tmp_path: os.PathLike[str], apt: FakeApt) -> None:
    root = os.fspath(tmp_path)
    first = cache(root, apt).ensure()
    inode = os.stat(first.vmlinux).st_ino
    apt.download_delay = 0.5  # a rebuild would fail: longer than the bound below
    again = cache(root, apt).ensure(timeout=0.3)
    assert again == first and os.stat(again.vmlinux).st_ino == inode


def test_newer_packages_replace_the_image(tmp_path: os.PathLike[str], apt: FakeApt) -> None:
    root = os.fspath(tmp_path)
    old = cache(root, apt).ensure()
    apt.kernel, apt.kernel_version = "linux-image-6.1.0-58-amd64", "6.1.200-1"
    new = cache(root, apt).ensure()
    assert new.directory != old.directory and new.kernel_release == "6.1.0-58-amd64"
    assert entries(root) == [os.path.basename(new.directory)]
    apt.busybox_version = "1:1.36.0-1"
    newest = cache(root, apt).ensure()
    assert newest.directory != new.directory and newest.kernel_release == "6.1.0-58-amd64"
    assert entries(root) == [os.path.basename(newest.directory)]


def test_no_package_lists_yet(tmp_path: os.PathLike[str], apt: FakeApt) -> None:
    apt.lists = False
    said: list[str] = []
    assert cache(os.fspath(tmp_path), apt, said).ensure().kernel_release == "6.1.0-57-amd64"
    assert any("apt-get update" in s for s in said)


def test_apt_down_uses_the_cached_image(tmp_path: os.PathLike[str], apt: FakeApt) -> None:
    root = os.fspath(tmp_path)
    built = cache(root, apt).ensure()
    apt.broken = True
    said: list[str] = []
    assert cache(root, apt, said).ensure() == built
    assert any("apt failed" in s for s in said)


def test_apt_down_and_nothing_cached(tmp_path: os.PathLike[str], apt: FakeApt) -> None:
    apt.broken = True
    with pytest.raises(exception.NovanetError, match="^cannot build a guest image: .*offline"):
        cache(os.fspath(tmp_path), apt).ensure()


def test_a_failed_build_leaves_nothing(tmp_path: os.PathLike[str], apt: FakeApt) -> None:
    root = os.fspath(tmp_path)
    del apt.modules["failover"]
    with pytest.raises(exception.NotFound, match="kernel module failover is not in"):
        cache(root, apt).ensure()
    assert entries(root) == []


def test_a_build_is_bounded_in_time(tmp_path: os.PathLike[str], apt: FakeApt) -> None:
    root = os.fspath(tmp_path)
    apt.download_delay = 0.3
    with pytest.raises(exception.NovanetError, match="longer than"):
        cache(root, apt).ensure(timeout=0.2)
    assert entries(root) == []


def test_leftovers_and_unused_images_go(tmp_path: os.PathLike[str], apt: FakeApt) -> None:
    root = os.fspath(tmp_path)
    guest = os.path.join(root, "guest")
    crashed = os.path.join(guest, ".build-abc123", "image")
    os.makedirs(crashed)
    other_recent = os.path.join(guest, "6.1.0-1-amd64-otherrecipe1")
    other_old = os.path.join(guest, "6.1.0-1-amd64-otherrecipe2")
    for directory in (other_recent, other_old):
        write(os.path.join(directory, "manifest.json"), b'{"recipe": "another checkout"}')
    old = time.time() - image.KEEP_OTHERS - 60
    os.utime(os.path.join(other_old, "manifest.json"), (old, old))
    built = cache(root, apt).ensure()
    assert entries(root) == sorted(
        [os.path.basename(built.directory), "6.1.0-1-amd64-otherrecipe1"]
    )
