"""The novanet-lab commands that run novanet in a lab: up, start, boot, delete, ping, restart, demo.

Each takes the lab and the parsed arguments and returns the exit code; the
parser and the lab-only commands (exec, status, logs, down) are in
:mod:`novanet.lab.cli`.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import Any

from novanet import exception
from novanet.lab import demo, relay
from novanet.lab import lab as lab_mod
from novanet.lab.cloud import Cloud
from novanet.lab.daemons import ManageError
from novanet.lab.instances import Booted, guest_prefix
from novanet.lab.vm import qemu


def require_root() -> None:
    if os.geteuid() != 0:
        raise exception.NovanetError("must run as root (network and mount namespaces)")


def conf_extra(pairs: list[str] | None) -> dict[str, str]:
    """``--set NAME=VALUE`` options as nova.conf flags."""
    extra = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        name = name.strip().lstrip("-")
        if not sep or not name:
            raise exception.UsageError(f"--set {pair!r}: use NAME=VALUE (a nova.conf flag)")
        extra[name] = value
    return extra


def _say(text: str) -> None:
    print(f"  {text}", flush=True)


def _require_up(lab: lab_mod.Lab) -> None:
    if not lab.exists():
        raise exception.NotFound(f"no lab {lab.name} (under {lab.base}); run: novanet-lab up")


def up(lab: lab_mod.Lab, args: argparse.Namespace) -> int:
    require_root()
    started = time.monotonic()
    try:
        socket.create_connection(("127.0.0.1", args.broker_port), timeout=1).close()
    except OSError as exc:
        raise exception.NovanetError(
            f"no RabbitMQ on 127.0.0.1:{args.broker_port} ({exc}): the lab relays to it"
        ) from None
    lab.up(broker_port=args.broker_port, conf_extra=conf_extra(args.set))
    print(f"lab {lab.name} is up in {time.monotonic() - started:.1f} s ({lab.paths.lab_dir})")
    for node in lab.topology.nodes:
        print(f"  {node.name:<13} {lab.topology.netns(node.name):<28} {node.management_ip}")
    ctl = lab.topology.controller
    print(
        f"  RabbitMQ: {ctl.management_ip}:{relay.AMQP_PORT} -> 127.0.0.1:{args.broker_port}, "
        f"vhost {lab.vhost}"
    )
    if args.bare:
        return 0
    return _start(lab, args.metadata, started)


def start(lab: lab_mod.Lab, args: argparse.Namespace) -> int:
    require_root()
    _require_up(lab)
    return _start(lab, args.metadata, time.monotonic())


def _start(lab: lab_mod.Lab, metadata: bool | None, started: float) -> int:
    cloud = Cloud.of(lab)
    daemons = cloud.novanet.start(metadata=metadata, progress=_say)
    print(f"novanet is up in lab {lab.name} ({time.monotonic() - started:.1f} s):")
    for daemon in daemons:
        print(f"  {daemon.program:<17} on {daemon.node:<13} log {cloud.novanet.log_of(daemon)}")
    if not any(d.name == "metadata" for d in daemons):
        print("  (novanet-metadata not installed: not started)")
    print(f"next: novanet-lab boot{_named(lab)} cirros --host compute-1")
    return 0


def _named(lab: lab_mod.Lab) -> str:
    return "" if lab.name == demo.DEFAULT_NAME else f" --name {lab.name}"


def print_booted(booted: Booted) -> None:
    inst = booted.instance
    fields = [
        ("id", inst.id),
        ("name", inst.name),
        ("display_name", inst.display_name),
        ("host", inst.host),
        ("address", inst.address),
        ("mac", inst.mac),
        ("device", inst.device),
        (
            "lease",
            f"{booted.lease.address} router {booted.lease.router} dns {' '.join(booted.lease.dns)}",
        ),
        ("seconds", f"{booted.seconds:.1f}"),
    ]
    if booted.vm is not None:
        fields += [
            ("guest", f"qemu pid {booted.vm.pid()}"),
            ("console log", booted.vm.console_log),
        ]
    for key, value in fields:
        print(f"{key:<13} {value}")
    print("console:")
    for line in booted.lease.console.splitlines():
        if line.strip() and not line.startswith("--- novanet-lab"):
            print(f"  {line}")


def boot(lab: lab_mod.Lab, args: argparse.Namespace) -> int:
    if args.timeout is not None and not args.timeout > 0:
        raise exception.UsageError(f"--timeout {args.timeout}: give seconds above 0")
    require_root()
    _require_up(lab)
    cloud = Cloud.of(lab)
    booted = cloud.instances.boot(
        args.instance,
        args.host,
        args.mac,
        dhcp_timeout=args.timeout,
        guest_kind=args.guest,
        progress=_say,
    )
    print_booted(booted)
    if booted.vm is not None and cloud.novanet.metadata_running():
        # The guest tries 30 times, one second apart, then says it gave up.
        report = booted.vm.wait("metadata", timeout=120)
        print(f"{'instance-id':<13} {report.instance_id or report.metadata_error}")
    if booted.vm is not None:
        print(f"run commands in it: novanet-lab exec{_named(lab)} {args.instance} -- CMD...")
    return 0


def exec_in_instance(lab: lab_mod.Lab, ref: str, cmd: list[str]) -> int:
    """``exec`` in a guest: a netns guest like a node, a VM through its command channel."""
    _require_up(lab)
    cloud = Cloud.of(lab)
    nodes = ", ".join(n.name for n in lab.topology.nodes)
    if not lab.process_running(cloud.novanet.controller, "network"):
        raise exception.NotFound(f"{ref}: no such node ({nodes}); novanet is not started")
    try:
        instance = cloud.instances.find(ref)
    except ManageError as exc:
        raise exception.NotFound(f"{ref}: no such node ({nodes}) or instance ({exc})") from None
    vm = cloud.instances.vm(instance)
    if vm is None:
        argv = lab.command(instance.host, [*guest_prefix(instance), *(cmd or ["/bin/sh"])])
        sys.stdout.flush()
        os.execvp(argv[0], argv)
    if not cmd:
        raise exception.UsageError(f"{ref} is a VM: give a command (it has no interactive shell)")
    result = vm.run(qemu.shell_join(cmd))
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.exit_code


def delete(lab: lab_mod.Lab, args: argparse.Namespace) -> int:
    require_root()
    _require_up(lab)
    sys.stdout.write(Cloud.of(lab).instances.delete(args.instance))
    return 0


def ping(lab: lab_mod.Lab, args: argparse.Namespace) -> int:
    require_root()
    _require_up(lab)
    tool = "busybox" if args.busybox else "auto"
    result = Cloud.of(lab).instances.ping(
        args.source, args.destination, count=args.count, tool=tool
    )
    sys.stdout.write(result.output)
    print(f"(ping {args.source} -> {args.destination}: exit code {result.exit_code})")
    return result.exit_code


def restart(lab: lab_mod.Lab, args: argparse.Namespace) -> int:
    require_root()
    _require_up(lab)
    novanet = Cloud.of(lab).novanet
    daemon = novanet.find(args.node, args.daemon)
    seconds = novanet.restart(daemon)
    print(f"{daemon.program} on {daemon.node} restarted and serving again in {seconds:.1f} s")
    return 0


def run_demo(lab: lab_mod.Lab, args: argparse.Namespace) -> int:
    require_root()
    result = demo.run(lab, keep=args.keep, conf_extra=conf_extra(args.set), verbose=args.verbose)
    if result.error == "interrupted":
        return 130
    return 0 if result.ok else 1


def novanet_status(lab: lab_mod.Lab) -> dict[str, Any]:
    """Daemons (process and heartbeat) and instances, for `status`."""
    cloud = Cloud.of(lab)
    novanet = cloud.novanet
    daemons = []
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    instances: list[dict[str, Any]] = []
    if lab.process_running(novanet.controller, "network"):
        try:
            rows = {(r["host"], r["binary"]): r for r in novanet.services()}
            instances = [vars(i) for i in cloud.instances.all()]
        except exception.NovanetError as exc:
            instances = [{"error": str(exc).splitlines()[0]}]
    for daemon in novanet.daemons(metadata=True):
        record = lab.process(daemon.node, daemon.name)
        if record is None:
            continue
        row = rows.get((daemon.node, daemon.binary or ""), {})
        daemons.append(
            {
                "node": daemon.node,
                "program": daemon.program,
                "pid": record.pid,
                "running": lab.process_running(daemon.node, daemon.name),
                "service": row.get("state"),
                "updated_at": row.get("updated_at"),
                "log": record.log,
            }
        )
    for inst in instances:
        if "host" in inst:
            inst["guest_dhcp"] = lab.process_running(inst["host"], f"udhcpc-{inst['name']}")
            vm = qemu.find(lab, inst["host"], inst["name"])
            inst["guest_vm"] = vm.pid() if vm and vm.running() else None
    return {"daemons": daemons, "instances": instances}


def print_novanet_status(data: dict[str, Any]) -> None:
    if not data["daemons"]:
        print("novanet: not started (novanet-lab start)")
        return
    print("daemons:")
    for d in data["daemons"]:
        alive = "running" if d["running"] else "NOT RUNNING"
        service = f", service {d['service']}" if d["service"] else ""
        print(f"  {d['program']:<17} {d['node']:<13} pid {d['pid']:<7} {alive}{service}")
    print("instances:" if data["instances"] else "instances: none")
    for inst in data["instances"]:
        if "error" in inst:
            print(f"  ({inst['error']})")
            continue
        dhcp = "guest DHCP client running" if inst.get("guest_dhcp") else "no guest DHCP client"
        if inst.get("guest_vm"):
            dhcp = f"QEMU guest pid {inst['guest_vm']}"
        print(
            f"  {inst['id']:<3} {inst['name']} {inst['display_name']:<12} {inst['host']:<10} "
            f"{inst['address']} {inst['mac']} {inst['device']} ({dhcp})"
        )
