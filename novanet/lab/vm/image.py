"""The guest image: Debian's kernel as vmlinux, and a busybox initramfs, cached.

Built from two Debian packages fetched with ``apt-get download`` (checked by
apt against the signed package lists): the kernel ``linux-amd64``'s
meta-package depends on (``linux-image-6.1.0-N-amd64``) and
``busybox-static`` (downloaded, not installed: it conflicts with the
``busybox`` package the lab's netns guests use). The result lives in
``<cache>/guest/<kernel release>-<key>/`` (``vmlinux``, ``initrd.gz``,
``manifest.json``); the key hashes both package versions and the recipe
(:func:`novanet.lab.vm.initramfs.recipe_digest`), so a newer package in
apt's lists or a changed init script builds a new image, and the older ones
are removed once it is ready.

Why vmlinux: QEMU boots the uncompressed ELF directly; the bzImage would
cost ~20 s of decompression under TCG (PLATFORM.md). It is the xz stream in
the bzImage, found by its magic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import lzma
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

from novanet import exception
from novanet.lab.vm import initramfs
from novanet.lab.vm.apt import BUSYBOX, Apt, Packages

CACHE_ENV = "NOVANET_LAB_CACHE"
DEFAULT_CACHE = "/var/cache/novanet-lab"
# virtio-net and the PCI transport; the rest comes from their dependencies.
MODULES = ("virtio_net", "virtio_pci")
BUILD_TIMEOUT = 600.0  # seconds for a whole build, download included
KEEP_OTHERS = 7 * 86400.0
XZ_MAGIC = b"\xfd7zXZ\x00"

Progress = Callable[[str], None]


def default_cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or DEFAULT_CACHE


@dataclasses.dataclass(frozen=True)
class GuestImage:
    directory: str
    kernel_release: str
    packages: dict[str, str]
    built_at: float

    @property
    def vmlinux(self) -> str:
        return os.path.join(self.directory, "vmlinux")

    @property
    def initrd(self) -> str:
        return os.path.join(self.directory, "initrd.gz")


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The uncompressed kernel ELF inside an xz-compressed bzImage."""
    start = bzimage.find(XZ_MAGIC)
    while start >= 0:
        try:
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[start:])
        except lzma.LZMAError:
            elf = b""
        if elf.startswith(b"\x7fELF"):
            return elf
        start = bzimage.find(XZ_MAGIC, start + 1)
    raise ValueError("no xz-compressed ELF kernel in this bzImage")


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise exception.NovanetError(
                f"building the guest image took longer than {self.seconds:.0f} s"
            )
        return left


def _module_files(root: str) -> dict[str, str]:
    """module name (with ``_``) -> .ko path, under ``lib/modules/<release>/kernel``."""
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            if name.endswith(".ko"):
                files[name[:-3].replace("-", "_")] = os.path.join(directory, name)
    return files


class ImageCache:
    """Guest images under ``root`` (default $NOVANET_LAB_CACHE or /var/cache/novanet-lab).

    :param progress: told each step of a build (it downloads ~70 MB)
    """

    def __init__(
        self, root: str | None = None, progress: Progress | None = None, apt: Apt | None = None
    ) -> None:
        self.root = os.path.join(root or default_cache_dir(), "guest")
        self.progress = progress or (lambda _text: None)
        self.apt = apt or Apt()
        self.recipe = initramfs.recipe_digest(MODULES)

    def ensure(self, timeout: float = BUILD_TIMEOUT) -> GuestImage:
        """The image for the packages apt offers now: cached, or built first."""
        deadline = Deadline(timeout)
        os.makedirs(self.root, exist_ok=True)
        with self._locked(deadline):
            try:
                packages = self._resolve(deadline)
            except exception.NovanetError as exc:
                cached = self.cached()
                if not cached:
                    raise exception.NovanetError(f"cannot build a guest image: {exc}") from None
                self.progress(f"guest image: apt failed ({exc}); using {cached[0].directory}")
                return cached[0]
            key = packages.key(self.recipe)
            image = self.load(os.path.join(self.root, key))
            if image is None:
                image = self._build(packages, key, deadline)
            else:
                os.utime(os.path.join(image.directory, "manifest.json"))  # last used
            self._prune(keep=key)
            return image

    def _resolve(self, deadline: Deadline) -> Packages:
        try:
            return self.apt.resolve(deadline.left())
        except exception.NovanetError:
            # No lists yet (a fresh machine): read them once, then decide.
            self.progress("guest image: apt-get update (no package lists for the kernel)")
            self.apt.update(deadline.left())
            return self.apt.resolve(deadline.left())

    def load(self, directory: str) -> GuestImage | None:
        """The image in ``directory`` if it is complete, else None."""
        try:
            with open(os.path.join(directory, "manifest.json"), encoding="utf-8") as handle:
                data = json.load(handle)
            image = GuestImage(
                directory, data["kernel_release"], dict(data["packages"]), float(data["built_at"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if data.get("recipe") != self.recipe:
            return None
        if not (os.path.isfile(image.vmlinux) and os.path.isfile(image.initrd)):
            return None
        return image

    def cached(self) -> list[GuestImage]:
        """Complete images of this recipe, newest first."""
        images = [
            image
            for entry in sorted(os.listdir(self.root))
            if not entry.startswith(".") and (image := self.load(os.path.join(self.root, entry)))
        ]
        return sorted(images, key=lambda i: i.built_at, reverse=True)

    @contextlib.contextmanager
    def _locked(self, deadline: Deadline) -> Iterator[None]:
        # One build at a time on the machine; a second boot waits for the first's image.
        with open(os.path.join(self.root, ".lock"), "a", encoding="ascii") as handle:
            told = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not told:
                        self.progress("guest image: waiting for another build to finish")
                        told = True
                    deadline.left()
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _build(self, packages: Packages, key: str, deadline: Deadline) -> GuestImage:
        started = time.monotonic()
        work = tempfile.mkdtemp(prefix=".build-", dir=self.root)
        target = os.path.join(self.root, key)
        try:
            self.progress(
                f"guest image: downloading {packages.kernel} {packages.kernel_version} and "
                f"{BUSYBOX} {packages.busybox_version} (apt-get download, ~70 MB)"
            )
            debs = self._download(packages, work, deadline)
            self.progress("guest image: unpacking them (dpkg-deb -x)")
            roots = {p: os.path.join(work, p) for p in debs}
            for package, deb in debs.items():
                self.apt.unpack(deb, roots[package], deadline.left())
            out = os.path.join(work, "image")
            os.mkdir(out)
            self.progress("guest image: extracting vmlinux from the bzImage (xz)")
            bzimage = os.path.join(roots[packages.kernel], "boot", f"vmlinuz-{packages.release}")
            _write(os.path.join(out, "vmlinux"), extract_vmlinux(_read(bzimage)))
            modules = self._modules(roots[packages.kernel], packages.release, deadline)
            names = [n for n, _ in modules]
            self.progress(f"guest image: initramfs with busybox and {', '.join(names)}")
            busybox = _read(os.path.join(roots[BUSYBOX], "bin", "busybox"))
            _write(os.path.join(out, "initrd.gz"), initramfs.build(busybox, modules))
            manifest = {
                "kernel_release": packages.release,
                "packages": {
                    packages.kernel: packages.kernel_version,
                    BUSYBOX: packages.busybox_version,
                },
                "recipe": self.recipe,
                "modules": names,
                "built_at": time.time(),
            }
            _write(os.path.join(out, "manifest.json"), json.dumps(manifest, indent=2).encode())
            shutil.rmtree(target, ignore_errors=True)  # an incomplete one (no manifest)
            os.rename(out, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        image = self.load(target)
        if image is None:
            raise exception.NovanetError(f"the guest image in {target} is incomplete")
        self.progress(f"guest image: built in {time.monotonic() - started:.0f} s: {target}")
        return image

    def _download(self, packages: Packages, work: str, deadline: Deadline) -> dict[str, str]:
        directory = os.path.join(work, "debs")
        os.mkdir(directory)
        try:
            return self.apt.download(packages, directory, deadline.left())
        except exception.ProcessExecutionError:
            # Lists older than the mirror (the version is gone): refresh once.
            self.progress("guest image: download failed; apt-get update and retry")
            self.apt.update(deadline.left())
            if self.apt.resolve(deadline.left()) != packages:
                raise exception.NovanetError(
                    "the package versions changed meanwhile; run the boot again"
                ) from None
            return self.apt.download(packages, directory, deadline.left())

    def _modules(
        self, kernel_root: str, release: str, deadline: Deadline
    ) -> list[tuple[str, bytes]]:
        files = _module_files(os.path.join(kernel_root, "lib", "modules", release, "kernel"))

        def depends(name: str) -> Sequence[str]:
            if name not in files:
                raise exception.NotFound(f"kernel module {name} is not in {release}")
            return self.apt.module_depends(files[name], deadline.left())

        order = initramfs.module_order(MODULES, depends)
        return [(name, _read(files[name])) for name in order]

    def _prune(self, keep: str) -> None:
        """Remove crashed builds, older images of this recipe and unused old ones.

        Images of another recipe (another checkout of novanet) stay for
        ``KEEP_OTHERS`` seconds after they were last used. We hold the lock.
        """
        for entry in os.listdir(self.root):
            path = os.path.join(self.root, entry)
            if entry == keep or not os.path.isdir(path):
                continue
            image = self.load(path)
            if image is None and not entry.startswith(".build-"):
                manifest = os.path.join(path, "manifest.json")
                try:
                    used = os.stat(manifest if os.path.exists(manifest) else path).st_mtime
                except FileNotFoundError:
                    continue
                if time.time() - used < KEEP_OTHERS:
                    continue
            self.progress(f"guest image: removing {path}")
            shutil.rmtree(path, ignore_errors=True)
