"""The nf_tables generation id, shared by the agent's two nf_tables writers.

Every committed nf_tables transaction of a network namespace increments one
generation id, whatever table it touched. The iptables manager (iptables-nft)
trusts what it knows of its tables only while that id moved by exactly its
own commits (novanet/linux/iptables/canary.py); the anti-spoofing table's
element changes are commits too, so without this module each new instance
would make the iptables manager read its tables again (``iptables-save``:
0.6 s at 5,000 instances) before its next change.

:class:`SharedGeneration` therefore hides from :meth:`token` (what the
iptables manager sees) every commit made through :meth:`commit` that was the
only commit in its window: the id before and after it differ by exactly one,
so nothing else can hide behind it. The lock makes hiding atomic for
readers: nobody reads a token between such a commit and its hiding.
:meth:`raw` is the id itself, for the anti-spoofing table, which checks
its own table whenever anything at all was committed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from novanet.linux.iptables.canary import NftGeneration

MASK = 0xFFFFFFFF


@dataclass
class Commit:
    """The generation ids around a commit made inside :meth:`SharedGeneration.commit`."""

    before: int | None = None
    after: int | None = None

    @property
    def alone(self) -> bool:
        """Nobody else committed in the window: ``after`` is exactly our commit."""
        return (
            self.before is not None
            and self.after is not None
            and (self.after - self.before) & MASK == 1
        )


class SharedGeneration(NftGeneration):
    """An NftGeneration whose tokens leave out the commits made through :meth:`commit`."""

    def __init__(self, netns: str | None = None) -> None:
        super().__init__(netns)
        self._hidden = 0
        self._lock = threading.RLock()

    def token(self) -> int:
        """The id minus the commits hidden so far (OSError if the probe fails)."""
        with self._lock:
            return (super().token() - self._hidden) & MASK

    def raw(self) -> int | None:
        """The generation id itself; None when the probe fails."""
        with self._lock:
            try:
                return super().token()
            except OSError:
                return None

    def genid(self, token: int) -> int:
        with self._lock:
            return (token + self._hidden) & MASK

    @contextlib.contextmanager
    def commit(self) -> Iterator[Commit]:
        """Wrap exactly one transaction of ours that touches no iptables table."""
        with self._lock:
            done = Commit(before=self.raw())
            try:
                yield done
            finally:
                done.after = self.raw()
                if done.alone:
                    self._hidden = (self._hidden + 1) & MASK

    def close(self) -> None:
        with self._lock:
            super().close()
