"""The package tools the guest image is built with: apt-cache, apt-get download, dpkg-deb, modinfo.

One method per tool call (:class:`Apt`, replaced by a stateful fake in the
unit tests), plus the pure parsers of their output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pwd
import re

from novanet import exception
from novanet.linux import processutils

KERNEL_META = "linux-image-amd64"
BUSYBOX = "busybox-static"
_DEPENDS = re.compile(r"^\s*Depends:\s*(linux-image-\S+)\s*$", re.M)


@dataclasses.dataclass(frozen=True)
class Packages:
    """The package versions an image is built from."""

    kernel: str  # linux-image-6.1.0-57-amd64
    kernel_version: str
    busybox_version: str

    @property
    def release(self) -> str:
        """The kernel release (``uname -r``): the package name without its prefix."""
        return self.kernel.removeprefix("linux-image-")

    def key(self, recipe: str) -> str:
        text = f"{self.kernel}={self.kernel_version}\0{BUSYBOX}={self.busybox_version}\0{recipe}"
        return f"{self.release}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def parse_kernel_depends(text: str) -> str:
    """The kernel package ``apt-cache depends linux-image-amd64`` names."""
    match = _DEPENDS.search(text)
    if not match:
        raise exception.NotFound(f"apt-cache names no kernel package for {KERNEL_META}")
    return match.group(1)


def parse_candidates(text: str) -> dict[str, str]:
    """package -> candidate version, from ``apt-cache policy PKG...``."""
    found: dict[str, str] = {}
    package = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            package = line.strip()[:-1]
        elif package and line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)":
                found[package] = version
    return found


class Apt:
    """The package tools (apt-cache, apt-get download, dpkg-deb, modinfo), one call each."""

    def resolve(self, timeout: float) -> Packages:
        out, _ = processutils.execute(["apt-cache", "depends", KERNEL_META], timeout=timeout)
        kernel = parse_kernel_depends(out)
        out, _ = processutils.execute(["apt-cache", "policy", kernel, BUSYBOX], timeout=timeout)
        versions = parse_candidates(out)
        missing = [p for p in (kernel, BUSYBOX) if p not in versions]
        if missing:
            raise exception.NotFound(f"apt has no candidate version of {', '.join(missing)}")
        return Packages(kernel, versions[kernel], versions[BUSYBOX])

    def update(self, timeout: float) -> None:
        processutils.execute(["apt-get", "update", "-qq"], timeout=timeout)

    def download(self, packages: Packages, directory: str, timeout: float) -> dict[str, str]:
        """Download both .debs into ``directory``; package -> .deb path."""
        with contextlib.suppress(KeyError):
            # apt drops to _apt to download and warns when it cannot write here.
            entry = pwd.getpwnam("_apt")
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        wanted = {packages.kernel: packages.kernel_version, BUSYBOX: packages.busybox_version}
        processutils.execute(
            ["env", f"--chdir={directory}", "apt-get", "download", "-q"]
            + [f"{p}={v}" for p, v in wanted.items()],
            timeout=timeout,
        )
        debs = {}
        for package in wanted:
            found = [f for f in os.listdir(directory) if f.startswith(f"{package}_")]
            if len(found) != 1:
                raise exception.NotFound(f"apt-get download left no single {package} .deb")
            debs[package] = os.path.join(directory, found[0])
        return debs

    def unpack(self, deb: str, directory: str, timeout: float) -> None:
        processutils.execute(["dpkg-deb", "-x", deb, directory], timeout=timeout)

    def module_depends(self, path: str, timeout: float) -> list[str]:
        out, _ = processutils.execute(["modinfo", "-F", "depends", path], timeout=timeout)
        return [d for d in out.strip().split(",") if d]
