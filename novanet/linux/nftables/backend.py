"""What the table manager needs from the kernel, and the real implementation.

:class:`NftKernel` reads and writes set elements over nfnetlink (nfnl.py),
writes a whole table with ``nft -f -`` through the subprocess chokepoint,
and counts generations with the probe shared with the iptables manager
(generation.py). ``novanet.linux.fakes.nftables.FakeNftKernel`` is the
stateful double the unit tests use.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from novanet.exception import NotFound, ProcessExecutionError
from novanet.linux import processutils
from novanet.linux.nftables.generation import Commit, SharedGeneration
from novanet.linux.nftables.nfnl import NftRefused, NftSocket
from novanet.linux.nftables.spec import TableSpec

Execute = Callable[..., tuple[str, str]]


class Kernel(Protocol):
    def generation(self) -> int | None:
        """The nf_tables generation id now (None: the probe failed)."""

    def commit(self) -> AbstractContextManager[Commit]:
        """Wrap one transaction of ours (see SharedGeneration.commit)."""

    def structure(self, spec: TableSpec) -> bytes | None:
        """The table's structure fingerprint; None if the table does not exist."""

    def elements(self, spec: TableSpec) -> dict[str, set[bytes]]:
        """Every set's element keys (OSError when the table or a set is missing)."""

    def write_elements(
        self,
        spec: TableSpec,
        deletes: Mapping[str, Sequence[bytes]],
        adds: Mapping[str, Sequence[bytes]],
    ) -> None:
        """One transaction; NftRefused (an OSError) and nothing changed if refused."""

    def run_script(self, text: str) -> None:
        """``nft -f -`` of ``text`` (one transaction); ProcessExecutionError if refused."""

    def delete_table(self, spec: TableSpec) -> bool:
        """Delete the table; False if it did not exist."""

    def close(self) -> None:
        """Release sockets."""


def require_nft(which: Callable[[str], str | None] = shutil.which) -> None:
    """Refuse to start filtering without the nft program (NotFound: one line for the operator)."""
    if which("nft") is None:
        raise NotFound(
            "vif_antispoof is on but the nft program is missing: apt-get install nftables "
            "(or set vif_antispoof = False on this host)"
        )


class NftKernel:
    """The kernel of one network namespace (``netns`` None: the daemon's own)."""

    def __init__(
        self,
        netns: str | None = None,
        generation: SharedGeneration | None = None,
        execute: Execute = processutils.execute,
        timeout: float = 60.0,
    ) -> None:
        self._netns = netns
        self._generation = generation if generation is not None else SharedGeneration(netns)
        self._socket = NftSocket(netns)
        self._execute = execute
        self._timeout = timeout

    def generation(self) -> int | None:
        return self._generation.raw()

    @contextlib.contextmanager
    def commit(self) -> Iterator[Commit]:
        with self._generation.commit() as done:
            yield done

    def structure(self, spec: TableSpec) -> bytes | None:
        return self._socket.structure(spec.family, spec.name)

    def elements(self, spec: TableSpec) -> dict[str, set[bytes]]:
        return {s.name: self._socket.elements(spec.family, spec.name, s.name) for s in spec.sets}

    def write_elements(
        self,
        spec: TableSpec,
        deletes: Mapping[str, Sequence[bytes]],
        adds: Mapping[str, Sequence[bytes]],
    ) -> None:
        self._socket.write_elements(spec.family, spec.name, deletes, adds)

    def run_script(self, text: str) -> None:
        argv = ["nft", "-f", "-"]
        if self._netns is not None:
            # nsenter (util-linux) enters only the network namespace: all nft needs.
            argv = ["nsenter", f"--net=/run/netns/{self._netns}", *argv]
        self._execute(argv, input=text, timeout=self._timeout)

    def delete_table(self, spec: TableSpec) -> bool:
        return self._socket.delete_table(spec.family, spec.name)

    def close(self) -> None:
        self._socket.close()


__all__ = ["Kernel", "NftKernel", "NftRefused", "ProcessExecutionError", "require_nft"]
