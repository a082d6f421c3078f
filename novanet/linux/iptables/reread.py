"""Reading the kernel once more, to learn what a restore did not say (the applier's helpers).

Both take the manager's views and return the views to adopt, unchanged when
somebody else wrote meanwhile (what was read may not be what the views
describe; reread_spellings then returns None); the learning is pure (view.py).

- spellings: after a sync that wrote rules never seen in a dump, how
  iptables prints them (learn_spellings);
- handles: at start, the nf_tables handles of our big chains, which a sync
  restore too big for the kernel's report of new rules does not give
  (adopt_handles).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from novanet.linux.iptables.parse import parse_save
from novanet.linux.iptables.plan import SMALL_CHAIN
from novanet.linux.iptables.runner import Runner
from novanet.linux.iptables.view import Desired, KernelView, adopt_handles, learn_spellings

LOG = logging.getLogger(__name__)


def reread_spellings(
    runner: Runner, views: Mapping[str, KernelView], tables: Mapping[str, Desired]
) -> dict[str, KernelView] | None:
    """Adopt the kernel's text for rules our normaliser spelled differently.

    Without this, a rule iptables prints in a way normalise.py does not
    predict would look changed on every check and be rewritten forever.
    Only done when nobody else wrote since our restore, so the difference
    can only be iptables' own spelling.
    """
    token = runner.token()
    if token is None or any(views[name].token != token for name in tables):
        return dict(views)
    dumps = {name: parse_save(runner.save(name), name) for name in tables}
    if runner.token() != token:
        return None
    new = dict(views)
    for name, desired in tables.items():
        new[name], learned = learn_spellings(desired, views[name], dumps[name].chains)
        for line in learned:
            LOG.warning("%s; using its spelling", line)
    return new


def read_handles(runner: Runner, views: Mapping[str, KernelView]) -> dict[str, KernelView]:
    """The handles of our big chains the views lack (read once at start).

    So that removing the first instance costs what removing any other
    does (at 5,000 instances, reading nova-compute-local takes 40-100 ms).
    """
    token = runner.token()
    if token is None or not runner.handles():
        return dict(views)
    new = dict(views)
    for name, view in views.items():
        if view.token != token:
            continue
        for chain, rules in view.chains.items():
            if len(rules) > SMALL_CHAIN and chain not in view.handles:
                dumped = runner.rule_handles(name, chain)
                if dumped is not None:
                    view = adopt_handles(view, chain, dumped)
        new[name] = view
    # Somebody wrote meanwhile: what we read may not be what the views say.
    return new if runner.token() == token else dict(views)
