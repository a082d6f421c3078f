"""``novanet-lab``: build the seed's datacenter in namespaces and use it.

    novanet-lab up [--name LAB]
    novanet-lab exec [--name LAB] NODE [CMD...]     (no CMD: a shell)
    novanet-lab status [--name LAB] [--format json]
    novanet-lab logs [--name LAB] [NODE] [-n LINES]
    novanet-lab down [--name LAB | --all]

The default lab name is $NOVANET_LAB_NAME, else ``lab``. NODE is one of
controller-1, compute-1, compute-2, gateway, or ``fabric`` (the namespace
holding the segment bridges br-mgmt and br-vm, handy for tcpdump).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from novanet import exception
from novanet.lab import lab as lab_mod
from novanet.lab import mounts

DEFAULT_NAME_ENV = "NOVANET_LAB_NAME"


def _default_name() -> str:
    return os.environ.get(DEFAULT_NAME_ENV) or "lab"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="novanet-lab",
        description="The seed's FlatDHCP datacenter in network namespaces.",
    )
    parser.add_argument(
        "--base-dir",
        help="directory of all labs' files (default $NOVANET_LAB_DIR or /run/novanet-lab)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def named(cmd: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(cmd, help=help_text, description=help_text)
        p.add_argument("--name", default=_default_name(), help="lab name (default %(default)s)")
        return p

    up = named("up", "build a lab: namespaces, segments, node mount views, RabbitMQ relay")
    up.add_argument("--broker-port", type=int, default=5672, help="RabbitMQ port on 127.0.0.1")

    down = named("down", "remove everything a lab made (idempotent, works after a crash)")
    down.add_argument("--all", action="store_true", help="remove every lab on this machine")

    run = named("exec", "run a command in a node (its netns and mount view)")
    run.add_argument("node")
    run.add_argument("cmd", nargs=argparse.REMAINDER)

    status = named("status", "show nodes, addresses, instance namespaces, processes")
    status.add_argument("--format", choices=("text", "json"), default="text")

    logs = named("logs", "print the lab's log files (the lab's own and every node's)")
    logs.add_argument("node", nargs="?")
    logs.add_argument("-n", "--lines", type=int, default=50, help="last N lines (0: all)")
    return parser


def _require_root() -> None:
    if os.geteuid() != 0:
        raise exception.NovanetError("must run as root (network and mount namespaces)")


def _up(lab: lab_mod.Lab, args: argparse.Namespace) -> int:
    _require_root()
    started = time.monotonic()
    lab.up(broker_port=args.broker_port)
    print(f"lab {lab.name} is up in {time.monotonic() - started:.2f} s ({lab.paths.lab_dir})")
    for node in lab.topology.nodes:
        print(f"  {node.name:<13} {lab.topology.netns(node.name):<28} {node.management_ip}")
    ctl = lab.topology.controller
    print(f"  RabbitMQ: {ctl.management_ip}:5672 (relay to 127.0.0.1:{args.broker_port})")
    try:
        socket.create_connection(("127.0.0.1", args.broker_port), timeout=1).close()
    except OSError as exc:
        print(f"novanet-lab: warning: no broker on 127.0.0.1:{args.broker_port}: {exc}")
    return 0


def _down(args: argparse.Namespace) -> int:
    _require_root()
    names = lab_mod.all_lab_names(args.base_dir) if args.all else [args.name]
    for name in names:
        removed = lab_mod.Lab(name, args.base_dir).down()
        print(f"lab {name}: removed {len(removed)} items" if removed else f"lab {name}: nothing")
    return 0


def _exec(lab: lab_mod.Lab, args: argparse.Namespace) -> int:
    _require_root()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if args.node != lab_mod.FABRIC and not mounts.is_mountpoint(lab.paths.mnt_file(args.node)):
        lab.prefix(args.node)  # raises NotFound for an unknown node
        raise exception.NovanetError(f"lab {lab.name} is not up (no node {args.node})")
    argv = lab.command(args.node, cmd or [os.environ.get("SHELL", "/bin/sh")])
    os.environ["NOVANET_LAB_NODE"] = args.node
    sys.stdout.flush()
    # Replace ourselves: the command keeps the terminal, its exit code is ours.
    os.execvp(argv[0], argv)
    return 127  # not reached


def _print_status(data: dict[str, Any]) -> None:
    print(f"lab {data['lab']} ({data['dir']}): {'ready' if data['ready'] else 'NOT READY'}")
    for node in data["nodes"]:
        state = "" if node["present"] else "  (namespace missing)"
        print(f"{node['name']} ({node['role']}) netns {node['netns']}{state}")
        for iface in node["interfaces"]:
            flags = " ".join(
                f for f, on in (("UP", iface["up"]), ("PROMISC", iface["promisc"])) if on
            )
            master = f" master {iface['master']}" if iface["master"] else ""
            addrs = " ".join(iface["ipv4"])
            print(f"  {iface['name']:<10} {iface['mac']}  {flags:<10}{master} {addrs}".rstrip())
        if node["instances"]:
            print(f"  instances: {' '.join(node['instances'])}")
        for proc in node["processes"]:
            _print_process(proc)
    for proc in data["lab_processes"]:
        _print_process(proc, where="lab ")


def _print_process(proc: dict[str, Any], where: str = "") -> None:
    alive = "running" if proc["running"] else "NOT RUNNING"
    print(f"  {where}process {proc['name']} pid {proc['pid']} {alive}: {' '.join(proc['argv'])}")


def _logs(lab: lab_mod.Lab, args: argparse.Namespace) -> int:
    for path in lab.log_files(args.node):
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = collections.deque(handle, maxlen=args.lines or None)
        print(f"==> {path} <==")
        sys.stdout.writelines(lines)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "down":
            return _down(args)
        lab = lab_mod.Lab(args.name, args.base_dir)
        if args.command == "up":
            return _up(lab, args)
        if args.command == "exec":
            return _exec(lab, args)
        if not lab.exists():
            raise exception.NotFound(f"no lab {lab.name} (under {lab.base})")
        if args.command == "status":
            data = lab.status()
            if args.format == "json":
                print(json.dumps(data, indent=2))
            else:
                _print_status(data)
            return 0
        return _logs(lab, args)
    except exception.NovanetError as exc:
        print(f"novanet-lab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - one line for the operator, not a traceback
        print(f"novanet-lab: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
