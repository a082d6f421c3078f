"""Real guests for the lab: QEMU (TCG) virtual machines on novanet's tap VIFs.

- :mod:`~novanet.lab.vm.initramfs`: the guest's init (DHCP, metadata, a
  command channel) and the initramfs archive, as pure functions;
- :mod:`~novanet.lab.vm.image`: Debian's kernel and busybox-static, fetched
  with apt-get (:mod:`~novanet.lab.vm.apt`) and built into a cached vmlinux
  + initramfs;
- :mod:`~novanet.lab.vm.channel`: the host side of the command channel (a
  second serial port on a unix socket);
- :mod:`~novanet.lab.vm.qemu`: the QEMU command line, and a VM started in a
  compute node of the lab on the tap that novanet-compute made.
"""
