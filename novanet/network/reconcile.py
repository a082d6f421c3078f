"""Which instances a crash left half-made, and what to do with each (pure).

novanet-network writes an instance's row (``building``), allocates its
address, rewrites the hostsfile and asks the compute host to plug it, then
marks it ``active``; a delete marks it ``deleting``, unplugs, releases and
removes the row. A daemon killed in between (kill -9, OOM, power) leaves
the row in ``building`` or ``deleting`` for ever, with an address, a
hostsfile line and perhaps a plugged device, while the caller was told the
request failed (its reply never came).

The daemon therefore reconciles at start and periodically. An unfinished
create is **rolled back** everywhere: its caller saw an error, so an
instance appearing later would be a duplicate of the one it retries. An
unfinished delete is **finished**: its caller asked for the instance to go.

A row is only touched if no request of this daemon is working on it:

* it was last written before this daemon started (nothing here can be
  working on it), or it is older than ``stale_after`` seconds (longer than
  any create or delete may take: the compute host's timeout plus margin);
* and the instance's lock is free (the manager checks that when it
  applies the plan, without waiting: a request in progress holds it).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable

from novanet.db.instances import InstanceRow

ROLL_BACK = "roll back"
FINISH_DELETE = "finish delete"


@dataclasses.dataclass(frozen=True)
class Repair:
    instance: InstanceRow
    action: str  # ROLL_BACK or FINISH_DELETE

    def __str__(self) -> str:
        inst = self.instance
        return f"{self.action} {inst.state} instance {inst.id} ({inst.display_name}, {inst.uuid})"


def plan(
    rows: Iterable[InstanceRow],
    *,
    now: datetime.datetime,
    started_at: datetime.datetime,
    stale_after: float,
) -> list[Repair]:
    """The repairs due among ``rows`` (naive UTC timestamps, as stored)."""
    cutoff = now - datetime.timedelta(seconds=stale_after)
    repairs = []
    for inst in rows:
        if inst.state not in ("building", "deleting"):
            continue
        if inst.updated_at >= started_at and inst.updated_at >= cutoff:
            continue  # possibly a request of this daemon, still running
        action = ROLL_BACK if inst.state == "building" else FINISH_DELETE
        repairs.append(Repair(inst, action))
    return repairs
