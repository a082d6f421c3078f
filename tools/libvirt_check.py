"""Check the README's libvirt recipe: a libvirt domain on a tap novanet-compute made.

    sudo apt-get install --no-install-recommends libvirt-daemon \
        libvirt-daemon-driver-qemu libvirt-clients
    sudo .venv/bin/python tools/libvirt_check.py

Not part of ./run test (libvirt is no dependency of novanet). It builds a
lab, creates an instance with a tap VIF on compute-1, and runs libvirtd in
the foreground inside compute-1 (its network namespace) with a private mount
namespace for libvirt's state, so nothing of the machine's is used or left:
tmpfs on /run/libvirt, /var/lib/libvirt, /var/log/libvirt,
/var/cache/libvirt and /etc/libvirt, and a libvirt-qemu user in a
bind-mounted copy of /etc/passwd (libvirt looks its compiled-in user up
before it reads qemu.conf; libvirt-daemon-system would create it).
``virsh define`` + ``start`` boot the lab's guest image (TCG,
``<domain type='qemu'>``); the guest's console must show its lease and
instance-id; after ``destroy`` the tap must still be on br100. Exit 0 when
all of that held.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time

from novanet.lab.cloud import Cloud
from novanet.lab.lab import Lab
from novanet.lab.vm import image, qemu

QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
"""

RUN = r"""#!/bin/sh
set -e
work="$1"
for d in /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /etc/libvirt; do
    mkdir -p "$d"; mount -t tmpfs tmpfs "$d"
done
cp "$work/qemu.conf" /etc/libvirt/qemu.conf
cp /etc/passwd "$work/passwd"; cp /etc/group "$work/group"
user='libvirt-qemu:x:64055:64055::/nonexistent:/usr/sbin/nologin'
grep -q '^libvirt-qemu:' "$work/passwd" || echo "$user" >> "$work/passwd"
grep -q '^libvirt-qemu:' "$work/group" || echo 'libvirt-qemu:x:64055:' >> "$work/group"
grep -q '^kvm:' "$work/group" || echo 'kvm:x:64056:' >> "$work/group"
mount --bind "$work/passwd" /etc/passwd
mount --bind "$work/group" /etc/group
libvirtd --pid-file /run/libvirt/libvirtd.pid > "$work/libvirtd.log" 2>&1 &
pid=$!
trap 'kill $pid; wait $pid' EXIT
n=0
while [ ! -S /run/libvirt/libvirt-sock ] && [ $n -lt 100 ]; do n=$((n + 1)); sleep 0.2; done
virsh="virsh -q -c qemu:///system"
$virsh define "$work/domain.xml"
$virsh start "$2"
n=0
until grep -q 'novanet-guest: metadata' "$work/console.log" 2>/dev/null || [ $n -ge 300 ]; do
    n=$((n + 1)); sleep 0.5
done
$virsh domiflist "$2"
$virsh destroy "$2"
$virsh undefine "$2"
"""


def domain_xml(
    name: str, hostname: str, mac: str, tap: str, built: image.GuestImage, work: str
) -> str:
    """The README's domain: the lab's kernel and initramfs, the novanet tap, two serial ports."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{qemu.MEMORY_MB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{built.vmlinux}</kernel>
    <initrd>{built.initrd}</initrd>
    <cmdline>console=ttyS0 loglevel=0 panic=-1 novanet.hostname={hostname}</cmdline>
  </os>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/{qemu.QEMU}</emulator>
    <interface type='ethernet'>
      <mac address='{mac}'/>
      <target dev='{tap}' managed='no'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
    <serial type='file'>
      <source path='{work}/console.log'/>
      <target port='0'/>
    </serial>
    <serial type='unix'>
      <source mode='bind' path='{work}/channel.sock'/>
      <target port='1'/>
    </serial>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def main() -> int:
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    built = image.ImageCache(progress=print).ensure()
    work = tempfile.mkdtemp(prefix="novanet-libvirt-")
    os.chmod(work, 0o755)
    lab = Lab(f"lv{os.getpid()}", base=tempfile.mkdtemp(prefix="novanet-libvirt-lab-"))
    os.chmod(lab.base, 0o755)
    try:
        lab.up()
        cloud = Cloud.of(lab)
        cloud.novanet.start(metadata=True, progress=print)
        inst = cloud.instances.create("lvm", "compute-1", vif_type="tap")
        assert inst.mac and inst.device
        with open(f"{work}/domain.xml", "w") as handle:
            handle.write(domain_xml(inst.name, "lvm", inst.mac, inst.device, built, work))
        with open(f"{work}/qemu.conf", "w") as handle:
            handle.write(QEMU_CONF)
        with open(f"{work}/run.sh", "w") as handle:
            handle.write(RUN)
        started = time.monotonic()
        out, err = lab.execute(
            "compute-1",
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                f"{work}/run.sh",
                work,
                inst.name,
            ],
            timeout=300,
        )
        print(out + err)
        with open(f"{work}/console.log", errors="replace") as handle:
            report = qemu.parse_console(handle.read())
        link, _ = lab.execute("compute-1", ["ip", "-o", "link", "show", inst.device])
        ok = (
            report.lease is not None
            and report.lease.address == f"{inst.address}/24"
            and report.instance_id == f"i-{inst.id:08x}"
            and "master br100" in link
        )
        print(
            f"lease {report.lease and report.lease.address}, instance-id {report.instance_id} "
            f"({time.monotonic() - started:.1f} s); after destroy: {link.strip()}"
        )
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        lab.down()
        with contextlib.suppress(OSError):
            os.rmdir(lab.base)  # down removes it when it is empty
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)


if __name__ == "__main__":
    sys.exit(main())
