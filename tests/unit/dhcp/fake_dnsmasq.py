"""A model of what dnsmasq 2.90 serves, driven by the fake process table.

It follows the behaviour tried on the real dnsmasq (see novanet/dhcp/hostsdir.py):
start and SIGHUP drop every config and read the hostsfile, then each file of
the hostsdir; a new hostsdir file is read when it appears (inotify: here,
lazily, on the next query); configs are prepended (newest wins for a MAC); a
line whose address another config holds is refused; deleted files change
nothing until SIGHUP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from novanet.linux.fakes.process import FakeProc, FakeProcessTable


@dataclass
class _Config:
    mac: str
    address: str | None  # None: an "ignore" line
    name: str | None


@dataclass
class _State:
    hostsfile: str
    hostsdir: str | None
    configs: list[_Config] = field(default_factory=list)  # newest first
    seen: set[str] = field(default_factory=set)
    full_reads: int = 0
    file_reads: int = 0
    rejected: list[str] = field(default_factory=list)


def _arg(argv: tuple[str, ...], name: str) -> str | None:
    for arg in argv:
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


class FakeDnsmasq:
    def __init__(self, table: FakeProcessTable) -> None:
        self.table = table
        self.states: dict[int, _State] = {}
        table.listeners.append(self._on_event)

    def _on_event(self, proc: FakeProc, event: str) -> None:
        if event == "start":
            hostsfile = _arg(proc.argv, "--dhcp-hostsfile")
            assert hostsfile, proc.argv
            self.states[proc.pid] = _State(hostsfile, _arg(proc.argv, "--dhcp-hostsdir"))
            self._full_read(self.states[proc.pid])
        elif event == "hup":
            self._inotify(self.states[proc.pid])  # queued events come first
            self._full_read(self.states[proc.pid])

    def _full_read(self, state: _State) -> None:
        state.configs = []
        state.seen = set()
        state.full_reads += 1
        self._read(state, state.hostsfile)
        if state.hostsdir and os.path.isdir(state.hostsdir):
            for name in sorted(os.listdir(state.hostsdir)):
                if not name.startswith("."):
                    state.seen.add(name)
                    self._read(state, os.path.join(state.hostsdir, name))

    def _inotify(self, state: _State) -> None:
        if not state.hostsdir or not os.path.isdir(state.hostsdir):
            return
        for name in sorted(os.listdir(state.hostsdir)):
            if name.startswith(".") or name in state.seen:
                continue
            state.seen.add(name)
            state.file_reads += 1
            self._read(state, os.path.join(state.hostsdir, name))

    def _read(self, state: _State, path: str) -> None:
        try:
            with open(path) as handle:
                lines = handle.read().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            fields = line.split(",")
            if len(fields) == 2 and fields[1] == "ignore":
                state.configs.insert(0, _Config(fields[0], None, None))
                continue
            assert len(fields) == 3, f"bad hostsfile line {line!r} in {path}"
            mac, name, address = fields
            if any(c.address == address for c in state.configs):
                state.rejected.append(line)  # "duplicate dhcp-host IP address"
                continue
            state.configs.insert(0, _Config(mac, address, name))

    def running_state(self) -> _State:
        live = [p for p in self.table.running() if p.pid in self.states]
        assert len(live) == 1, f"expected one dnsmasq, found {live}"
        state = self.states[live[0].pid]
        self._inotify(state)
        return state

    def served(self) -> dict[str, str]:
        """MAC -> address that the running dnsmasq would hand out now."""
        state = self.running_state()
        result: dict[str, str] = {}
        decided: set[str] = set()
        for config in state.configs:
            if config.mac in decided:
                continue
            decided.add(config.mac)
            if config.address is not None:
                result[config.mac] = config.address
        return result

    def names(self) -> dict[str, str]:
        state = self.running_state()
        return {c.mac: c.name for c in reversed(state.configs) if c.name}
