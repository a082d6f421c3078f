"""What one node's kernel and processes hold right now, as one JSON-safe dict.

Both ``novanet-manage diagnose`` and ``novanet-manage trace`` start from
these facts; each daemon gathers its own node's (RPC ``node_facts``), so the
CLI needs no access to the nodes. Shape (schema 1)::

    {"schema": 1, "host", "binary", "time",
     "links": [{"name", "index", "kind", "master", "up", "promisc", "mac", "addresses"}],
     "routes": [{"dst", "gateway", "dev", "src"}],          # main table, IPv4
     "sysctl": {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"|None},
     "modules": {"br_netfilter": bool},
     "iptables": {"filter": text, "nat": text, "mangle": text},   # iptables-save
     "ipsets": {name: [members]},
     "nft_bridge": `nft -j list table bridge novanet` | None,
     "dnsmasq": {"running", "pid", "argv"} | None,      # controller only
     "hostsfile": [lines] | None, "leases": [lines] | None,   # controller only
     "vifs": [{"instance_uuid", "devname", "mac", "address", "bridge", "netns"}] | None,
     "drift": [{"object", "problem", "repair_within"}],   # optional: the daemon's managers
     "errors": [str]}

Gathering never raises: whatever could not be read is named in ``errors``
and its key holds an empty value. The kernel is read through the one home of
each job (linkdump, ip_lib's IPRoute, Sysctl, processutils.execute, procfs).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from oslo_config import cfg

from novanet.conf import loader
from novanet.dhcp import argv as dnsmasq_argv
from novanet.exception import NovanetError, ProcessExecutionError
from novanet.linux import processutils
from novanet.linux.ip_lib import iproute
from novanet.linux.ipset import parse_save
from novanet.linux.linkdump import dump_links
from novanet.linux.netlink import MAIN_TABLE, LinkInfo, default_executor
from novanet.linux.process import PidFileProcess
from novanet.linux.sysctl import BRIDGE_NF_CALL_IPTABLES, IP_FORWARD, Sysctl
from novanet.rpc.errors import first_line

SCHEMA = 1
NETWORK = "novanet-network"
COMPUTE = "novanet-compute"
ROLES = {"network": NETWORK, "compute": COMPUTE, NETWORK: NETWORK, COMPUTE: COMPUTE}
IPTABLES_TABLES = ("filter", "nat", "mangle")
NFT_TABLE = ("bridge", "novanet")  # the compute agent's anti-spoofing table
RTN_UNICAST = 1
IFF_PROMISC = 0x100
EVERY_SET = re.compile("")  # every ipset, not only novanet's
Execute = Callable[..., tuple[str, str]]


def _addresses() -> dict[int, list[str]]:
    """ifindex -> its IPv4 addresses as CIDRs, in kernel order (primary first)."""
    found: dict[int, list[str]] = {}
    with iproute(None) as ipr:
        for msg in ipr.addr("dump", family=socket.AF_INET):
            ip = msg.get("local") or msg.get("address")
            found.setdefault(msg["index"], []).append(f"{ip}/{msg['prefixlen']}")
    return found


def _routes(names: dict[int, str]) -> list[dict[str, Any]]:
    """The main table's IPv4 unicast routes."""
    found = []
    with iproute(None) as ipr:
        for msg in ipr.route("dump", family=socket.AF_INET):
            table = msg.get("RTA_TABLE") or msg["table"]
            if table != MAIN_TABLE or msg["type"] != RTN_UNICAST:
                continue
            oif = msg.get("oif")
            found.append(
                {
                    "dst": f"{msg.get('dst') or '0.0.0.0'}/{msg['dst_len']}",
                    "gateway": msg.get("gateway"),
                    "dev": names.get(oif, f"if{oif}") if oif else "",
                    "src": msg.get("prefsrc"),
                }
            )
    return found


@dataclasses.dataclass
class Reader:
    """Where gather() reads from: the real kernel of this process's namespace by default.

    Unit tests replace the pieces with fakes; every field is a plain callable
    or object so that a fake needs no kernel.
    """

    links: Callable[[], list[LinkInfo]] = dump_links
    addresses: Callable[[], dict[int, list[str]]] = _addresses
    routes: Callable[[dict[int, str]], list[dict[str, Any]]] = _routes
    sysctl: Sysctl = dataclasses.field(default_factory=Sysctl)
    execute: Execute = processutils.execute
    proc_root: str = "/proc"
    sys_module: str = "/sys/module"
    clock: Callable[[], float] = time.time


def gather(
    conf: cfg.ConfigOpts,
    role: str,
    *,
    bridge: str | None = None,
    vifs: Iterable[dict[str, Any]] | None = None,
    drift: Callable[[], list[dict[str, Any]]] | None = None,
    reader: Reader | None = None,
) -> dict[str, Any]:
    """The facts of this node (see the module docstring); never raises.

    :param role: ``network``/``compute`` (or the binary's name)
    :param bridge: the controller's DHCP bridge (default: flat_network_bridge)
    :param vifs: a compute agent's VIFs from its own state; None: found from
        the kernel (ports of the bridge, no instance uuid)
    :param drift: the daemon's managers' dry-run "what would you repair"
    """
    binary = ROLES.get(role)
    if binary is None:
        raise ValueError(f"role {role!r}: use network or compute")
    r = reader or Reader()
    errors: list[str] = []

    def attempt(what: str, func: Callable[[], Any], empty: Any) -> Any:
        try:
            return func()
        except Exception as exc:  # noqa: BLE001 - facts name what failed, never raise
            errors.append(f"{what}: {first_line(str(exc)) or type(exc).__name__}")
            return empty

    facts: dict[str, Any] = {
        "schema": SCHEMA,
        "host": conf.host,
        "binary": binary,
        "time": r.clock(),
    }
    run = default_executor()  # kernel reads off the eventlet hub in the daemons
    raw_links: list[LinkInfo] = attempt("links", lambda: run(r.links), [])
    addresses: dict[int, list[str]] = attempt("addresses", lambda: run(r.addresses), {})
    facts["links"] = [_link(li, addresses.get(li.index, [])) for li in raw_links]
    names = {li.index: li.name for li in raw_links}
    facts["routes"] = attempt("routes", lambda: run(lambda: r.routes(names)), [])
    facts["sysctl"] = {
        IP_FORWARD: attempt(IP_FORWARD, lambda: r.sysctl.get(IP_FORWARD), None),
        BRIDGE_NF_CALL_IPTABLES: (
            attempt(BRIDGE_NF_CALL_IPTABLES, lambda: r.sysctl.get(BRIDGE_NF_CALL_IPTABLES), None)
            if r.sysctl.exists(BRIDGE_NF_CALL_IPTABLES)
            else None
        ),
    }
    facts["modules"] = {
        "br_netfilter": r.sysctl.exists(BRIDGE_NF_CALL_IPTABLES)
        or os.path.isdir(os.path.join(r.sys_module, "br_netfilter"))
    }
    save = _save_command(conf.iptables_backend)

    def saved(table: str) -> str:
        return r.execute([save, "-t", table], log_errors=False)[0]

    facts["iptables"] = {
        table: attempt(f"{save} -t {table}", functools.partial(saved, table), "")
        for table in IPTABLES_TABLES
    }
    facts["ipsets"] = attempt("ipset save", lambda: _ipsets(r.execute), {})
    facts["nft_bridge"] = attempt("nft list table bridge novanet", lambda: _nft(r.execute), None)
    facts["dnsmasq"] = facts["hostsfile"] = facts["leases"] = facts["vifs"] = None
    if binary == NETWORK:
        br = bridge or conf.flat_network_bridge or "br100"
        facts.update(attempt("dnsmasq", lambda: _dhcp(conf, br, r.proc_root), {}))
    else:
        facts["vifs"] = (
            [dict(v) for v in vifs]
            if vifs is not None
            else _kernel_vifs(raw_links, conf.flat_network_bridge)
        )
    facts["drift"] = attempt("drift", drift, []) if drift is not None else []
    facts["errors"] = errors
    return facts


def _link(li: LinkInfo, addresses: list[str]) -> dict[str, Any]:
    return {
        "name": li.name,
        "index": li.index,
        "kind": li.kind or "",
        "master": li.master,
        "up": li.up,
        # IFF_PROMISC as `ip link` shows it (the seed's "eth2 up promisc"); a
        # bridge port's promiscuity that the bridge itself asked for is not it
        "promisc": bool(li.flags & IFF_PROMISC),
        "mac": li.mac or "",
        "addresses": list(addresses),
    }


def _save_command(backend: str) -> str:
    return {"nft": "iptables-nft-save", "legacy": "iptables-legacy-save"}.get(
        backend, "iptables-save"
    )


def _ipsets(execute: Execute) -> dict[str, list[str]]:
    try:
        text = execute(["ipset", "save"], log_errors=False)[0]
    except ProcessExecutionError as exc:
        if exc.returncode is None:  # no ipset program: no set can exist
            return {}
        raise
    return {name: sorted(s.members) for name, s in parse_save(text, EVERY_SET).items()}


def _nft(execute: Execute) -> Any:
    try:
        out = execute(["nft", "-j", "list", "table", *NFT_TABLE], log_errors=False)[0]
    except ProcessExecutionError as exc:
        if exc.returncode is None or "No such file" in (exc.stderr or ""):
            return None  # no nft program, or no such table: nothing to report
        raise
    return json.loads(out)


def _dhcp(conf: cfg.ConfigOpts, bridge: str, proc_root: str) -> dict[str, Any]:
    """dnsmasq (the driver's pid file, checked against /proc), its hostsfile and leases."""
    files = dnsmasq_argv.network_files(conf, bridge)
    process = PidFileProcess(files.pid_file, files.hostsfile, proc_root=proc_root)
    pid = process.pid()
    argv = list(process.cmdline() or ()) if pid is not None else []
    hosts = _lines(files.hostsfile)
    if os.path.isdir(files.hostsdir):  # the large-network fast path: hostsdir too
        for name in sorted(os.listdir(files.hostsdir)):
            hosts = (hosts or []) + (_lines(os.path.join(files.hostsdir, name)) or [])
    lease_file = next((a.split("=", 1)[1] for a in argv if a.startswith("--dhcp-leasefile=")), None)
    return {
        "dnsmasq": {"running": pid is not None, "pid": pid, "argv": argv},
        "hostsfile": hosts,
        # --leasefile-ro (the seed's): dnsmasq keeps its leases in memory and
        # the dhcp-script stores them in the database; there is no file.
        "leases": _lines(lease_file) if lease_file else None,
    }


def _lines(path: str) -> list[str] | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [line for line in handle.read().splitlines() if line.strip()]
    except FileNotFoundError:
        return None


def _kernel_vifs(links: Sequence[LinkInfo], bridge: str | None) -> list[dict[str, Any]]:
    """Without the agent's state: the tap/veth ports of the bridge (uuid unknown)."""
    return [
        {
            "instance_uuid": None,
            "devname": li.name,
            "mac": li.mac or "",
            "address": None,
            "bridge": li.master,
            "netns": None,
        }
        for li in links
        if li.master and li.master == bridge and li.kind in ("tap", "tun", "veth")
    ]


def vif_facts(
    instances: Iterable[Any], netns_of: Callable[[Any], str | None]
) -> list[dict[str, Any]]:
    """The compute agent's VIFs from its own state (InstanceNetwork objects)."""
    return [
        {
            "instance_uuid": inst.uuid,
            "devname": inst.devname,
            "mac": inst.mac,
            "address": inst.address,
            "bridge": inst.bridge,
            "netns": netns_of(inst),
        }
        for inst in instances
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m novanet.explain.facts {network|compute} --flagfile F``: print the facts.

    For tests and labs that read a node's facts without asking its daemon
    (run it inside the node's namespace).
    """
    import argparse

    from novanet.conf import new_conf

    parser = argparse.ArgumentParser(prog="python -m novanet.explain.facts")
    parser.add_argument("role", choices=sorted(ROLES))
    loader.add_config_arguments(parser)
    args = parser.parse_args(argv)
    conf = new_conf()
    try:
        loader.load(conf, args.config_sources or [], prog="novanet-facts")
    except NovanetError as exc:
        print(f"error: {exc}")
        return 2
    print(json.dumps(gather(conf, args.role), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
