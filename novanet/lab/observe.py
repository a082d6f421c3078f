"""What the lab actually shows, gathered the way the seed's operator looked.

Nodes are read over netlink (:mod:`novanet.lab.netview`), iptables with the
seed's own commands (``iptables -S``, ``iptables -t nat -S``) run in the
node, dnsmasq's command line from /proc through its pid file, the hostsfile
from disk. Guests are looked at with their own tools (busybox, as on
cirros): ``ip addr`` and ``route -n`` run inside the instance namespace.
"""

from __future__ import annotations

import os

from novanet.conf import loader, new_conf
from novanet.lab import expect, netview
from novanet.lab.daemons import Novanet
from novanet.lab.instances import Instance, Instances
from novanet.lab.lab import Lab


def read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n") for line in handle if line.strip()]
    except FileNotFoundError:
        return []


class Observer:
    """Reads one lab's state."""

    def __init__(self, novanet: Novanet, instances: Instances) -> None:
        self.novanet = novanet
        self.instances = instances
        self.lab: Lab = novanet.lab

    # -- configuration ---------------------------------------------------------------

    def setup(self) -> expect.Setup:
        """The expectation inputs, from the controller's nova.conf as its daemons read it."""
        conf = new_conf()
        loader.load(conf, [loader.Source("config", self.lab.paths.nova_conf(self.controller))])
        return expect.Setup(
            networks_path=conf.networks_path,
            dhcpbridge=conf.dhcpbridge,
            lease_time=conf.dhcp_lease_time,
            metadata=self.novanet.metadata_running(),
            allow_same_net_traffic=conf.allow_same_net_traffic,
        )

    @property
    def controller(self) -> str:
        return self.novanet.controller

    def nova_conf(self, node: str) -> list[str]:
        return read_lines(self.lab.paths.nova_conf(node))

    # -- nodes ---------------------------------------------------------------------------

    def _netns(self, node: str) -> str:
        return self.lab.topology.netns(node)

    def interfaces(self, node: str, names: list[str]) -> list[str]:
        return netview.render_links(netview.links(self._netns(node)), names)

    def bridges(self, node: str) -> list[str]:
        return netview.brctl_show(netview.links(self._netns(node)))

    def routes(self, node: str) -> list[str]:
        return netview.route_n(self._netns(node))

    def iptables(self, node: str, table: str = "filter") -> list[str]:
        out, _ = self.lab.execute(node, ["iptables", "-t", table, "-S"])
        return [line for line in out.splitlines() if line.strip()]

    def iptables_save(self, node: str) -> list[str]:
        """``iptables-save`` without comments and counters (stable across runs)."""
        out, _ = self.lab.execute(node, ["iptables-save"])
        return [
            line.split(" [", 1)[0] if line.startswith(":") else line
            for line in out.splitlines()
            if line.strip() and not line.startswith("#")
        ]

    def dnsmasq_pid(self, setup: expect.Setup, bridge: str = "br100") -> int | None:
        pidfile = os.path.join(setup.networks_path, f"nova-{bridge}.pid")
        text = read_lines(pidfile)
        return int(text[0]) if text and text[0].strip().isdigit() else None

    def dnsmasq_argv(self, setup: expect.Setup, bridge: str = "br100") -> list[str]:
        pid = self.dnsmasq_pid(setup, bridge)
        if pid is None:
            return []
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return []
        return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]

    def dnsmasq_pids(self) -> list[int]:
        """dnsmasq processes in the controller's network namespace (parent first)."""
        found = []
        target = os.stat(f"/run/netns/{self._netns(self.controller)}")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/comm", encoding="ascii") as handle:
                    if handle.read().strip() != "dnsmasq":
                        continue
                st = os.stat(f"/proc/{entry}/ns/net")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                found.append(int(entry))
        return sorted(found)

    def hostsfile(self, setup: expect.Setup, bridge: str = "br100") -> list[str]:
        return read_lines(os.path.join(setup.networks_path, f"nova-{bridge}.conf"))

    # -- guests -----------------------------------------------------------------------------

    def guest_interface(self, instance: Instance, iface: str = "eth0") -> list[str]:
        """``eth0: link/ether MAC`` and its inet lines, as busybox ip shows them."""
        out, _ = self.instances.in_guest(instance, ["busybox", "ip", "addr", "show", "dev", iface])
        mac = next(
            (ln.split()[1] for ln in out.splitlines() if ln.strip().startswith("link/ether")), "?"
        )
        inet = [" ".join(ln.split()) for ln in out.splitlines() if ln.strip().startswith("inet ")]
        return [f"{iface}: link/ether {mac}", *inet]

    def guest_routes(self, instance: Instance) -> list[str]:
        out, _ = self.instances.in_guest(instance, ["busybox", "route", "-n"])
        return expect.route_rows(out)
