"""The QEMU guest's pure parts: initramfs archive, vmlinux, module order, console, argv."""

from __future__ import annotations

import gzip
import lzma
import shutil
import stat
import subprocess

import pytest

from novanet import exception
from novanet.lab.vm import apt, image, initramfs, qemu


def busybox_cpio_list(archive: bytes) -> list[str]:
    if not shutil.which("busybox"):
        pytest.skip("needs busybox (its cpio reads the archive)")
    out = subprocess.run(
        ["busybox", "cpio", "-t", "-v"], input=archive, capture_output=True, check=True
    )
    return out.stdout.decode().splitlines()


def test_cpio_newc_is_read_by_a_real_cpio() -> None:
    archive = initramfs.cpio_newc(
        [
            initramfs.Entry("dev", stat.S_IFDIR | 0o755),
            initramfs.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
            initramfs.Entry("init", stat.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n"),
            initramfs.Entry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
            initramfs.Entry("odd", stat.S_IFREG | 0o644, b"x"),  # data needing padding
        ]
    )
    assert len(archive) % 4 == 0
    listing = busybox_cpio_list(archive)
    by_name = {line.split()[-1] if "->" not in line else line.split()[-3]: line for line in listing}
    assert by_name["dev"].startswith("drwxr-xr-x")
    assert by_name["dev/console"].startswith("crw-------")
    assert by_name["init"].startswith("-rwxr-xr-x") and " 18 " in by_name["init"]
    assert by_name["bin/sh"].startswith("lrwxrwxrwx") and by_name["bin/sh"].endswith("-> busybox")
    assert by_name["odd"].startswith("-rw-r--r--")


def test_initramfs_holds_init_busybox_and_modules_in_order() -> None:
    modules = [("virtio", b"\x7fELF-v"), ("virtio_net", b"\x7fELF-n")]
    archive = gzip.decompress(initramfs.build(b"\x7fELF-busybox", modules))
    names = [line.split()[-1] for line in busybox_cpio_list(archive) if "->" not in line]
    for wanted in ("init", "bin/busybox", "etc/udhcpc.script", "etc/udhcpc.wrap", "etc/modules"):
        assert wanted in names
    assert names.index("lib/modules/virtio.ko") < names.index("lib/modules/virtio_net.ko")
    assert b"virtio\nvirtio_net\n" in archive  # /etc/modules: the load order
    # Reproducible: the same inputs give the same bytes (the cache key relies on it).
    assert initramfs.build(b"\x7fELF-busybox", modules) == initramfs.build(
        b"\x7fELF-busybox", modules
    )


def test_init_speaks_the_channel_protocol() -> None:
    assert "@MARK@" not in initramfs.INIT and "@SERVE@" not in initramfs.INIT
    assert "serve()" in initramfs.INIT and 'echo "@@novanet end $id $rc"' in initramfs.INIT


def test_module_order_puts_dependencies_first() -> None:
    deps = {
        "virtio_net": ["virtio_ring", "virtio", "net_failover"],
        "net_failover": ["failover"],
        "virtio_pci": ["virtio_ring", "virtio", "virtio_pci_modern_dev"],
        "virtio": [],
        "virtio_ring": [],
        "failover": [],
        "virtio_pci_modern_dev": [],
    }
    order = initramfs.module_order(["virtio_net", "virtio_pci"], lambda m: deps[m])
    assert sorted(order) == sorted(deps) and len(order) == len(set(order))
    for module, needs in deps.items():
        assert all(order.index(d) < order.index(module) for d in needs)


def test_module_cycle_is_an_error() -> None:
    deps = {"a": ["b"], "b": ["a"]}
    with pytest.raises(ValueError, match="a -> b -> a"):
        initramfs.module_order(["a"], lambda m: deps[m])


def xz(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)


def test_vmlinux_is_the_xz_stream_in_the_bzimage() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 64
    # A setup header, a false magic (not a valid stream), the payload, a trailer.
    bzimage = b"MZ" + b"\0" * 500 + image.XZ_MAGIC + b"junk" + xz(elf) + b"\xff" * 100
    assert image.extract_vmlinux(bzimage) == elf


def test_bzimage_without_an_xz_elf() -> None:
    with pytest.raises(ValueError, match="no xz-compressed ELF"):
        image.extract_vmlinux(b"MZ" + xz(b"not an elf"))


APT_DEPENDS = """linux-image-amd64
  Depends: linux-image-6.1.0-57-amd64
"""
APT_POLICY = """linux-image-6.1.0-57-amd64:
  Installed: (none)
  Candidate: 6.1.192-3
  Version table:
     6.1.192-3 500
busybox-static:
  Installed: (none)
  Candidate: 1:1.35.0-4+deb12u1+b1
"""


def test_apt_output_parsing() -> None:
    assert apt.parse_kernel_depends(APT_DEPENDS) == "linux-image-6.1.0-57-amd64"
    assert apt.parse_candidates(APT_POLICY) == {
        "linux-image-6.1.0-57-amd64": "6.1.192-3",
        "busybox-static": "1:1.35.0-4+deb12u1+b1",
    }
    assert apt.parse_candidates("busybox-static:\n  Candidate: (none)\n") == {}
    with pytest.raises(exception.NotFound):
        apt.parse_kernel_depends("linux-image-amd64\n")


def test_image_key_follows_versions_and_recipe() -> None:
    packages = apt.Packages("linux-image-6.1.0-57-amd64", "6.1.192-3", "1:1.35.0-4")
    key = packages.key("r1")
    assert key.startswith("6.1.0-57-amd64-")
    assert packages.key("r2") != key
    assert apt.Packages(packages.kernel, "6.1.192-4", "1:1.35.0-4").key("r1") != key
    assert apt.Packages(packages.kernel, "6.1.192-3", "1:1.36.0-1").key("r1") != key


SPEC = qemu.VmSpec(
    name="instance-00000001",
    hostname="cirros",
    mac="fa:16:3e:2c:e8:ec",
    tap="vnet0",
    vmlinux="/cache/vmlinux",
    initrd="/cache/initrd.gz",
    console_log="/run/lab/compute-1/logs/instance-00000001.console.log",
    channel_socket="/run/lab/a,b/channel.sock",
)


def test_qemu_argv() -> None:
    argv = qemu.qemu_argv(SPEC)
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert argv[0] == "qemu-system-x86_64"
    assert "-nodefaults" in argv and "-no-reboot" in argv
    assert argv[argv.index("-machine") + 1] == "pc,accel=tcg"
    assert argv[argv.index("-m") + 1] == "128"
    assert argv[argv.index("-kernel") + 1] == "/cache/vmlinux"
    append = argv[argv.index("-append") + 1]
    assert "console=ttyS0" in append and "novanet.hostname=cirros" in append
    netdev = argv[argv.index("-netdev") + 1]
    assert netdev == "tap,id=net0,ifname=vnet0,script=no,downscript=no"
    assert argv[argv.index("-device") + 1] == (
        "virtio-net-pci,netdev=net0,mac=fa:16:3e:2c:e8:ec,romfile="
    )
    chardevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-chardev"]
    assert chardevs[1] == "socket,id=channel,path=/run/lab/a,,b/channel.sock,server=on,wait=off"
    # The console first (ttyS0), the command channel second (ttyS1).
    serials = [argv[i + 1] for i, a in enumerate(argv) if a == "-serial"]
    assert serials == ["chardev:console", "chardev:channel"]
    assert pairs  # every option has its value


def test_qemu_refuses_a_socket_path_unix_cannot_hold() -> None:
    spec = qemu.VmSpec(**{**SPEC.__dict__, "channel_socket": "/" + "x" * 120})
    with pytest.raises(exception.UsageError, match="too long"):
        qemu.qemu_argv(spec)


CONSOLE = """\
[    0.000000] Linux version 6.1.0-57-amd64
novanet-guest: boot kernel=6.1.0-57-amd64 uptime=2.31
udhcpc: lease of 10.0.0.4 obtained from 10.0.0.1, lease time 86400
novanet-guest: lease address=10.0.0.4/24 router=10.0.0.1 dns=10.0.0.1,10.0.0.9 server=10.0.0.1 uptime=2.93
novanet-guest: error=insmod-failover
novanet-guest: metadata instance-id=i-00000003 tries=2 uptime=3.50
"""


def test_console_report() -> None:
    report = qemu.parse_console(CONSOLE)
    assert report.lease is not None
    assert (report.lease.address, report.lease.router) == ("10.0.0.4/24", "10.0.0.1")
    assert report.lease.dns == ("10.0.0.1", "10.0.0.9")
    assert report.dhcp_server == "10.0.0.1" and report.lease_uptime == 2.93
    assert report.instance_id == "i-00000003" and report.metadata_error is None
    assert report.errors == ("insmod-failover",)


def test_console_report_before_the_lease_and_after_metadata_failed() -> None:
    assert qemu.parse_console("novanet-guest: boot kernel=x uptime=1\n") == qemu.ConsoleReport()
    failed = qemu.parse_console(
        "novanet-guest: lease address=10.0.0.2/24 router= dns= server=10.0.0.1 uptime=x\n"
        "novanet-guest: metadata error=unreachable tries=30 uptime=40.1\n"
    )
    assert failed.lease is not None and failed.lease.router is None and failed.lease.dns == ()
    assert failed.lease_uptime is None and failed.metadata_uptime == 40.1
    assert failed.instance_id is None and failed.metadata_error == "unreachable"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    from novanet.lab import cli

    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_boot_guest_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "boot", "vm", "--host", "compute-1", "--guest", "kvm")
    assert code == 2 and "invalid choice: 'kvm'" in err
    code, err = run_cli(capsys, "boot", "vm", "--host", "compute-1", "--guest", "qemu", "--timeout", "0")
    assert code == 2 and err == "novanet-lab: error: --timeout 0.0: give seconds above 0\n"
