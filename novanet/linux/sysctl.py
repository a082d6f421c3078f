"""Kernel parameters under /proc/sys.

pyroute2 has no sysctl API, so these are plain file reads and writes, like
`sysctl -w` does. The files under /proc/sys/net belong to the network
namespace of the process that opens them, so a daemon running in a namespace
changes that namespace only.
"""

from __future__ import annotations

import os

from novanet.exception import NovanetError

IP_FORWARD = "net.ipv4.ip_forward"
BRIDGE_NF_CALL_IPTABLES = "net.bridge.bridge-nf-call-iptables"


class SysctlError(NovanetError):
    """A kernel parameter could not be read or written."""


class BridgeNetfilterMissing(SysctlError):
    """br_netfilter is not loaded: bridged traffic bypasses iptables."""


class Sysctl:
    """Read and write kernel parameters (``proc_root`` is for tests)."""

    def __init__(self, proc_root: str = "/proc/sys") -> None:
        self.proc_root = proc_root

    def path(self, name: str) -> str:
        # sysctl(8) syntax: dots separate levels, unless the name uses '/'
        # (needed when a level holds a dot, as in net/ipv4/conf/eth0.100/...).
        parts = name.split("/") if "/" in name else name.split(".")
        if not all(parts) or any(part in (".", "..") for part in parts):
            raise ValueError(f"invalid sysctl name {name!r}")
        return os.path.join(self.proc_root, *parts)

    def exists(self, name: str) -> bool:
        return os.path.exists(self.path(name))

    def get(self, name: str) -> str:
        try:
            with open(self.path(name)) as handle:
                return handle.read().strip()
        except OSError as exc:
            raise SysctlError(f"cannot read {name}: {exc.strerror}") from None

    def set(self, name: str, value: str | int) -> bool:
        """Write ``value`` unless it is already set; True if it was written."""
        text = str(value)
        if self.get(name) == text:
            return False
        try:
            with open(self.path(name), "w") as handle:
                handle.write(text + "\n")
        except OSError as exc:
            raise SysctlError(f"cannot set {name}={text}: {exc.strerror}") from None
        return True

    def enable_ip_forward(self) -> bool:
        """net.ipv4.ip_forward=1 (the controller routes for the fixed range)."""
        return self.set(IP_FORWARD, 1)

    def ensure_bridge_nf_call_iptables(self) -> bool:
        """net.bridge.bridge-nf-call-iptables=1, or BridgeNetfilterMissing.

        Without it, traffic between ports of a bridge never reaches the
        iptables FORWARD chain, so the per-instance chains filter nothing.
        The parameter only exists while the br_netfilter module is loaded
        (a new network namespace starts with it at 1).
        """
        if not self.exists(BRIDGE_NF_CALL_IPTABLES):
            raise BridgeNetfilterMissing(
                f"{BRIDGE_NF_CALL_IPTABLES} does not exist: the br_netfilter kernel module "
                "is not loaded, so bridged instance traffic would bypass iptables "
                "(load it with 'modprobe br_netfilter')"
            )
        return self.set(BRIDGE_NF_CALL_IPTABLES, 1)
