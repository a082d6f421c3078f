"""SIGHUP: read the configuration files again and apply what can change at run time.

The files are the ones given at start. The new configuration is loaded into
a fresh ConfigOpts and compared option by option with the running one; an
invalid file changes nothing (one error line, the daemon keeps running with
what it had). Options that can change at run time:

- ``debug`` (the log level);
- the intervals of the periodic tasks (``report_interval``,
  ``iptables_check_interval``, ``dnsmasq_check_interval``, ...): from each
  task's next wait on.

Every other changed option is logged as needing a restart, and keeps its
old value until then (a half-applied configuration is worse than either).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

from oslo_config import cfg

from novanet import conf as novanet_conf
from novanet.conf import loader, opts

LOG = logging.getLogger(__name__)

Applier = Callable[[str, Any], None]


@dataclasses.dataclass(frozen=True)
class Change:
    group: str
    name: str
    old: Any
    new: Any
    secret: bool

    def __str__(self) -> str:
        where = self.name if self.group == "DEFAULT" else f"[{self.group}] {self.name}"
        if self.secret:
            return f"{where} (secret)"
        return f"{where} {self.old!r} -> {self.new!r}"


def _value(conf: cfg.ConfigOpts, group: str, name: str) -> Any:
    return getattr(conf, name) if group == "DEFAULT" else getattr(getattr(conf, group), name)


def diff(running: cfg.ConfigOpts, fresh: cfg.ConfigOpts) -> list[Change]:
    """novanet's options whose value differs between two configurations."""
    changes = []
    for group, options in opts.list_opts():
        for opt in options:
            if opt.dest == "transport_url":
                continue  # documentation entry; the option is oslo.messaging's
            old, new = _value(running, group, opt.dest), _value(fresh, group, opt.dest)
            if old != new:
                changes.append(Change(group, opt.dest, old, new, bool(opt.secret)))
    return changes


class Reloader:
    """Applies a SIGHUP to a running daemon.

    :param appliers: option name -> function(name, new value) for the options
        that may change at run time
    """

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        sources: Sequence[loader.Source],
        program: str,
        appliers: dict[str, Applier],
        fresh_conf: Callable[[], cfg.ConfigOpts] = novanet_conf.new_conf,
    ) -> None:
        self.conf = conf
        self.sources = list(sources)
        self.program = program
        self.appliers = appliers
        self._fresh_conf = fresh_conf

    def reload(self) -> tuple[list[Change], list[Change]]:
        """(applied, needing a restart); raises loader.ConfigError on a bad file."""
        fresh = self._fresh_conf()
        loader.load(fresh, self.sources, prog=self.program, default_files=())
        applied, restart = [], []
        for change in diff(self.conf, fresh):
            apply = self.appliers.get(change.name) if change.group == "DEFAULT" else None
            if apply is None:
                restart.append(change)
                continue
            self.conf.set_override(change.name, change.new)
            apply(change.name, change.new)
            applied.append(change)
        return applied, restart

    def on_sighup(self) -> None:
        """Reload and log the outcome in one line (or two); never raises."""
        files = ", ".join(s.path for s in self.sources) or "no configuration file"
        try:
            applied, restart = self.reload()
        except loader.ConfigError as exc:
            LOG.error("SIGHUP: configuration not reloaded, keeping the running one: %s", exc)
            return
        except Exception:  # noqa: BLE001 - a reload must never stop the daemon
            LOG.exception("SIGHUP: configuration not reloaded, keeping the running one")
            return
        if not applied and not restart:
            LOG.info("SIGHUP: re-read %s: nothing changed", files)
            return
        LOG.info(
            "SIGHUP: re-read %s: applied: %s",
            files,
            ", ".join(str(c) for c in applied) or "nothing",
        )
        if restart:
            LOG.warning(
                "SIGHUP: changed but only taken into account after a restart: %s",
                ", ".join(str(c) for c in restart),
            )
