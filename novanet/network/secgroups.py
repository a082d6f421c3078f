"""Security groups on the controller: who must hear of a change, and telling them.

The database is changed by novanet-manage (one transaction, checked first:
:mod:`novanet.db.secgroups`); the controller then works out exactly which
compute hosts are concerned and tells each of them over RPC
(``update_security``, compute API 1.1), waiting for the answer so the
operator's command returns once the rules are in force:

* the rules of a group changed: the hosts of its members (their chains);
* the membership of a group changed (an instance joined, left, was created
  or deleted): the hosts whose instances' rules name the group as source
  (their ipset of it), and the host of the instance itself (its chain).

Each host gets the rules of its concerned instances and the members of
every source group those rules, or the changed groups it uses, name: a
membership change is one ipset update there, whatever the number of
instances referencing the group. Changes are sent one at a time (a lock),
so a host never applies an older view after a newer one; a host that does
not answer is named in the result and converges at its next resync. A host
whose agent is down (no heartbeat within service_down_time) is not called
at all: waiting for its timeout would hold up every change and every
create of an instance in the groups it uses; it resyncs when it is back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from oslo_config import cfg

from novanet.compute.secgroups import source_groups
from novanet.db import secgroup_view as view
from novanet.db import secgroups as sgdb
from novanet.db import services
from novanet.db.api import Database
from novanet.exception import ServiceUnavailable
from novanet.rpc.errors import first_line

LOG = logging.getLogger(__name__)

# How long one compute host gets to apply a change before it is reported
# as not told (it converges at its next resync, every 60 s).
UPDATE_TIMEOUT = 10


class SecurityCompute(Protocol):
    def update_security(
        self,
        host: str,
        rules: Mapping[str, Iterable[str]],
        members: Mapping[int, Iterable[str]],
        timeout: float | None = None,
    ) -> dict[str, Any]: ...


class SecurityGroups:
    """A mixin of the NetworkManager: ``db`` and ``compute`` are the manager's."""

    conf: cfg.ConfigOpts
    db: Database
    compute: Any

    _secgroup_lock = threading.Lock()

    def security_groups_changed(
        self,
        rules_changed: Iterable[int] = (),
        members_changed: Iterable[int] = (),
        instances: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Tell the hosts concerned; returns ``{"hosts": [...], "notes": [...]}``.

        :param rules_changed: groups whose rules changed
        :param members_changed: groups an instance joined or left
        :param instances: instances whose own groups changed (their chains)
        """
        rules_changed, members_changed = set(rules_changed), set(members_changed)
        with self._secgroup_lock:
            chains = view.member_hosts(self.db, rules_changed)
            for host, uuids in view.instance_hosts(self.db, instances).items():
                chains.setdefault(host, set()).update(uuids)
            sets = view.referencing_hosts(self.db, members_changed)
            told, notes = [], []
            hosts = set(chains) | set(sets)
            down = hosts - self._computes_up()
            for host in sorted(down):
                # No call that would wait its timeout (and hold up creates):
                # the agent resyncs everything when it comes back.
                notes.append(f"compute host {host} is down: it applies the change when it is back")
            for host in sorted(hosts - down):
                rules = view.rules_for(self.db, chains.get(host, ()))
                groups = set(sets.get(host, ()))
                for texts in rules.values():
                    groups |= source_groups(texts)
                members = view.member_addresses(self.db, groups)
                try:
                    self._security_compute().update_security(
                        host, rules, members, timeout=UPDATE_TIMEOUT
                    )
                except Exception as exc:  # noqa: BLE001 - reported; the host resyncs
                    reason = first_line(str(exc)) or type(exc).__name__
                    notes.append(
                        f"compute host {host} was not told ({reason}): "
                        "it applies the change at its next resync"
                    )
                    LOG.warning("security groups: %s", notes[-1])
                    continue
                told.append(host)
        if told:
            LOG.info("security groups: told %s", ", ".join(told))
        return {"hosts": told, "notes": notes}

    def _computes_up(self) -> set[str]:
        return {
            svc.host
            for svc in services.list_services(self.db)
            if svc.binary == "novanet-compute" and svc.is_up(self.conf.service_down_time)
        }

    def host_members(self, host: str) -> dict[int, list[str]]:
        """Members of every source group the rules of ``host``'s instances name (resync)."""
        groups: set[int] = set()
        for texts in view.rules_on_host(self.db, host).values():
            groups |= source_groups(texts)
        return view.member_addresses(self.db, groups)

    def security_group_ids(self, names: Iterable[str]) -> list[int]:
        return sgdb.group_ids(self.db, list(names))

    def _security_compute(self) -> SecurityCompute:
        if self.compute is None:
            raise ServiceUnavailable("no RPC transport to reach compute hosts")
        return self.compute  # type: ignore[no-any-return]

    # -- the instance lifecycle's hooks (network/lifecycle.py) ----------------------

    def members_for(self, rules: Iterable[str]) -> dict[int, list[str]]:
        """Members of the source groups ``rules`` name (sent with setup_instance)."""
        return view.member_addresses(self.db, source_groups(rules))

    def secgroups_created(self, uuid: str, group_ids: Iterable[int], sent: Iterable[str]) -> None:
        """A new instance is plugged: its groups' sets gain it on the hosts that use them.

        Its own chain is sent again only if its rules changed after it was
        described (a rule added meanwhile).
        """
        again = [uuid] if view.rules_for(self.db, [uuid])[uuid] != tuple(sent) else []
        self._quietly(members_changed=group_ids, instances=again)

    def secgroups_deleted(self, group_ids: Iterable[int]) -> None:
        """A deleted instance's address leaves its groups' sets."""
        self._quietly(members_changed=group_ids)

    def _quietly(self, **changes: Any) -> None:
        try:
            self.security_groups_changed(**changes)
        except Exception as exc:  # noqa: BLE001 - the instance is done; hosts resync
            LOG.warning("security groups: hosts not told (%s): they resync", exc)
