"""The novanet programs in a lab: novanet-manage on the controller, the daemons in the nodes.

``Novanet(lab).start()`` does what the seed's operator did after installing:
``db sync``, ``network create`` (the seed's network), then novanet-network
(and novanet-metadata when it is installed) on controller-1 and
novanet-compute on every compute node, and waits until ``novanet-manage
service list`` shows every one up. The daemons run through the lab's
launcher: their logs are ``<node dir>/logs/<name>.log``.

Every wait polls its condition against a deadline; when a daemon dies
while we wait, the error says so at once with the end of its log.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from typing import Any

from novanet import exception
from novanet.lab import broker, relay
from novanet.lab.lab import Lab
from novanet.lab.topology import FLOATING_POOL_ARGS
from novanet.wait import wait_until

NETWORK = "network"
COMPUTE = "compute"
METADATA = "metadata"
METADATA_PORT = 8775

# The seed's network, created as its operator did (nova-manage network create).
SEED_NETWORK_ARGS = (
    "network",
    "create",
    "--label",
    "novanetwork",
    "--fixed_range_v4",
    "10.0.0.0/24",
    "--num_networks",
    "1",
    "--network_size",
    "256",
    "--bridge",
    "br100",
    "--bridge_interface",
    "eth2",
)


class ManageError(exception.NovanetError):
    """novanet-manage failed in the lab; carries its ProcessExecutionError."""

    def __init__(self, message: str, error: exception.ProcessExecutionError) -> None:
        super().__init__(message)
        self.error = error
        self.exit_code = error.returncode or 1


@dataclasses.dataclass(frozen=True)
class Daemon:
    """A novanet daemon of the lab: where it runs and what it is."""

    node: str
    name: str  # the launcher's process name (its log is <name>.log)
    program: str  # novanet-network ...
    binary: str | None  # its row in `service list` (None: it reports no heartbeat)
    queue: str | None  # the RPC queue it consumes once it serves (None: no RPC server)


def bindir() -> str:
    """Where the running Python's console scripts are (the venv's bin/)."""
    return sysconfig.get_path("scripts") or os.path.dirname(os.path.abspath(sys.executable))


def tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except FileNotFoundError:
        return "(no log)\n"


class Novanet:
    """novanet in one lab.

    :param lab: the lab (built with ``up``)
    :param programs: directory of the novanet programs (default: next to
        the running Python, i.e. the virtualenv novanet-lab runs from)
    """

    def __init__(self, lab: Lab, programs: str | None = None) -> None:
        self.lab = lab
        self.programs = programs or bindir()
        self.controller = lab.topology.controller.name
        self.computes = [n.name for n in lab.topology.computes]
        self.last_services: list[dict[str, Any]] = []  # the latest `service list` rows

    # -- programs ------------------------------------------------------------------

    def program(self, name: str) -> str:
        path = os.path.join(self.programs, name)
        if os.access(path, os.X_OK):
            return path
        found = shutil.which(name)
        if not found:
            raise exception.NotFound(f"program {name} not found in {self.programs} or $PATH")
        return found

    def metadata_installed(self) -> bool:
        """True when novanet-metadata exists (it is optional for the lab)."""
        try:
            spec = importlib.util.find_spec("novanet.cmd.metadata")
        except ImportError:
            return False
        return spec is not None and os.access(
            os.path.join(self.programs, "novanet-metadata"), os.X_OK
        )

    def conf(self, node: str) -> str:
        return self.lab.paths.nova_conf(node)

    def manage(self, *args: str, check: bool = True, timeout: float = 90) -> str:
        """Run novanet-manage on the controller with its nova.conf; its stdout."""
        argv = [self.program("novanet-manage"), "--flagfile", self.conf(self.controller), *args]
        try:
            out, _ = self.lab.execute(
                self.controller, argv, check=check, timeout=timeout, log_errors=False
            )
        except exception.ProcessExecutionError as exc:
            # novanet-manage's own one-line error, not the nsenter command around it.
            lines = (exc.stderr or exc.stdout or exc.description).strip().splitlines()
            reason = lines[-1] if lines else f"exit code {exc.returncode}"
            raise ManageError(f"novanet-manage {' '.join(args)}: {reason}", exc) from None
        return out

    def manage_json(self, *args: str, timeout: float = 90) -> list[dict[str, Any]]:
        data = json.loads(self.manage(*args, "--format", "json", timeout=timeout) or "[]")
        return data if isinstance(data, list) else [data]

    # -- the daemons -----------------------------------------------------------------

    def daemons(self, metadata: bool | None = None) -> list[Daemon]:
        """The lab's daemons in start order (metadata: None = if it is installed)."""
        ctl = self.controller
        wanted = [Daemon(ctl, NETWORK, "novanet-network", "novanet-network", "network")]
        if metadata or (metadata is None and self.metadata_installed()):
            wanted.append(Daemon(ctl, METADATA, "novanet-metadata", "novanet-metadata", None))
        wanted += [
            Daemon(c, COMPUTE, "novanet-compute", "novanet-compute", f"compute.{c}")
            for c in self.computes
        ]
        return wanted

    def running(self) -> list[Daemon]:
        """The daemons that were started in this lab and still run."""
        return [d for d in self.daemons(metadata=True) if self.lab.process_running(d.node, d.name)]

    def metadata_running(self) -> bool:
        return self.lab.process_running(self.controller, METADATA)

    def setup_database(self) -> None:
        """``db sync`` and the seed's ``network create``, as the seed's operator did."""
        self.manage("db", "sync")
        self.manage(*SEED_NETWORK_ARGS)
        # beyond the seed: rows only, no kernel state until an address is associated
        self.manage(*FLOATING_POOL_ARGS)

    def start_daemon(self, daemon: Daemon) -> None:
        argv = [self.program(daemon.program), "--flagfile", self.conf(daemon.node)]
        self.lab.start_process(daemon.node, daemon.name, argv)

    def start(
        self,
        *,
        metadata: bool | None = None,
        timeout: float = 60,
        progress: Callable[[str], None] | None = None,
    ) -> list[Daemon]:
        """Database, network, daemons; returns them once all are up.

        The controller's daemons start first and the compute agents only once
        novanet-network consumes its RPC queue: an agent's first call made
        before that is dropped by the broker and waits out rpc_connect_timeout.
        """
        say = progress or (lambda _text: None)
        self.setup_database()
        say("database synced and the seed's network created (novanet-manage)")
        daemons = self.daemons(metadata)
        first = [d for d in daemons if d.node == self.controller]
        for group in (first, [d for d in daemons if d not in first]):
            for daemon in group:
                self.start_daemon(daemon)
            self.wait_ready(group, timeout=timeout, heartbeats=False)
            say("serving: " + ", ".join(f"{d.program} on {d.node}" for d in group))
        self.wait_ready(daemons, timeout=timeout)
        return daemons

    def restart(self, daemon: Daemon, timeout: float = 60) -> float:
        """Stop and start one daemon, wait until it serves again; the seconds it took."""
        started = time.monotonic()
        self.lab.stop_process(daemon.node, daemon.name)
        self.start_daemon(daemon)
        self.wait_ready([daemon], timeout=timeout, heartbeats=False)
        return time.monotonic() - started

    def _check_alive(self, daemons: Sequence[Daemon]) -> None:
        for daemon in daemons:
            if not self.lab.process_running(daemon.node, daemon.name):
                record = self.lab.process(daemon.node, daemon.name)
                log = record.log if record else ""
                raise exception.NovanetError(
                    f"{daemon.program} on {daemon.node} exited; end of {log}:\n{tail(log)}"
                )

    def services(self) -> list[dict[str, Any]]:
        self.last_services = self.manage_json("service", "list")
        return self.last_services

    def services_up(self, daemons: Sequence[Daemon]) -> bool:
        rows = {(r["host"], r["binary"]): r for r in self.services()}
        return all(
            rows.get((d.node, d.binary), {}).get("state") == "up"
            for d in daemons
            if d.binary is not None
        )

    def metadata_listening(self) -> bool:
        record = self.lab.process(self.controller, METADATA)
        ip = self.lab.topology.controller.management_ip
        return record is not None and relay.listening(record.pid, ip, METADATA_PORT)

    def serving(self, daemon: Daemon) -> bool:
        """Its RPC queue has a consumer (metadata: it listens on its port)."""
        if daemon.name == METADATA:
            return self.metadata_listening()
        if daemon.queue is None:
            return True
        return broker.queue_consumers(self.lab.vhost, daemon.queue, self.lab.broker_port) > 0

    def wait_ready(
        self,
        daemons: Sequence[Daemon] | None = None,
        timeout: float = 60,
        heartbeats: bool = True,
    ) -> None:
        """Until every daemon serves (and, with ``heartbeats``, `service list` shows it up)."""
        daemons = list(daemons) if daemons is not None else self.running()

        def ready() -> bool:
            self._check_alive(daemons)
            if not all(self.serving(d) for d in daemons):
                return False
            return not heartbeats or self.services_up(daemons)

        try:
            wait_until(ready, "novanet daemons up", timeout, interval=0.05)
        except TimeoutError:
            logs = "".join(
                f"--- {d.program} on {d.node}:\n{tail(self.log_of(d), 8)}" for d in daemons
            )
            raise exception.NovanetError(
                f"the daemons were not all up after {timeout:.0f} s:\n{logs}"
            ) from None

    def log_of(self, daemon: Daemon) -> str:
        record = self.lab.process(daemon.node, daemon.name)
        return (
            record.log
            if record
            else os.path.join(self.lab.paths.logs_dir(daemon.node), f"{daemon.name}.log")
        )

    def find(self, node: str, name: str) -> Daemon:
        for daemon in self.daemons(metadata=True):
            if daemon.node == node and daemon.name == name:
                return daemon
        raise exception.NotFound(f"no daemon {name} on {node}")
