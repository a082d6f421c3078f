"""The kernel boundary: everything that touches netlink, iptables or processes.

Nothing outside this package spawns a process or talks to the kernel. The
managers above it receive these objects as constructor arguments, so their
logic is tested with the stateful fakes in ``novanet.linux.fakes``.
"""
