"""The kernel's own trace of a real probe (``trace --live``, issue 15 item 5).

The prediction of :mod:`.iptables_eval` says what the rules should do; this
asks the kernel what they did. A temporary nftables table (family ``inet``)
hooks prerouting and output at priority -400, before conntrack, NAT and every
iptables chain, and sets ``meta nftrace`` on the probe's packets (both
directions of its flow). ``nft monitor trace`` then prints every chain and
rule the packets meet: nftables' own and, because iptables here is
iptables-nft, the iptables rules as well (measured with nftables 1.0.6 and
iptables 1.8.9: ``ip filter OUTPUT rule meta l4proto icmp counter ... drop
(verdict drop)``). The table is always removed again.

The monitor gets a head start before the probe is sent (nft prints no
"ready" line), so a probe sent at once is not missed. A node that is not the
probe's source only watches (:func:`watch_trace`): ``novanet-manage trace
--live`` asks every node at once over RPC, the source with a delay long
enough for the others' monitors to be running.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import threading
import time
from collections.abc import Callable, Sequence

from novanet.exception import NovanetError, ProcessExecutionError
from novanet.explain.packet import PROTOCOLS, Packet
from novanet.linux import processutils

_COUNTER = itertools.count()
_HEAD_START = 0.5  # seconds the monitor runs before the probe goes out


class LiveTraceError(NovanetError, ValueError):
    """The probe or namespace cannot be traced (bad address, missing namespace)."""


def live_trace(
    netns: str | None,
    probe: Packet,
    seconds: float,
    *,
    watch: Sequence[str | None] = (),
    delay: float | None = None,
) -> list[str]:
    """Send ``probe`` from ``netns`` (None: this namespace) and return the kernel's trace lines.

    ``watch`` names further namespaces whose hooks are traced too (the other
    nodes of a lab, or a compute host's own namespace when an instance
    sends); their lines are prefixed with ``[NAMESPACE] `` (``[host]`` for
    this one). ``seconds`` bounds the whole run; the probe goes out
    ``delay`` seconds after the monitors start (default: a short head
    start), which gives monitors started elsewhere at the same moment (the
    other nodes, asked by parallel RPC calls) the time to be running. The
    probe's source must be an address of ``netns`` (ping -I / socat bind use
    it); a probe that cannot be sent simply leaves no trace.
    """
    _check(probe, seconds)
    wait = min(_HEAD_START, seconds / 3) if delay is None else delay
    if not 0 <= wait < seconds:
        raise LiveTraceError(f"probe delay {wait} s: give 0 to less than the {seconds} s traced")
    return _traced(
        [netns, *watch], probe, seconds, lambda: _send_after(netns, probe, seconds, wait)
    )


def watch_trace(
    probe: Packet, seconds: float, namespaces: Sequence[str | None] = (None,)
) -> list[str]:
    """Only monitor: the kernel's trace of ``probe``'s flow, sent by someone else, for ``seconds``.

    A node that is not the probe's source runs this while the source node
    runs :func:`live_trace`; lines are prefixed as there.
    """
    _check(probe, seconds)
    if not namespaces:
        raise LiveTraceError("no namespace to watch")
    return _traced(list(namespaces), probe, seconds, None)


def run(
    probe: Packet,
    seconds: float,
    send: bool,
    delay: float,
    *,
    netns: str | None = None,
    watch: Sequence[str | None] = (),
) -> list[str]:
    """One node's part of ``trace --live`` (the RPC endpoints): send and trace, or only trace."""
    if send:
        return live_trace(netns, probe, seconds, watch=watch, delay=delay)
    return watch_trace(probe, seconds, [netns, *watch])


def _traced(
    wanted: list[str | None],
    probe: Packet,
    seconds: float,
    sender: Callable[[], None] | None,
) -> list[str]:
    """Table in, monitors running, ``sender`` (if any) run, then the table always out again."""
    namespaces = list(dict.fromkeys(wanted))
    for ns in namespaces:
        _check_netns(ns)
    table = f"novanet_trace_{os.getpid()}_{next(_COUNTER)}"
    outputs: dict[str | None, str] = {}
    added: list[str | None] = []
    try:
        for ns in namespaces:
            processutils.execute(_in(ns, ["nft", "-f", "-"]), input=_table(table, probe))
            added.append(ns)
        monitors = [
            threading.Thread(target=_monitor, args=(ns, seconds, outputs), daemon=True)
            for ns in namespaces
        ]
        for thread in monitors:
            thread.start()
        if sender is not None:
            sender()
        for thread in monitors:
            thread.join(seconds + 10)
    finally:
        for ns in added:
            processutils.execute(
                _in(ns, ["nft", "delete", "table", "inet", table]), check=False, log_errors=False
            )
    lines: list[str] = []
    for ns in namespaces:
        prefix = f"[{ns or 'host'}] " if len(namespaces) > 1 else ""
        lines += [prefix + line for line in _trace_lines(outputs.get(ns, ""), table)]
    return lines


def _send_after(netns: str | None, probe: Packet, seconds: float, delay: float) -> None:
    time.sleep(delay)
    _send(netns, probe, max(seconds - delay - 0.2, 0.5))


def _check(probe: Packet, seconds: float) -> None:
    for address in (probe.src, probe.dst):
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise LiveTraceError(f"cannot trace: {address!r} is not an IPv4 address") from None
    if probe.proto not in PROTOCOLS:
        raise LiveTraceError(f"cannot trace protocol {probe.proto!r} (icmp, tcp or udp)")
    if probe.proto != "icmp" and probe.dport is None:
        raise LiveTraceError(f"a {probe.proto} probe needs a destination port")
    for port in (probe.sport, probe.dport):
        if port is not None and not 0 < port < 65536:
            raise LiveTraceError(f"port {port} is out of range")
    if not 0 < seconds <= 60:
        raise LiveTraceError(f"trace time {seconds} s: give 0 to 60 s")


def _check_netns(netns: str | None) -> None:
    if netns is not None and not os.path.exists(f"/run/netns/{netns}"):
        raise LiveTraceError(f"no network namespace {netns!r}")


def _in(netns: str | None, argv: list[str]) -> list[str]:
    return argv if netns is None else ["ip", "netns", "exec", netns, *argv]


def _flow(src: str, dst: str, probe: Packet, sport: int | None, dport: int | None) -> str:
    match = f"ip saddr {src} ip daddr {dst} meta l4proto {probe.proto}"
    if sport is not None:
        match += f" th sport {sport}"
    if dport is not None:
        match += f" th dport {dport}"
    return match + " meta nftrace set 1"


def _table(name: str, probe: Packet) -> str:
    """The nft script of the tracing table: the flow's packets, both ways, at both hooks."""
    request = _flow(probe.src, probe.dst, probe, probe.sport, probe.dport)
    reply = _flow(probe.dst, probe.src, probe, probe.dport, probe.sport)
    chains = []
    for chain, hook in (("pre", "prerouting"), ("out", "output")):
        chains.append(
            f"  chain {chain} {{\n    type filter hook {hook} priority -400; policy accept;\n"
            f"    {request}\n    {reply}\n  }}"
        )
    return f"table inet {name} {{\n" + "\n".join(chains) + "\n}\n"


def _monitor(netns: str | None, seconds: float, outputs: dict[str | None, str]) -> None:
    argv = _in(netns, ["timeout", f"{seconds:g}", "nft", "monitor", "trace"])
    try:
        out, _ = processutils.execute(argv, check=False, timeout=seconds + 5)
    except ProcessExecutionError as exc:
        out = exc.stdout or ""
    outputs[netns] = out


def _send(netns: str | None, probe: Packet, seconds: float) -> None:
    """The probe itself, once; whatever happens to it is the trace's business."""
    wait = f"{max(int(seconds), 1)}"
    if probe.proto == "icmp":
        argv = ["ping", "-n", "-c", "1", "-W", wait, "-I", probe.src, probe.dst]
        stdin = None
    else:
        bind = probe.src if probe.sport is None else f"{probe.src}:{probe.sport}"
        kind = "TCP4" if probe.proto == "tcp" else "UDP4"
        address = f"{kind}:{probe.dst}:{probe.dport},bind={bind},reuseaddr"
        if probe.proto == "tcp":
            address += f",connect-timeout={wait}"
        argv = ["socat", f"-T{wait}", "-", address]
        stdin = "novanet trace probe\n"
    try:
        processutils.execute(
            _in(netns, argv), input=stdin, check=False, timeout=seconds + 5, log_errors=False
        )
    except ProcessExecutionError:
        pass  # the command could not run or hung: the trace shows how far packets got


def _trace_lines(output: str, table: str) -> list[str]:
    """The trace's lines, without the tracing table's own rule and policy (always the same).

    Its ``packet:`` line stays: where the packet was first seen, as it was.
    """
    ours = f" inet {table} "
    return [
        line.rstrip()
        for line in output.splitlines()
        if line.startswith("trace id ") and (ours not in line or " packet: " in line)
    ]
