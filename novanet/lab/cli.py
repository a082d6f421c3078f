"""``novanet-lab``: the seed's datacenter in namespaces, with novanet running in it.

    novanet-lab demo [--keep]                  the seed article, replayed and checked
    novanet-lab up [--bare] [--set FLAG=VALUE]  build the lab and start novanet in it
    novanet-lab start                          start novanet in a lab built with --bare
    novanet-lab boot NAME --host HOST [--mac MAC] [--guest netns|qemu]
    novanet-lab delete NAME
    novanet-lab ping SRC DST                   SRC/DST: node, instance or address
    novanet-lab exec NODE|INSTANCE [CMD...]    (no CMD: a shell; a VM needs a CMD)
    novanet-lab restart NODE DAEMON            network, metadata or compute
    novanet-lab status [--format json]
    novanet-lab logs [NODE] [-n LINES]
    novanet-lab down [--all]

Every command takes ``--name LAB`` (default $NOVANET_LAB_NAME, else
``lab``). NODE is one of controller-1, compute-1, compute-2, gateway, or
``fabric`` (the namespace holding the segment bridges br-mgmt and br-vm,
handy for tcpdump).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from novanet import __version__, exception
from novanet.lab import commands, instances, mounts
from novanet.lab import lab as lab_mod

DEFAULT_NAME_ENV = "NOVANET_LAB_NAME"


def _default_name() -> str:
    return os.environ.get(DEFAULT_NAME_ENV) or "lab"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="novanet-lab",
        description="The seed's FlatDHCP datacenter in network namespaces, running novanet.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Start with: novanet-lab demo",
    )
    parser.add_argument("--version", action="version", version=f"novanet-lab {__version__}")
    parser.add_argument(
        "--base-dir",
        help="directory of all labs' files (default $NOVANET_LAB_DIR or /run/novanet-lab)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def named(cmd: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(cmd, help=help_text, description=help_text)
        p.add_argument("--name", default=_default_name(), help="lab name (default %(default)s)")
        return p

    def flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--set",
            action="append",
            metavar="FLAG=VALUE",
            help="add a flag to every node's nova.conf (e.g. allow_same_net_traffic=false)",
        )

    def metadata(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--no-metadata",
            dest="metadata",
            action="store_const",
            const=False,
            default=None,
            help="do not start novanet-metadata (default: start it when installed)",
        )

    demo = named("demo", "the seed article, replayed in a new lab and checked; then removed")
    demo.add_argument("--keep", action="store_true", help="keep the lab to explore it")
    demo.add_argument("-v", "--verbose", action="store_true", help="show matching listings too")
    flags(demo)

    up = named("up", "build a lab and start novanet in it (db sync, network create, daemons)")
    up.add_argument("--broker-port", type=int, default=5672, help="RabbitMQ port on 127.0.0.1")
    up.add_argument("--bare", action="store_true", help="only the namespaces and wires")
    flags(up)
    metadata(up)

    start = named("start", "start novanet in a lab built with up --bare")
    metadata(start)

    boot = named("boot", "create an instance and start its guest (netns + udhcpc, or a VM)")
    boot.add_argument("instance", metavar="NAME")
    boot.add_argument("--host", required=True, help="compute-1 or compute-2")
    boot.add_argument("--mac", help="the instance's MAC (default: fa:16:3e:xx:xx:xx)")
    boot.add_argument(
        "--guest",
        choices=instances.GUESTS,
        default="netns",
        help="netns: udhcpc in a namespace on a veth VIF (fast, the default); "
        "qemu: a VM (TCG) on a tap VIF, its kernel and initramfs built from Debian "
        "packages on first use and cached",
    )
    boot.add_argument(
        "--timeout", type=float, help="seconds to wait for the lease (netns 15, qemu 180)"
    )

    delete = named("delete", "delete an instance (its VM or DHCP client first)")
    delete.add_argument("instance", metavar="NAME")

    ping = named("ping", "ping from a node or instance to an address, node or instance")
    ping.add_argument("source", metavar="SRC")
    ping.add_argument("destination", metavar="DST")
    ping.add_argument("-c", "--count", type=int, default=3)
    ping.add_argument(
        "--busybox",
        action="store_true",
        help="use busybox ping (it prints 'sendto: Operation not permitted'; iputils is silent)",
    )

    restart = named("restart", "restart a novanet daemon and wait until it serves again")
    restart.add_argument("node")
    restart.add_argument("daemon", choices=("network", "metadata", "compute"))

    down = named("down", "remove everything a lab made (idempotent, works after a crash)")
    down.add_argument("--all", action="store_true", help="remove every lab on this machine")

    run = named("exec", "run a command in a node (its netns and mount view) or an instance")
    run.add_argument("node", metavar="NODE|INSTANCE")
    run.add_argument("cmd", nargs=argparse.REMAINDER)

    status = named("status", "show nodes, addresses, daemons, instances")
    status.add_argument("--format", choices=("text", "json"), default="text")

    logs = named("logs", "print the lab's log files (the lab's own and every node's)")
    logs.add_argument("node", nargs="?")
    logs.add_argument("-n", "--lines", type=int, default=50, help="last N lines (0: all)")
    return parser


def _down(args: argparse.Namespace) -> int:
    commands.require_root()
    names = lab_mod.all_lab_names(args.base_dir) if args.all else [args.name]
    for name in names:
        removed = lab_mod.Lab(name, args.base_dir).down()
        print(f"lab {name}: removed {len(removed)} items" if removed else f"lab {name}: nothing")
    return 0


def _exec(lab: lab_mod.Lab, args: argparse.Namespace) -> int:
    commands.require_root()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    nodes = [lab_mod.FABRIC, *(n.name for n in lab.topology.nodes)]
    if args.node not in nodes:
        return commands.exec_in_instance(lab, args.node, cmd)
    if args.node != lab_mod.FABRIC and not mounts.is_mountpoint(lab.paths.mnt_file(args.node)):
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
            print(f"  instance namespaces: {' '.join(node['instances'])}")
        for proc in node["processes"]:
            _print_process(proc)
    for proc in data["lab_processes"]:
        _print_process(proc, where="lab ")
    commands.print_novanet_status(data["novanet"])


def _print_process(proc: dict[str, Any], where: str = "") -> None:
    alive = "running" if proc["running"] else "NOT RUNNING"
    print(f"  {where}process {proc['name']} pid {proc['pid']} {alive}: {' '.join(proc['argv'])}")


def _status(lab: lab_mod.Lab, args: argparse.Namespace) -> int:
    data = lab.status()
    data["novanet"] = commands.novanet_status(lab)
    if args.format == "json":
        print(json.dumps(data, indent=2, default=str))
    else:
        _print_status(data)
    return 0


def _logs(lab: lab_mod.Lab, args: argparse.Namespace) -> int:
    for path in lab.log_files(args.node):
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = collections.deque(handle, maxlen=args.lines or None)
        print(f"==> {path} <==")
        sys.stdout.writelines(lines)
    return 0


Handler = Callable[[lab_mod.Lab, argparse.Namespace], int]
# Commands that need an existing lab are checked for it first.
EXISTING: dict[str, Handler] = {
    "status": _status,
    "logs": _logs,
}
ANY: dict[str, Handler] = {
    "demo": commands.run_demo,
    "up": commands.up,
    "start": commands.start,
    "boot": commands.boot,
    "delete": commands.delete,
    "ping": commands.ping,
    "restart": commands.restart,
    "exec": _exec,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "down":
            return _down(args)
        lab = lab_mod.Lab(args.name, args.base_dir)
        if args.command in ANY:
            return ANY[args.command](lab, args)
        if not lab.exists():
            raise exception.NotFound(f"no lab {lab.name} (under {lab.base})")
        return EXISTING[args.command](lab, args)
    except KeyboardInterrupt:
        return 130
    except exception.NovanetError as exc:
        print(f"novanet-lab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        raise  # the reader went away (| head): cmd/pipes.py exits quietly
    except Exception as exc:  # noqa: BLE001 - one line for the operator, not a traceback
        print(f"novanet-lab: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
