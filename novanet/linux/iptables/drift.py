"""The periodic drift check every daemon runs on its own chains.

novanet-network, novanet-compute and novanet-metadata all repair their
chains every ``iptables_check_interval`` seconds the same way: one call of
the manager's ``check_and_repair`` (a change probe well under a millisecond
when nothing changed) and, when something was rewritten, one warning line
saying what, so an operator sees that somebody edits the firewall.
"""

from __future__ import annotations

import logging
from typing import Protocol

LOG = logging.getLogger(__name__)


class Repairable(Protocol):
    def check_and_repair(self, force: bool = False) -> list[str]: ...


def repair(iptables: Repairable, who: str) -> list[str]:
    """Repair what someone else changed in ``who``'s chains; returns what was repaired."""
    repaired = iptables.check_and_repair()
    if repaired:
        LOG.warning(
            "%s: iptables rules were changed by someone else; repaired: %s",
            who,
            "; ".join(repaired),
        )
    return repaired
