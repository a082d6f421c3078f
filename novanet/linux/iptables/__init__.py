"""The iptables manager: desired-state tables, a kernel view per table, one applier.

- model.py: :class:`IptablesTable`, the desired content of our chains (nova's API);
- view.py: :class:`KernelView`, what the manager knows the kernel holds, and
  the pure functions that learn spellings and rule handles into it;
- plan.py / sync.py: pure planners ``(desired, view[, dump]) -> (plan, view)``;
- manager.py: :class:`IptablesManager`, the applier (lock, probe, plan, run,
  swap), with reread.py (reading the kernel again to learn spellings, handles);
- runner.py, canary.py, nftnl.py: iptables-save/-restore, the change probe,
  nf_tables rule handles over netlink.
"""

from novanet.linux.iptables.manager import IptablesManager
from novanet.linux.iptables.model import IptablesTable
from novanet.linux.iptables.names import InvalidChainName, Naming
from novanet.linux.iptables.normalise import InvalidRule, normalise_rule
from novanet.linux.iptables.runner import IptablesRestoreError, IptablesRunner, Runner
from novanet.linux.iptables.view import KernelView

__all__ = [
    "InvalidChainName",
    "InvalidRule",
    "IptablesManager",
    "IptablesRestoreError",
    "IptablesRunner",
    "IptablesTable",
    "KernelView",
    "Naming",
    "Runner",
    "normalise_rule",
]
