"""The checks of ``novanet-manage diagnose``: node facts against the intended state, pure.

Input: the facts of each node (:mod:`novanet.explain.facts`, gathered over
RPC) and an :class:`Intended` the CLI builds from the database and the
configuration. Output: one :class:`Problem` per thing wrong, naming the
host, the object, what is wrong and what to do, or that novanet repairs it
by itself within N s (the configured check interval). No I/O here: every
check is tested on facts dicts, healthy and broken.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NETWORK = "novanet-network"
COMPUTE = "novanet-compute"
IP_FORWARD = "net.ipv4.ip_forward"
BRIDGE_NF = "net.bridge.bridge-nf-call-iptables"


@dataclasses.dataclass(frozen=True)
class Problem:
    host: str
    object: str
    problem: str
    action: str

    def line(self) -> str:
        return f"{self.host}: {self.object}: {self.problem}; {self.action}"

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Service:
    """A row of the services table, as the CLI sees it now."""

    host: str
    binary: str
    up: bool
    disabled: bool = False
    updated_at: str = ""


@dataclasses.dataclass(frozen=True)
class Bridge:
    """A bridge the networks use: its port, and on the controller its first address."""

    name: str
    interface: str | None
    gateway: str  # dhcp_server/prefix, e.g. 10.0.0.1/24


@dataclasses.dataclass(frozen=True)
class Intended:
    """What should be, from the database and the configuration.

    ``dnsmasq_argv``/``hostsfile``: per bridge (the controller's DHCP);
    ``leased``: addresses the database has as leased; intervals in seconds.
    """

    services: Sequence[Service]
    bridges: Sequence[Bridge]
    dnsmasq_argv: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    hostsfile: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    leased: frozenset[str] = frozenset()
    # Which bridges a node must have: a controller those of the networks it
    # serves (default: all); a compute host the agent's own bridge
    # (flat_network_bridge) and those its VIFs are on.
    served: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    compute_bridge: str | None = None
    bridge_check_interval: int = 10
    dnsmasq_check_interval: int = 10
    max_skew: float = 5.0


def repairs(seconds: int | None) -> str:
    if seconds is None or seconds <= 0:
        return "novanet does not repair this by itself: restart the daemon"
    return f"novanet repairs this by itself within {seconds} s"


def check(
    intended: Intended,
    facts: Mapping[str, Mapping[str, Any]],
    unreachable: Mapping[str, str] | None = None,
    now: float | None = None,
) -> list[Problem]:
    """Every problem found; ``facts`` and ``unreachable`` are keyed ``host/binary``."""
    problems = check_services(intended.services, unreachable or {})
    for node in facts.values():
        problems += check_node(intended, node)
    if now is not None:
        problems += check_skew(facts, now, intended.max_skew)
    return problems


def key(host: str, binary: str) -> str:
    return f"{host}/{binary}"


def check_services(services: Iterable[Service], unreachable: Mapping[str, str]) -> list[Problem]:
    """Heartbeats (the services table) and daemons that did not answer node_facts."""
    problems = []
    for svc in services:
        if not svc.up:
            since = f" since {svc.updated_at}" if svc.updated_at else ""
            problems.append(
                Problem(
                    svc.host, svc.binary, f"no heartbeat{since} (down)",
                    f"start {svc.binary} on {svc.host} (systemctl start {svc.binary}) "
                    "and read its log",
                )
            )  # fmt: skip
        elif key(svc.host, svc.binary) in unreachable:
            problems.append(
                Problem(
                    svc.host, svc.binary,
                    f"did not answer: {unreachable[key(svc.host, svc.binary)]}",
                    f"check that {svc.binary} runs on {svc.host} and reaches RabbitMQ",
                )
            )  # fmt: skip
    return problems


def check_node(intended: Intended, node: Mapping[str, Any]) -> list[Problem]:
    host, binary = node.get("host", "?"), node.get("binary", "?")
    problems = [
        Problem(host, binary, f"could not read {error}", f"read {binary}'s log on {host}")
        for error in node.get("errors", [])
    ]
    links = {li["name"]: li for li in node.get("links", [])}
    for bridge in _bridges_of(intended, node):
        problems += check_bridge(host, bridge, links, intended.bridge_check_interval)
        br = links.get(bridge.name)
        if br is None:
            continue
        if binary == NETWORK:
            first = br["addresses"][0] if br["addresses"] else None
            if first != bridge.gateway:
                problems.append(
                    Problem(
                        host, bridge.name,
                        f"first IPv4 address is {first or 'none'}, not {bridge.gateway} "
                        "(dnsmasq answers DHCP from the first address)",
                        repairs(intended.bridge_check_interval),
                    )
                )  # fmt: skip
        elif br["addresses"]:
            problems.append(
                Problem(
                    host, bridge.name,
                    f"holds IPv4 {', '.join(br['addresses'])} (a compute host's bridge has none)",
                    "; ".join(f"ip addr del {a} dev {bridge.name}" for a in br["addresses"]),
                )
            )  # fmt: skip
    sysctl = node.get("sysctl", {})
    if binary == NETWORK:
        if sysctl.get(IP_FORWARD) != "1":
            problems.append(
                Problem(
                    host, IP_FORWARD, f"is {sysctl.get(IP_FORWARD)} (the controller routes)",
                    repairs(intended.bridge_check_interval),
                )
            )  # fmt: skip
        problems += check_dhcp(intended, node)
    else:
        if not node.get("modules", {}).get("br_netfilter"):
            problems.append(
                Problem(
                    host, "br_netfilter", "module not loaded: bridged traffic bypasses iptables",
                    "modprobe br_netfilter",
                )
            )  # fmt: skip
        elif sysctl.get(BRIDGE_NF) != "1":
            problems.append(
                Problem(
                    host, BRIDGE_NF,
                    f"is {sysctl.get(BRIDGE_NF)}: the instance chains filter nothing",
                    repairs(intended.bridge_check_interval),
                )
            )  # fmt: skip
    for item in node.get("drift", []):
        obj, problem = item["object"], item["problem"]
        if problem.startswith(obj):  # "ipset X lacks 10.0.0.3" under object "ipset X"
            problem = problem[len(obj) :].lstrip(": ")
        problems.append(Problem(host, obj, problem, repairs(item.get("repair_within"))))
    return problems


def _bridges_of(intended: Intended, node: Mapping[str, Any]) -> list[Bridge]:
    """The bridges this node must have (see :class:`Intended`)."""
    if node.get("binary") == NETWORK:
        names = intended.served.get(node.get("host", ""))
    else:
        vifs = node.get("vifs") or []
        names = frozenset(v.get("bridge") for v in vifs if v.get("bridge"))
        names |= {intended.compute_bridge} if intended.compute_bridge else frozenset()
        if not names:
            return list(intended.bridges)
    return [b for b in intended.bridges if names is None or b.name in names]


def check_bridge(
    host: str, bridge: Bridge, links: Mapping[str, Mapping[str, Any]], interval: int
) -> list[Problem]:
    """The bridge up, its flat interface a port of it, up and promiscuous."""
    br = links.get(bridge.name)
    if br is None:
        return [Problem(host, bridge.name, "bridge missing", repairs(interval))]
    problems = []
    if br.get("kind") != "bridge":
        problems.append(
            Problem(host, bridge.name, f"is a {br.get('kind') or 'device'}, not a bridge",
                    f"ip link del {bridge.name} (novanet then makes the bridge)")
        )  # fmt: skip
    if not br.get("up"):
        problems.append(Problem(host, bridge.name, "bridge down", repairs(interval)))
    name = bridge.interface
    if not name:
        return problems
    port = links.get(name)
    if port is None:
        return problems + [
            Problem(host, name, "flat_interface missing", f"check the network cabling of {host}")
        ]
    if port.get("master") != bridge.name:
        where = f"a port of {port['master']}" if port.get("master") else "in no bridge"
        problems.append(
            Problem(host, name, f"{where}, not of {bridge.name}", repairs(interval))
        )  # fmt: skip
    if not port.get("up"):
        problems.append(Problem(host, name, "down", repairs(interval)))
    if not port.get("promisc"):
        problems.append(
            Problem(host, name, "not promiscuous (the seed: ifconfig eth2 up promisc)",
                    f"ip link set {name} promisc on")
        )  # fmt: skip
    return problems


def check_dhcp(intended: Intended, node: Mapping[str, Any]) -> list[Problem]:
    """dnsmasq running with the expected argv; the hostsfile and leases against the database."""
    host = node.get("host", "?")
    problems = []
    dnsmasq = node.get("dnsmasq") or {}
    for bridge, argv in intended.dnsmasq_argv.items():
        if not dnsmasq.get("running"):
            problems.append(
                Problem(host, f"dnsmasq ({bridge})", "not running",
                        repairs(intended.dnsmasq_check_interval))
            )  # fmt: skip
        elif list(dnsmasq.get("argv", [])) != list(argv):
            got = list(dnsmasq.get("argv", []))
            diff = _first_difference(got, list(argv))
            problems.append(
                Problem(host, f"dnsmasq ({bridge})", f"runs with another command line ({diff})",
                        f"restart {NETWORK} on {host}: it restarts dnsmasq with the expected one")
            )  # fmt: skip
    got_lines = node.get("hostsfile")
    for bridge, wanted in intended.hostsfile.items():
        have = set(got_lines or [])
        stale = sorted(have - set(wanted))
        missing = sorted(set(wanted) - have)
        fix = f"restart {NETWORK} on {host}: it rewrites the hostsfile from the database"
        if got_lines is None and wanted:
            problems.append(Problem(host, f"hostsfile ({bridge})", "missing", fix))
            continue
        for line in stale:
            problems.append(
                Problem(host, f"hostsfile ({bridge})", f"stale line {line!r}", fix)
            )  # fmt: skip
        for line in missing:
            problems.append(
                Problem(host, f"hostsfile ({bridge})", f"lacks {line!r}", fix)
            )  # fmt: skip
    leases = node.get("leases")
    if leases is not None:
        held = {a for a in map(_lease_address, leases) if a is not None}
        for address in sorted(intended.leased - held, key=ipaddress.IPv4Address):
            problems.append(
                Problem(host, "leases", f"{address} leased in the database, not in dnsmasq's",
                        "the lease ends at its expiry; nothing to do unless it persists")
            )  # fmt: skip
        for address in sorted(held - intended.leased, key=ipaddress.IPv4Address):
            problems.append(
                Problem(host, "leases", f"{address} leased by dnsmasq, not in the database",
                        f"restart {NETWORK} on {host} (dnsmasq reads its leases from it)")
            )  # fmt: skip
    return problems


def check_skew(
    facts: Mapping[str, Mapping[str, Any]], now: float, max_skew: float
) -> list[Problem]:
    """Each node's clock against the CLI's (so, between nodes, within twice that)."""
    problems = []
    for node in facts.values():
        when = node.get("time")
        if isinstance(when, (int, float)) and abs(when - now) > max_skew:
            problems.append(
                Problem(
                    node.get("host", "?"), "clock",
                    f"{when - now:+.1f} s from this host's clock (more than {max_skew:g} s)",
                    "synchronise the clocks (NTP): heartbeats and leases compare times",
                )
            )  # fmt: skip
    return problems


def _first_difference(got: list[str], wanted: list[str]) -> str:
    for index, (a, b) in enumerate(zip(got, wanted, strict=False)):
        if a != b:
            return f"argument {index} is {a!r}, expected {b!r}"
    if len(got) > len(wanted):
        return f"extra {got[len(wanted)]!r}"
    return f"lacks {wanted[len(got)]!r}"


def _lease_address(line: str) -> str | None:
    """dnsmasq lease-file line: ``expiry mac address hostname client-id``."""
    parts = line.split()
    return parts[2] if len(parts) >= 3 else None


def report(problems: Sequence[Problem], checked: int) -> dict[str, Any]:
    """The ``--format json`` object."""
    return {
        "healthy": not problems,
        "problems": [
            {"host": p.host, "object": p.object, "problem": p.problem, "action": p.action}
            for p in problems
        ],
        "checked": checked,
    }
