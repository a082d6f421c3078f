"""The lab benchmark's data: boots, phases, results, and the daemons' log events.

See bench/lab_bench.py for what is measured; bench/lab_driver.py does it and
bench/lab_report.py prints it.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import re
import sys
import time
from collections.abc import Sequence

from bench.common import median, percentile
from novanet.lab.guest import GuestLease
from novanet.lab.instances import Instance
from novanet.lab.lab import Lab
from novanet.linux import procfs

C1, C2 = "compute-1", "compute-2"
GOAL_TOTAL = 1.0  # seconds, median create -> lease
SAME_COST = 1.2  # "the 200th costs the same": last K median at most 1.2 x the first K
DHCP_TIMEOUT = 30.0
LEASED_WAIT = 60.0  # seconds after a phase for every `leased` flag (dhcp-script backlog)
CHILDREN = "bench's commands (CLI, nsenter, guest start)"
DNSMASQ = "dnsmasq + its dhcp-script runs"
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) \S+ INFO \S+: (.*)$")
EVENTS = {  # daemon INFO lines that date a step of one instance (or address)
    "plug": re.compile(r"creating veth \S+ \(\S+\) -> (instance-[0-9a-f]+):"),
    "plugged": re.compile(r"plugged (instance-[0-9a-f]+) "),
    "reply": re.compile(r"instance (instance-[0-9a-f]+) \(.*\) on "),
    "leased": re.compile(r"^leased (\S+) to "),  # the dhcp-script's add event, handled
}


@dataclasses.dataclass
class Boot:
    name: str
    host: str
    started: float  # wall clock, to line up with the daemons' log stamps
    create_s: float = math.nan
    lease_s: float = math.nan
    instance: Instance | None = None
    lease: GuestLease | None = None
    error: str | None = None

    @property
    def total_s(self) -> float:
        return self.create_s + self.lease_s


@dataclasses.dataclass
class Phase:
    """Boots of one phase and what was checked after them."""

    via: str  # "CLI" or "RPC"
    boots: list[Boot]
    wall: float
    cpu: dict[str, float]  # CPU seconds used by each part during the phase
    good: int = 0  # guests holding exactly their database address
    problems: list[str] = dataclasses.field(default_factory=list)
    unflagged: int = 0  # addresses still not marked leased after the wait
    leased_wait: float = 0.0
    busy: float = math.nan  # share of a core dnsmasq and its dhcp-script used during the boots

    @property
    def ok(self) -> bool:
        return self.good == len(self.boots) and not self.problems

    @property
    def done(self) -> list[Boot]:
        return [b for b in self.boots if b.error is None]

    def values(self, field: str) -> list[float]:
        return [getattr(b, field) for b in self.done]

    def per_boot(self, part: str) -> float:
        return self.cpu.get(part, math.nan) / max(1, len(self.boots))


def say(text: str) -> None:
    """Progress on stderr (stdout is the markdown section)."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.0f}"


def stats(values: Sequence[float]) -> list[str]:
    return [ms(median(values)), ms(percentile(values, 0.9)), ms(max(values, default=math.nan))]


def proc_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds of a process; with ``children``, also of its children, live or reaped.

    dnsmasq runs its dhcp-script from a helper process it forked at start.
    """
    stats = {p: s for p in (procfs.pids() if children else [pid]) if (s := procfs.stat(p))}
    tree, todo = [], [pid]
    while todo:
        tree.append(current := todo.pop())
        todo += [p for p, stat in stats.items() if children and stat.ppid == current]
    # with children, the times of the reaped ones too (cutime, cstime)
    ticks = sum(
        stats[p].cpu_ticks + (stats[p].children_ticks if children else 0) for p in tree if p in stats
    )
    return ticks / procfs.clock_ticks()


@dataclasses.dataclass
class Probe:
    leases: int  # addresses marked leased before the create
    cpu: float  # seconds of CPU dnsmasq and its dhcp-script used for it
    flagged: float  # seconds from its guest's lease to the `leased` flag


@dataclasses.dataclass
class Profile:
    """Medians of a few CLI creates under ``-X importtime`` and RPC creates, in seconds."""

    bare: float  # entering the node + Python start-up without site
    wall: float  # the CLI create under -X importtime
    imports: float  # the sum of every module's own import time
    server: float  # create_instance over RPC from an open connection
    packages: list[tuple[str, float]]  # own import time per top-level package, biggest first


@dataclasses.dataclass
class Results:
    prefix: int
    workers: int
    phases: dict[str, Phase]  # first-cli first-rpc burst-cli burst-rpc last-cli last-rpc
    had: int  # instances on compute-1 before the last phases
    events: dict[tuple[str, str], float]
    probes: tuple[Probe, Probe]  # one isolated create early and one at the end
    profile: Profile | None = None


def log_events(lab: Lab) -> dict[tuple[str, str], float]:
    """(event, instance name or address) -> wall-clock time, from the daemons' INFO lines."""
    found: dict[tuple[str, str], float] = {}
    for node in ("controller-1", C1, C2):
        for path in lab.log_files(node):
            if os.path.basename(path) not in ("network.log", "compute.log"):
                continue
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if not (m := LOG_LINE.match(line)):
                        continue
                    for event, pattern in EVENTS.items():
                        if ev := pattern.search(m.group(2)):
                            stamp = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
                            found.setdefault((event, ev.group(1)), stamp.timestamp())
    return found


def flag_lag(events: dict[tuple[str, str], float], boots: Sequence[Boot]) -> list[float]:
    """Per boot: from the guest's lease to the dhcp-script's `leased` event being handled."""
    lags = []
    for b in boots:
        if b.instance and (t := events.get(("leased", str(b.instance.address)))) is not None:
            # The bench sees the lease file up to 50 ms late: the flag can seem earlier.
            lags.append(max(0.0, t - (b.started + b.total_s)))
    return lags


def timeline(
    events: dict[tuple[str, str], float], boots: Sequence[Boot]
) -> list[tuple[str, list[float]]]:
    """Each CLI boot cut into steps by the daemons' log stamps (millisecond resolution)."""
    steps: list[tuple[str, list[float]]] = [
        ("CLI start -> agent starts the plug (CLI start-up, RPC, allocation, dnsmasq reload)", []),
        ("plug on the compute host (veth, namespace, chain)", []),
        ("plugged -> novanet-network logs the reply", []),
        ("reply logged -> CLI exits", []),
        ("CLI exit -> lease in the guest (udhcpc started, DISCOVER to ACK)", []),
    ]
    for b in boots:
        marks = (
            [events.get((e, b.instance.name)) for e in ("plug", "plugged", "reply")]
            if b.instance
            else []
        )
        points = [b.started, *(m for m in marks if m is not None), b.started + b.create_s]
        if len(points) != 5:
            continue
        for (_, values), start, end in zip(steps, points, points[1:], strict=False):
            values.append(end - start)
        steps[4][1].append(b.lease_s)
    return steps
