"""The iptables manager: an in-memory model of our chains, applied by changed chain.

See manager.py for the life cycle, plan.py for what reaches iptables-restore
and canary.py for the cheap drift probe.
"""

from novanet.linux.iptables.manager import IptablesManager
from novanet.linux.iptables.model import IptablesTable
from novanet.linux.iptables.names import InvalidChainName, Naming
from novanet.linux.iptables.normalise import InvalidRule, normalise_rule
from novanet.linux.iptables.runner import IptablesRestoreError, IptablesRunner, Runner

__all__ = [
    "InvalidChainName",
    "InvalidRule",
    "IptablesManager",
    "IptablesRestoreError",
    "IptablesRunner",
    "IptablesTable",
    "Naming",
    "Runner",
    "normalise_rule",
]
