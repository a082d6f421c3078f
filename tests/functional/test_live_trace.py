"""trace --live: the kernel's own trace of a real probe, in throwaway namespaces.

The seed's case: compute-1 pings the instance 10.0.0.2 from its eth1 address
and iptables drops it in OUTPUT through the instance chain's sg-fallback;
the kernel's trace must name that rule, and the temporary nftables table
must be gone afterwards, also when the probe fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from novanet.explain.live import LiveTraceError, live_trace
from novanet.explain.packet import Packet
from tests.lib import netns as netns_lib

pytestmark = pytest.mark.root

LISTING = Path("/work/shared/seed/listings/compute-1-iptables-filter.txt")


@dataclass
class Pair:
    compute: netns_lib.Namespace
    gateway: netns_lib.Namespace


def seed_filter() -> str:
    """compute-1's seed listing (iptables -S) as iptables-restore input."""
    lines = LISTING.read_text().splitlines()
    out = ["*filter"]
    out += [f":{line.split()[1]} {line.split()[2]} [0:0]" for line in lines if line[:3] == "-P "]
    out += [f":{line.split()[1]} - [0:0]" for line in lines if line[:3] == "-N "]
    out += [line for line in lines if line[:3] == "-A "]
    return "\n".join([*out, "COMMIT", ""])


@pytest.fixture
def pair(netns_factory) -> Iterator[Pair]:  # type: ignore[no-untyped-def]
    for tool in ("nft", "socat"):
        if not shutil.which(tool):
            pytest.skip(f"needs {tool} (tools/install-packages.sh)")
    compute, gateway = netns_factory("h"), netns_factory("g")
    netns_lib.veth_between(compute, "eth1", gateway, "gw0")
    compute.run(["ip", "addr", "add", "192.168.56.202/24", "dev", "eth1"])
    gateway.run(["ip", "addr", "add", "192.168.56.1/24", "dev", "gw0"])
    compute.run(["ip", "route", "add", "default", "via", "192.168.56.1"])
    compute.run(["iptables-restore"], input=seed_filter())
    yield Pair(compute, gateway)


def tables(ns: netns_lib.Namespace) -> str:
    return ns.run(["nft", "list", "tables"]).stdout


def test_seed_ping_from_compute_is_dropped_by_sg_fallback(pair: Pair) -> None:
    lines = live_trace(pair.compute.name, Packet("192.168.56.202", "10.0.0.2"), 2.0)
    drops = [line for line in lines if "(verdict drop)" in line]
    assert len(drops) == 1, lines
    assert " ip filter nova-compute-sg-fallback rule " in drops[0]
    jumps = [
        line.split(" ip filter ")[1].split(" rule")[0] for line in lines if "verdict jump" in line
    ]
    # inst-9 jumps twice: to the (empty) provider chain, then to sg-fallback.
    assert jumps == [
        "OUTPUT", "nova-filter-top", "nova-compute-local", "nova-compute-inst-9", "nova-compute-inst-9"
    ]  # fmt: skip
    assert "novanet_trace" not in tables(pair.compute)


def test_answered_ping_traced_both_ways_on_both_nodes(pair: Pair) -> None:
    probe = Packet("192.168.56.202", "192.168.56.1")
    lines = live_trace(pair.compute.name, probe, 2.0, watch=[pair.gateway.name])
    mine, theirs = f"[{pair.compute.name}] ", f"[{pair.gateway.name}] "
    # compute: the request leaves through OUTPUT (policy accept), the reply comes back.
    assert any(
        line.startswith(mine) and "ip filter OUTPUT policy accept" in line for line in lines
    ), lines
    assert any(
        line.startswith(mine) and 'pre packet: iif "eth1"' in line and "echo-reply" in line
        for line in lines
    ), lines
    # gateway: the request arrives, the reply leaves.
    assert any(
        line.startswith(theirs) and "echo-request" in line and "pre packet" in line
        for line in lines
    )
    assert any(
        line.startswith(theirs) and "echo-reply" in line and "out packet" in line for line in lines
    )
    assert "novanet_trace" not in tables(pair.compute) + tables(pair.gateway)


def test_tcp_probe_and_other_flows_not_traced(pair: Pair) -> None:
    pair.gateway.popen(["socat", "TCP4-LISTEN:2222,fork,reuseaddr", "SYSTEM:echo hi"])
    pair.gateway.run(
        [
            "sh",
            "-c",
            "for i in $(seq 50); do ss -ltnH | grep -q :2222 && exit 0; sleep 0.05; done; exit 1",
        ]
    )
    probe = Packet("192.168.56.202", "192.168.56.1", "tcp", None, 2222, None)
    pair.compute.popen(["ping", "-c", "3", "-i", "0.3", "192.168.56.1"])  # not the flow
    lines = live_trace(pair.compute.name, probe, 2.0)
    assert any("tcp dport 2222" in line and "out packet" in line for line in lines), lines
    assert any("tcp sport 2222" in line and "pre packet" in line for line in lines), lines
    assert not any("icmp" in line for line in lines), lines


def test_bad_requests_change_nothing(pair: Pair) -> None:
    with pytest.raises(LiveTraceError, match="no network namespace 'nt-missing'"):
        live_trace("nt-missing", Packet("10.0.0.1", "10.0.0.2"), 1.0)
    with pytest.raises(LiveTraceError, match="'10.0.0' is not an IPv4 address"):
        live_trace(pair.compute.name, Packet("10.0.0", "10.0.0.2"), 1.0)
    with pytest.raises(LiveTraceError, match="a tcp probe needs a destination port"):
        live_trace(pair.compute.name, Packet("10.0.0.1", "10.0.0.2", "tcp"), 1.0)
    assert "novanet_trace" not in tables(pair.compute)
