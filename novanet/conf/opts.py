"""Entry point for oslo-config-generator (``oslo.config.opts = novanet``)."""

from __future__ import annotations

import itertools

from oslo_config import cfg

from novanet.conf import _AREAS


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    by_group: dict[str, list[cfg.Opt]] = {}
    for group, opts in itertools.chain.from_iterable(a.list_opts() for a in _AREAS):
        by_group.setdefault(group, []).extend(opts)
    return sorted(by_group.items(), key=lambda item: (item[0] != "DEFAULT", item[0]))
