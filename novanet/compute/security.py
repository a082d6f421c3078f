"""The compute agent's security-group state: the members it was told, its ipsets.

The agent's instances carry their rules (:class:`InstanceNetwork.rules`);
the controller tells the addresses of each source group's members along
with them (``setup_instance``, ``update_security``, the resync). The sets
the kernel must hold follow from both (:func:`novanet.compute.secgroups.wanted_sets`).

Order is what keeps every instance filtered: sets are created and filled
before the chains that name them are written (iptables refuses a rule
naming a missing set), and destroyed only after the last chain naming them
is gone (the kernel refuses to destroy a set in use). Callers hold the
agent's lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

from novanet.compute import secgroups
from novanet.linux.ipset import IpsetManager, IpsetRunner, Runner
from novanet.rpc.objects import InstanceNetwork

LOG = logging.getLogger(__name__)


def agent_ipsets(
    prefix: str, runner: Runner | None = None, sleep: Callable[[float], None] = time.sleep
) -> IpsetManager:
    """The agent's IpsetManager: it owns ``<prefix>-compute-group-<gid>``."""
    return IpsetManager(runner or IpsetRunner(), secgroups.set_pattern(prefix), sleep)


class AgentSecurity:
    def __init__(self, ipsets: IpsetManager | None, prefix: str) -> None:
        self.ipsets = ipsets
        self.prefix = prefix
        self.members: dict[int, frozenset[str]] = {}  # gid -> addresses, as last told

    def tell(self, members: Mapping[int, Iterable[str]] | None) -> None:
        for gid, addresses in (members or {}).items():
            self.members[gid] = frozenset(addresses)

    def wanted(self, instances: Iterable[InstanceNetwork]) -> dict[str, frozenset[str]]:
        return secgroups.wanted_sets((i.rules for i in instances), self.members, self.prefix)

    def ensure(self, instances: Iterable[InstanceNetwork]) -> None:
        """Sets for every group the instances' rules name: before their chains."""
        if self.ipsets is None:
            return
        plan = self.ipsets.ensure(self.wanted(instances))
        if plan:
            LOG.info("ipsets: updated %s", ", ".join(plan.changed))

    def prune(self, instances: Iterable[InstanceNetwork]) -> None:
        """Destroy sets no chain names any more: after the chains."""
        if self.ipsets is None:
            return
        wanted = self.wanted(instances)
        # Members of groups no instance here names are not needed any more.
        used = {int(name.rpartition("-")[2]) for name in wanted}
        self.members = {gid: ips for gid, ips in self.members.items() if gid in used}
        try:
            plan = self.ipsets.prune(wanted)
        except Exception as exc:  # noqa: BLE001 - kept until the next check
            LOG.warning("ipsets: cannot remove stale sets yet: %s", exc)
            return
        if plan:
            LOG.info("ipsets: removed %s", ", ".join(plan.changed))

    def check(self, instances: Iterable[InstanceNetwork]) -> list[str]:
        """Repair sets changed by hand (before the iptables check: its rules need them)."""
        if self.ipsets is None:
            return []
        instances = list(instances)
        plan = self.ipsets.check(self.wanted(instances))
        self.prune(instances)
        return list(plan.changed)
