"""Guests: DHCP inside an instance namespace, like a cirros guest boots.

The script below is what busybox ``udhcpc -s`` calls with ``deconfig``,
``bound``, ``renew``, ``leasefail`` or ``nak`` and the lease in the
environment (``interface``, ``ip``, ``mask`` as a prefix length,
``broadcast``, ``router``, ``dns``, ``domain``). Like cirros' default script
it applies address, mask and broadcast, replaces the default route with the
router, writes resolv.conf and says what it did on stdout (the guest's
"console"). An instance namespace shares the node's filesystem, so
resolv.conf is a file per guest (``$RESOLV_CONF``) instead of /etc/resolv.conf;
``$LEASE_FILE`` receives ``IP/PREFIX ROUTER DNS...`` for the lab to read.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Sequence

from novanet.lab.procs import Launcher
from novanet.lab.state import LabPaths
from novanet.linux import processutils

INSTANCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")

UDHCPC_SCRIPT = r"""#!/bin/sh
# novanet-lab guest DHCP script, for busybox udhcpc -s (generated).
RESOLV_CONF="${RESOLV_CONF:-/etc/resolv.conf}"
ip="${ip:-}"; mask="${mask:-}"; router="${router:-}"; dns="${dns:-}"

has_address() {
    busybox ip -4 addr show dev "$interface" | grep -q "inet $ip/$mask "
}

case "$1" in
deconfig)
    echo "deconfig: $interface up, no address"
    busybox ip -4 addr flush dev "$interface"
    busybox ip link set dev "$interface" up
    ;;
bound|renew)
    if [ "$1" = bound ] || ! has_address; then
        echo "$1: $interface $ip/$mask${broadcast:+ brd $broadcast}"
        busybox ip -4 addr flush dev "$interface"
        if [ -n "$broadcast" ]; then
            busybox ip addr add "$ip/$mask" broadcast "$broadcast" dev "$interface"
        else
            busybox ip addr add "$ip/$mask" dev "$interface"
        fi
    else
        echo "renew: $interface keeps $ip/$mask"
    fi
    if [ -n "$router" ]; then
        echo "deleting routers"
        while busybox ip -4 route del default dev "$interface" 2>/dev/null; do :; done
        for gw in $router; do
            echo "adding router $gw"
            busybox ip -4 route add default via "$gw" dev "$interface" && break
        done
    fi
    : > "$RESOLV_CONF"
    [ -n "$domain" ] && echo "search $domain" >> "$RESOLV_CONF"
    for server in $dns; do
        echo "adding dns $server"
        echo "nameserver $server" >> "$RESOLV_CONF"
    done
    if [ -n "$LEASE_FILE" ]; then
        # write-then-rename: the lab polls this file
        echo "$ip/$mask ${router%% *} $dns" > "$LEASE_FILE.tmp"
        mv "$LEASE_FILE.tmp" "$LEASE_FILE"
    fi
    ;;
leasefail|nak)
    echo "$1: ${message:-no lease}"
    ;;
esac
exit 0
"""


@dataclasses.dataclass(frozen=True)
class GuestLease:
    """What the guest configured from its DHCP lease."""

    address: str  # "10.0.0.2/24"
    router: str | None
    dns: tuple[str, ...]
    console: str = ""

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


def install_script(paths: LabPaths) -> str:
    """Write the udhcpc script into the lab directory; return its path."""
    path = paths.guest_script
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(UDHCPC_SCRIPT)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


def guest_dir(paths: LabPaths, node: str, instance: str) -> str:
    if not INSTANCE_RE.match(instance):
        raise ValueError(f"invalid instance namespace name {instance!r}")
    directory = os.path.join(paths.guests_dir(node), instance)
    os.makedirs(directory, exist_ok=True)
    return directory


def _env(paths: LabPaths, node: str, instance: str) -> dict[str, str]:
    directory = guest_dir(paths, node, instance)
    return {
        "RESOLV_CONF": os.path.join(directory, "resolv.conf"),
        "LEASE_FILE": os.path.join(directory, "lease"),
    }


def _udhcpc_argv(
    paths: LabPaths, instance: str, iface: str, hostname: str | None, extra: Sequence[str]
) -> list[str]:
    # The inner nsenter runs inside the node's mount view, so it opens the
    # node's own /run/netns/<instance>, not the machine's.
    argv = ["nsenter", f"--net=/run/netns/{instance}", "--"]
    argv += ["busybox", "udhcpc", "-i", iface, "-s", paths.guest_script, *extra]
    if hostname:
        argv += ["-x", f"hostname:{hostname}"]
    return argv


def read_lease(path: str, console: str = "") -> GuestLease | None:
    try:
        with open(path, encoding="ascii") as handle:
            fields = handle.read().split()
    except FileNotFoundError:
        return None
    if not fields:
        return None
    router = fields[1] if len(fields) > 1 and fields[1] else None
    return GuestLease(fields[0], router, tuple(fields[2:]), console)


def dhcp(
    paths: LabPaths,
    node_prefix: Sequence[str],
    node: str,
    instance: str,
    *,
    iface: str = "eth0",
    hostname: str | None = None,
    timeout: float = 10.0,
) -> GuestLease:
    """Run udhcpc once in ``instance`` (a netns of ``node``); return the lease.

    Raises ProcessExecutionError (with udhcpc's output) when no lease came.
    """
    env = _env(paths, node, instance)
    if os.path.exists(env["LEASE_FILE"]):
        os.unlink(env["LEASE_FILE"])
    # -f foreground, -q quit once bound, -n fail instead of backgrounding
    # when no lease came; -t discover attempts, -T seconds between them.
    tries = str(max(1, int(timeout)))
    argv = _udhcpc_argv(
        paths, instance, iface, hostname, ["-f", "-q", "-n", "-t", tries, "-T", "1"]
    )
    out, err = processutils.execute([*node_prefix, *argv], env=env, timeout=timeout + 10)
    lease = read_lease(env["LEASE_FILE"], console=err + out)
    if lease is None:
        raise RuntimeError(f"udhcpc in {node}/{instance} exited without a lease: {err}{out}")
    return lease


def start_dhcp_client(
    launcher: Launcher,
    paths: LabPaths,
    node: str,
    instance: str,
    *,
    iface: str = "eth0",
    hostname: str | None = None,
    timeout: float = 10.0,
) -> GuestLease:
    """Run udhcpc in the background (it renews like a real guest); wait for a lease.

    The process is named ``udhcpc-<instance>`` in the node (stop it with the
    launcher; SIGUSR2 makes udhcpc release, SIGUSR1 renew).
    """
    env = _env(paths, node, instance)
    if os.path.exists(env["LEASE_FILE"]):
        os.unlink(env["LEASE_FILE"])
    argv = _udhcpc_argv(paths, instance, iface, hostname, ["-f", "-T", "1", "-A", "2"])
    record = launcher.start(node, f"udhcpc-{instance}", argv, env=env)
    deadline = time.monotonic() + timeout
    while (lease := read_lease(env["LEASE_FILE"])) is None:
        if time.monotonic() > deadline:
            with open(record.log, encoding="utf-8", errors="replace") as handle:
                console = handle.read()
            raise TimeoutError(f"no lease in {node}/{instance} after {timeout} s: {console}")
        time.sleep(0.05)
    with open(record.log, encoding="utf-8", errors="replace") as handle:
        return dataclasses.replace(lease, console=handle.read())
