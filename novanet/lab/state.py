"""What a lab made, on disk, so that ``down`` works after a crash.

Every path of a lab derives from the base directory and the lab id
(:class:`LabPaths`); the namespace names derive from the lab id
(:mod:`novanet.lab.topology`). The state file is written before anything
else is created, and each started process leaves a pid file (written by the
spawn helper before the program runs) plus a JSON record, so ``down`` finds
everything even if ``up`` or a test died half-way.

A process is identified by (pid, start time): the start time (field 22 of
/proc/PID/stat, in clock ticks since boot) changes when a pid is reused, so
``down`` never signals a stranger that inherited a recorded pid.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator

from novanet.lab.broker import vhost_for

DEFAULT_BASE = "/run/novanet-lab"
BASE_ENV = "NOVANET_LAB_DIR"
STATE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class LabPaths:
    """Filesystem layout of one lab."""

    base: str
    lab_id: str

    @property
    def lab_dir(self) -> str:
        return os.path.join(self.base, self.lab_id)

    @property
    def state_file(self) -> str:
        return os.path.join(self.lab_dir, "state.json")

    @property
    def ns_dir(self) -> str:
        """Holds the node mount-namespace handles; a private bind mount of itself."""
        return os.path.join(self.lab_dir, "ns")

    def mnt_file(self, node: str) -> str:
        return os.path.join(self.ns_dir, f"{node}.mnt")

    def uts_file(self, node: str) -> str:
        """Handle of the node's UTS namespace (its own hostname)."""
        return os.path.join(self.ns_dir, f"{node}.uts")

    @property
    def amqp_socket(self) -> str:
        return os.path.join(self.lab_dir, "amqp.sock")

    @property
    def guest_script(self) -> str:
        return os.path.join(self.lab_dir, "udhcpc.sh")

    def node_dir(self, node: str) -> str:
        return os.path.join(self.lab_dir, node)

    def node_netns_dir(self, node: str) -> str:
        """The directory a node sees as its /run/netns."""
        return os.path.join(self.node_dir(node), "netns")

    def nova_conf(self, node: str) -> str:
        return os.path.join(self.node_dir(node), "nova.conf")

    def guests_dir(self, node: str) -> str:
        return os.path.join(self.node_dir(node), "guests")

    def logs_dir(self, node: str | None) -> str:
        """Log directory of a node, or of the lab's own processes (node None)."""
        return os.path.join(self.node_dir(node) if node else self.lab_dir, "logs")

    def pids_dir(self, node: str | None) -> str:
        return os.path.join(self.node_dir(node) if node else self.lab_dir, "pids")


@dataclasses.dataclass
class LabRecord:
    """The lab as a whole: written first by ``up``."""

    lab_id: str
    name: str
    base: str
    topology: str = "seed"
    created_at: float = dataclasses.field(default_factory=time.time)
    creator_pid: int = dataclasses.field(default_factory=os.getpid)
    ready: bool = False
    version: int = STATE_VERSION
    # The RabbitMQ vhost, recorded before it is created (None: the lab made none).
    vhost: str | None = None
    broker_port: int = 5672  # the machine's broker, on 127.0.0.1


@dataclasses.dataclass
class ProcessRecord:
    """A long-running program the lab started (in a node, or on the machine)."""

    name: str
    node: str | None
    argv: list[str]
    env: dict[str, str]
    pid: int
    starttime: int
    log: str
    started_at: float = dataclasses.field(default_factory=time.time)


def write_json(path: str, data: object) -> None:
    """Write atomically (write a temporary file, then rename it over ``path``)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def write_text(path: str, text: str, mode: int = 0o644) -> None:
    """Write a text file atomically, with ``mode`` from its creation on."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with open(fd, "w", encoding="utf-8") as handle:
        os.fchmod(fd, mode)  # exactly mode, whatever the umask
        handle.write(text)
    os.replace(tmp, path)


def save_lab(paths: LabPaths, record: LabRecord) -> None:
    write_json(paths.state_file, dataclasses.asdict(record))


def load_lab(paths: LabPaths) -> LabRecord | None:
    try:
        with open(paths.state_file, encoding="utf-8") as handle:
            data = json.load(handle)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        # A crash between writes cannot leave a torn file (rename is atomic),
        # but an operator's edit can: fall back to what the id alone gives
        # (and assume the vhost was made, so that down deletes it).
        return LabRecord(
            lab_id=paths.lab_id, name=paths.lab_id, base=paths.base, vhost=vhost_for(paths.lab_id)
        )
    fields = {f.name for f in dataclasses.fields(LabRecord)}
    return LabRecord(**{k: v for k, v in data.items() if k in fields})


def list_lab_ids(base: str) -> list[str]:
    """Ids of the labs that have a directory under ``base``."""
    try:
        entries = sorted(os.listdir(base))
    except FileNotFoundError:
        return []
    return [e for e in entries if os.path.isdir(os.path.join(base, e))]


def pidfile(paths: LabPaths, node: str | None, name: str) -> str:
    return os.path.join(paths.pids_dir(node), f"{name}.pid")


def process_file(paths: LabPaths, node: str | None, name: str) -> str:
    return os.path.join(paths.pids_dir(node), f"{name}.json")


def save_process(paths: LabPaths, record: ProcessRecord) -> None:
    write_json(process_file(paths, record.node, record.name), dataclasses.asdict(record))


def load_process(paths: LabPaths, node: str | None, name: str) -> ProcessRecord | None:
    try:
        with open(process_file(paths, node, name), encoding="utf-8") as handle:
            data = json.load(handle)
    except (FileNotFoundError, ValueError):
        return None
    return ProcessRecord(**data)


def read_pidfile(path: str) -> tuple[int, int] | None:
    """(pid, starttime) from a pid file written by the spawn helper."""
    try:
        with open(path, encoding="ascii") as handle:
            parts = handle.read().split()
        return int(parts[0]), int(parts[1])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def iter_pidfiles(paths: LabPaths, nodes: list[str]) -> Iterator[tuple[str | None, str, str]]:
    """(node, process name, pid file) for every pid file of the lab."""
    for node in [None, *nodes]:
        directory = paths.pids_dir(node)
        try:
            entries = sorted(os.listdir(directory))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.endswith(".pid"):
                yield node, entry[: -len(".pid")], os.path.join(directory, entry)
