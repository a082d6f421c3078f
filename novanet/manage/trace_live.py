"""``novanet-manage trace --live``: a real probe, and every node's kernel trace of it.

After the prediction, every node whose daemon answered is asked over RPC
(``live_trace``: network API 1.5, compute API 1.3) at the same time: the
source node sends the probe :data:`SEND_DELAY` seconds after its own monitor
started, which leaves the others' monitors (started by the parallel calls)
the time to be running; the others only watch. Each node traces the probe's
flow with nftables tracing (:mod:`novanet.explain.live`), so the lines are
the kernel's own account, printed beside the prediction, which keeps the
verdict and the exit code. A source that cannot send (an outside address,
a floating address, an instance with a tap VIF: a VM the agent cannot send
from) is refused before anything is sent.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any

from novanet.exception import UsageError
from novanet.explain import endpoints
from novanet.explain.topology import COMPUTE_BINARY as COMPUTE
from novanet.explain.topology import NETWORK_BINARY as NETWORK
from novanet.explain.topology import NodeView
from novanet.explain.trace import Result

LOG = logging.getLogger(__name__)
SEND_DELAY = 1.0  # seconds between the source's monitor starting and the probe going out
MAX_SECONDS = 30  # the endpoints refuse more
RPC_MARGIN = 15.0  # seconds beyond the traced time: tables in and out, the RPC round trip

# "trace id 1a ip filter nova-compute-sg-fallback rule ... (verdict drop)",
# "trace id 1a ip filter FORWARD policy drop"; a namespace prefix may precede.
_DROP = re.compile(r"trace id \S+ (\S+) (\S+) (\S+) (?:rule .*\(verdict drop\)|policy drop)")


@dataclasses.dataclass(frozen=True)
class Call:
    """One node's part: which daemon, whether it sends, from which instance."""

    host: str
    binary: str
    send: bool
    instance_uuid: str | None = None


@dataclasses.dataclass
class Live:
    """Each node's trace lines, and the nodes that gave none (why)."""

    lines: dict[str, list[str]]
    missing: dict[str, str]

    def drops(self) -> list[str]:
        """``HOST FAMILY TABLE CHAIN`` of every drop verdict the kernel traced."""
        found = []
        for host, lines in self.lines.items():
            for line in lines:
                match = _DROP.search(line)
                if match:
                    found.append(f"{host} {' '.join(match.groups())}")
        return list(dict.fromkeys(found))

    def to_dict(self) -> dict[str, list[str]]:
        return self.lines

    def render(self) -> str:
        out = ["kernel trace (nft monitor trace):"]
        for host, lines in self.lines.items():
            out += [f"  {host:<14} {line}" for line in lines] or [f"  {host:<14} (no lines)"]
        for host, why in self.missing.items():
            out.append(f"  {host:<14} no trace: {why}")
        drops = self.drops()
        if drops:
            out.append(f"  => kernel: verdict drop at {'; '.join(drops)}")
        else:
            out.append("  => kernel: no drop verdict in the trace")
        return "\n".join(out) + "\n"


def seconds(text: str) -> float:
    """``--live-seconds``: a number of seconds, more than the send delay, at most 30."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--live-seconds {text!r} is not a number") from None
    if not SEND_DELAY + 1 <= value <= MAX_SECONDS:
        raise UsageError(f"--live-seconds {text}: give {SEND_DELAY + 1:g} to {MAX_SECONDS} s")
    return value


def plan(
    result: Result,
    proto: str,
    port: int | None,
    facts: dict[str, dict[str, Any]],
    wanted: list[tuple[str, str]],
) -> tuple[dict[str, Any], list[Call]]:
    """The probe (RPC form) and every node's call; UsageError when the source cannot send."""
    src = result.src
    dst = str(result.dst.address)
    if src.kind == endpoints.NODE:
        assert src.node is not None
        host, instance_uuid = src.node.host, None
        address = src.address or _source_address(src.node, dst)
        up = {binary for h, binary in wanted if h == host}
        sender = next((b for b in (NETWORK, COMPUTE) if b in up), src.node.binary or "daemon")
    elif src.kind == endpoints.INSTANCE and src.instance is not None:
        inst = src.instance
        host, instance_uuid = str(inst.host), inst.uuid
        _check_instance_sends(inst.name, inst.uuid, host, facts)
        if inst.address is None:
            raise UsageError(f"--live: instance {inst.name} has no fixed address; nothing sent")
        address = inst.address
        sender = COMPUTE
    else:
        raise UsageError(
            f"--live cannot send from {src.label}: the probe is sent by a node's daemon, "
            "from the node or from an instance with a netns VIF"
        )
    if (host, sender) not in wanted or host not in facts:
        raise UsageError(f"--live: {host}'s {sender} did not answer; nothing sent")
    probe: dict[str, Any] = {"src": address, "dst": dst, "proto": proto}
    if port is not None:
        probe["dport"] = port
    calls = [Call(host, sender, True, instance_uuid)]
    others: dict[str, str] = {}
    for other, binary in wanted:
        if other != host and other in facts and (other not in others or binary == NETWORK):
            others[other] = binary
    calls += [Call(h, b, False) for h, b in sorted(others.items())]
    return probe, calls


def _source_address(node: NodeView, dst: str) -> str:
    route = node.route(dst)
    address = node.source_for(route, dst) if route else None
    if address is None:
        raise UsageError(f"--live: {node.host} has no route to {dst}; nothing sent")
    return address


def _check_instance_sends(
    name: str, uuid: str, host: str, facts: dict[str, dict[str, Any]]
) -> None:
    vifs = (facts.get(host) or {}).get("vifs") or []
    vif = next((v for v in vifs if v.get("instance_uuid") == uuid), None)
    if vif is None:
        raise UsageError(f"--live: {host} reports no VIF of instance {name}; nothing sent")
    if not vif.get("netns"):
        raise UsageError(
            f"--live cannot send from instance {name}: it has a tap VIF (a VM), and the "
            "agent cannot send from inside a VM; nothing sent"
        )


def gather(conf: Any, probe: dict[str, Any], calls: list[Call], traced: float) -> Live:
    """Every node's trace, asked all at once and each bounded (as diagnose gathers facts)."""
    from novanet.manage.rpcclient import NodeCall, ask_all

    timeout = traced + RPC_MARGIN

    def trace_on(call: Call) -> NodeCall:
        delay = SEND_DELAY if call.send else 0.0
        if call.binary == NETWORK:
            return lambda network, _compute: network.live_trace(
                probe, traced, call.send, delay, timeout=timeout
            )
        return lambda _network, compute: compute.live_trace(
            call.host, probe, traced, call.send, delay, call.instance_uuid, timeout=timeout
        )

    answers, missing = ask_all(conf, {call.host: trace_on(call) for call in calls}, timeout)
    got: dict[str, list[str]] = {}
    for host, answer in answers.items():
        if isinstance(answer, dict) and isinstance(answer.get("lines"), list):
            got[host] = [str(line) for line in answer["lines"]]
        else:
            missing[host] = "no lines in the answer"
    order = [call.host for call in calls]
    return Live(
        {h: got[h] for h in order if h in got}, {h: missing[h] for h in order if h in missing}
    )
