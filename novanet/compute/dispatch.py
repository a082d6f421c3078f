"""Where ``nova-compute-local`` sends an instance's packets: one jump each, in buckets on big hosts.

On the seed's host ``nova-compute-local`` holds one rule per instance::

    -A nova-compute-local -d 10.0.0.2/32 -j nova-compute-inst-9

That chain grows with the host. nf_tables rebuilds the whole rule blob of a
chain in every commit that changes it and finds a rule to delete by walking
the chain, so removing one instance of 5,000 cost O(5,000) in the kernel
(BENCHMARKS.md, iptables), and every packet to an instance walked the chain
too. Above ``split_above`` instances the jumps move into bucket chains, one
per /26 of addresses (64: both levels stay short, about sqrt(5,000)), and
``nova-compute-local`` jumps to the buckets, as Calico felix splits its
dispatch chains::

    -A nova-compute-local -d 10.0.1.0/26 -j nova-compute-l-0a000100
    -A nova-compute-l-0a000100 -d 10.0.1.2/32 -j nova-compute-inst-7

The bucket's name is its first address in hex (0a000100 = 10.0.1.0). Below
``split_above // 2`` instances the jumps move back into
``nova-compute-local``: the seed's listing on hosts of the seed's size. In
between the layout stays as it is, so a host hovering at the threshold is not
rewritten back and forth. Matches are exact addresses and disjoint /26s:
the order of the rules decides nothing. ``split_above`` 0 never splits.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Protocol

from novanet.linux.iptables.declare import TableLike

BUCKET_PREFIX = 26  # 64 addresses a bucket
_BUCKET_MASK = (0xFFFFFFFF << (32 - BUCKET_PREFIX)) & 0xFFFFFFFF
SPLIT_ABOVE = 256
LOCAL = "local"


class Table(TableLike, Protocol):
    """The parts of IptablesTable used here (unwrapped names, ``$chain`` expanded)."""

    def remove_chain(self, name: str, wrap: bool = True) -> None: ...

    def add_rule(self, chain: str, rule: str, wrap: bool = True, top: bool = False) -> None: ...

    def remove_rule(self, chain: str, rule: str, wrap: bool = True, top: bool = False) -> bool: ...


def jump(address: str, chain: str) -> str:
    """The rule sending packets for ``address`` to the instance's ``chain`` (unwrapped)."""
    return f"-d {address}/32 -j ${chain}"


def bucket_of(address: str) -> tuple[str, str]:
    """(bucket chain, its /26) of an instance address: ``("l-0a000100", "10.0.1.0/26")``."""
    bucket = _bucket(_value(address) & _BUCKET_MASK)
    return bucket, _net(bucket)


def layout(jumps: dict[str, str], split: bool) -> dict[str, list[str]]:
    """The chains (unwrapped) that ``jumps`` (instance chain -> address) make, in order.

    Flat: in the order of arrival, as the seed appends them. Split: buckets
    and their jumps sorted by address, so the kernel's state depends on the
    instances alone, not on their history (a restarted agent writes nothing).
    """
    if not split:
        return {LOCAL: [jump(address, chain) for chain, address in jumps.items()]}
    buckets: dict[str, dict[str, str]] = {}
    for chain, address in jumps.items():
        buckets.setdefault(bucket_of(address)[0], {})[chain] = address
    chains = {LOCAL: _bucket_jumps(buckets)}
    for bucket in sorted(buckets):
        chains[bucket] = _bucket_rules(buckets[bucket])
    return chains


def _bucket_jumps(buckets: Iterable[str]) -> list[str]:
    # Names are fixed-width hex: sorting them sorts the addresses.
    return [f"-d {_net(bucket)} -j ${bucket}" for bucket in sorted(buckets)]


def _bucket_rules(members: dict[str, str]) -> list[str]:
    ordered = sorted(members.items(), key=lambda item: _value(item[1]))
    return [jump(address, chain) for chain, address in ordered]


def _value(address: str) -> int:
    return int(ipaddress.IPv4Address(address))


def _net(bucket: str) -> str:
    return f"{ipaddress.IPv4Address(int(bucket[2:], 16))}/{BUCKET_PREFIX}"


class LocalJumps:
    """The jumps to instance chains in one filter table, flat or in buckets.

    The compute agent calls :meth:`set` and :meth:`remove` (under its lock);
    the table's manager applies the result. A bucket chain exists exactly
    while it holds a jump.
    """

    def __init__(self, table: Table, split_above: int = SPLIT_ABOVE) -> None:
        self.table = table
        self.split_above = split_above
        self.split = False
        # instance chain -> (address, as an int), in order of arrival
        self._address: dict[str, tuple[str, int]] = {}
        # first address of a bucket -> its instance chains -> address, sorted by address
        self._buckets: dict[int, dict[str, int]] = {}

    def __len__(self) -> int:
        return len(self._address)

    def set(self, chain: str, address: str) -> None:
        """Send packets for ``address`` to ``chain`` (moves the jump if the address changed)."""
        value = _value(address)  # ValueError before anything changes
        old = self._address.get(chain)
        if old is not None and old[0] == address:
            return
        if old is not None:
            self._unplace(chain, *old)
            del self._address[chain]
        self._address[chain] = (address, value)
        if not self.split and self.split_above and len(self._address) > self.split_above:
            self._relayout(split=True)
        else:
            self._place(chain, address, value)

    def remove(self, chain: str) -> None:
        """Forget the jump to ``chain``, if there is one."""
        old = self._address.pop(chain, None)
        if old is None:
            return
        self._unplace(chain, *old)
        if self.split and len(self._address) < self.split_above // 2:
            self._relayout(split=False)

    def _place(self, chain: str, address: str, value: int) -> None:
        if not self.split:
            self.table.add_rule(LOCAL, jump(address, chain))
            return
        first = value & _BUCKET_MASK
        members = self._buckets.get(first)
        if members is None:
            members = self._buckets[first] = {}
            self.table.add_chain(_bucket(first))
            self.table.set_rules(LOCAL, _bucket_jumps(map(_bucket, self._buckets)))
        last = next(reversed(members.values()), -1)
        members[chain] = value
        if value > last:  # the common case: addresses come in order
            self.table.add_rule(_bucket(first), jump(address, chain))
            return
        self._buckets[first] = dict(sorted(members.items(), key=lambda item: item[1]))
        rules = [jump(self._address[member][0], member) for member in self._buckets[first]]
        self.table.set_rules(_bucket(first), rules)

    def _unplace(self, chain: str, address: str, value: int) -> None:
        if not self.split:
            self.table.remove_rule(LOCAL, jump(address, chain))
            return
        first = value & _BUCKET_MASK
        members = self._buckets[first]
        del members[chain]
        if members:
            self.table.remove_rule(_bucket(first), jump(address, chain))
        else:  # its jump in local goes with it
            del self._buckets[first]
            self.table.remove_chain(_bucket(first))

    def _relayout(self, split: bool) -> None:
        chains = layout({chain: address for chain, (address, _) in self._address.items()}, split)
        for first in self._buckets:
            if _bucket(first) not in chains:
                self.table.remove_chain(_bucket(first))
        self._buckets = {}
        for name, rules in chains.items():
            if name != LOCAL:
                self.table.add_chain(name)
            self.table.set_rules(name, rules)
        if split:
            for chain, (_, value) in sorted(self._address.items(), key=lambda item: item[1][1]):
                self._buckets.setdefault(value & _BUCKET_MASK, {})[chain] = value
        self.split = split


def _bucket(first: int) -> str:
    return f"l-{first:08x}"
