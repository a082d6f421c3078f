"""The iptables evaluator against the real kernel: predictions equal real probes.

Three throwaway namespaces, a client and a server routed through a router:

    client 10.1.0.2, 10.1.0.3 --(c0|r0)-- router 10.1.0.1 / 10.2.0.1 --(r1|s0)-- server 10.2.0.2

Each scenario loads a realistic rule set into the router with
iptables-restore, reads it back with iptables-save (what the evaluator gets
in real use), and for every probe (ping, tcp connect, udp exchange) predicts
its fate from the router's mangle/nat PREROUTING and filter FORWARD, then
sends it for real. The predicted verdict must equal the real outcome
(ACCEPT: answered, REJECT: refused/unreachable, DROP: silence), and the
kernel's packet counters must show the predicted rules (and the jumps that
led to them) as the ones that decided: the deciding rules (ACCEPT, DROP,
REJECT, NAT targets, policies) that counted packets are exactly the
predicted ones for the request, its reply and (tcp) the request's later
packets.

A second lab is the seed's compute host: br100 bridges eth2 and vnet0
(br_netfilter), and novanet's own manager programs the compute rules
(instance chain, security groups with an ipset, sg-fallback) plus an
administrator's physdev rule; the same checks hold for the bridged traffic.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from novanet.compute import rules as compute_rules
from novanet.compute import secgroups
from novanet.compute.dispatch import LocalJumps
from novanet.explain.iptables_eval import BUILTIN_CHAINS, ChainResult, EvalContext, Ruleset
from novanet.explain.iptables_rules import parse_rule
from novanet.explain.packet import Packet
from novanet.linux.iptables import IptablesManager, IptablesRunner
from novanet.linux.iptables.declare import declare
from tests.lib import netns as netns_lib

pytestmark = pytest.mark.root

CLIENT, CLIENT_2, ROUTER_IN, ROUTER_OUT, SERVER = (
    "10.1.0.2", "10.1.0.3", "10.1.0.1", "10.2.0.1", "10.2.0.2",
)  # fmt: skip
TCP_PORTS = (22, 80)
UDP_PORT = 5353
DECIDING = frozenset({"ACCEPT", "DROP", "REJECT", "DNAT", "SNAT", "MASQUERADE", "REDIRECT"})
DHCP_SERVER, NEIGHBOUR, OUTSIDE, INSTANCE = "10.0.0.1", "10.0.0.5", "192.168.56.1", "10.0.0.2"


@dataclass
class Lab:
    client: netns_lib.Namespace
    router: netns_lib.Namespace
    server: netns_lib.Namespace
    ports: tuple[str, str]  # the router's client-side and server-side devices
    bridge: str | None = None  # bridged: both ports are in it (br_netfilter)

    def context(self, ipsets: dict[str, list[str]], reply: bool, out: bool = True) -> EvalContext:
        """Where the router sees the request (or the reply): devices and bridge ports."""
        src, dst = self.ports[::-1] if reply else self.ports
        if self.bridge is None:
            return EvalContext(src, dst if out else None, ipsets=ipsets)
        return EvalContext(
            self.bridge, self.bridge if out else None, src, dst if out else None, True, ipsets
        )


def _need_tools() -> None:
    for tool in ("socat", "ipset", "iptables-restore"):
        if not shutil.which(tool):
            pytest.skip(f"needs {tool} (tools/install-packages.sh)")


def _serve(server: netns_lib.Namespace) -> None:
    for port in TCP_PORTS:
        server.popen(["socat", f"TCP4-LISTEN:{port},fork,reuseaddr", "SYSTEM:echo hello"])
    server.popen(["socat", f"UDP4-RECVFROM:{UDP_PORT},fork", "EXEC:/bin/cat"])
    for port in TCP_PORTS:
        wait_listening(server, f":{port}")


@pytest.fixture
def lab(netns_factory) -> Iterator[Lab]:  # type: ignore[no-untyped-def]
    """Client and server in two subnets, routed by the router."""
    _need_tools()
    client, router, server = netns_factory("c"), netns_factory("r"), netns_factory("s")
    netns_lib.veth_between(client, "c0", router, "r0")
    netns_lib.veth_between(router, "r1", server, "s0")
    for ns, dev, addrs, gateway in (
        (client, "c0", (f"{CLIENT}/24", f"{CLIENT_2}/24"), ROUTER_IN),
        (server, "s0", (f"{SERVER}/24",), ROUTER_OUT),
        (router, "r0", (f"{ROUTER_IN}/24",), None),
        (router, "r1", (f"{ROUTER_OUT}/24",), None),
    ):
        for addr in addrs:
            ns.run(["ip", "addr", "add", addr, "dev", dev])
        if gateway:
            ns.run(["ip", "route", "add", "default", "via", gateway])
    router.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    _serve(server)
    yield Lab(client, router, server, ("r0", "r1"))


@pytest.fixture
def compute_lab(netns_factory) -> Iterator[Lab]:  # type: ignore[no-untyped-def]
    """The seed's compute host: br100 bridges eth2 (the fabric) and vnet0 (instance 10.0.0.2).

    The client stands for the controller (10.0.0.1), another instance
    (10.0.0.5) and the outside (192.168.56.1, reached on-link).
    """
    _need_tools()
    client, compute, instance = netns_factory("c"), netns_factory("h"), netns_factory("i")
    netns_lib.veth_between(client, "c0", compute, "eth2")
    netns_lib.veth_between(compute, "vnet0", instance, "s0")
    compute.run(["ip", "link", "add", "br100", "type", "bridge"])
    for port in ("eth2", "vnet0"):
        compute.run(["ip", "link", "set", port, "master", "br100"])
    compute.run(["ip", "link", "set", "br100", "up"])
    compute.run(["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"])
    for addr in (f"{DHCP_SERVER}/24", f"{NEIGHBOUR}/24", f"{OUTSIDE}/24"):
        client.run(["ip", "addr", "add", addr, "dev", "c0"])
    instance.run(["ip", "addr", "add", f"{INSTANCE}/24", "dev", "s0"])
    instance.run(["ip", "route", "add", "192.168.56.0/24", "dev", "s0"])
    _serve(instance)
    yield Lab(client, compute, instance, ("eth2", "vnet0"), "br100")


def wait_listening(ns: netns_lib.Namespace, needle: str) -> None:
    for _ in range(100):
        if needle in ns.run(["ss", "-ltnH"]).stdout:
            return
        ns.run(["sleep", "0.05"])
    raise AssertionError(f"nothing listens on {needle} in {ns.name}")


# -- probes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One probe: from a client address to an address and port; ``expect`` the author's intent."""

    proto: str
    src: str
    dst: str
    port: int | None
    expect: str  # ACCEPT | REJECT | DROP

    def packet(self) -> Packet:
        if self.proto == "icmp":
            return Packet(self.src, self.dst)
        return Packet(self.src, self.dst, self.proto, 40000, self.port, None)

    def __str__(self) -> str:
        return f"{self.proto} {self.src} -> {self.dst}:{self.port}"


def send(lab: Lab, probe: Probe) -> str:
    """The real outcome: ACCEPT (answered), REJECT (refused/unreachable), DROP (silence)."""
    if probe.proto == "icmp":
        res = lab.client.run(["ping", "-n", "-c1", "-W1", "-I", probe.src, probe.dst], check=False)
        if res.returncode == 0:
            return "ACCEPT"
        return "REJECT" if "Unreachable" in res.stdout else "DROP"
    if probe.proto == "tcp":
        address = f"TCP4:{probe.dst}:{probe.port},bind={probe.src},connect-timeout=1"
        res = lab.client.run(["socat", "-T1", "-", address], check=False, input="")
        if res.returncode == 0:
            return "ACCEPT"
        return "REJECT" if "refused" in res.stderr else "DROP"
    address = f"UDP4:{probe.dst}:{probe.port},bind={probe.src}"
    res = lab.client.run(["socat", "-T1", "-", address], check=False, input="probe\n")
    if "probe" in res.stdout:
        return "ACCEPT"
    return "REJECT" if "refused" in res.stderr else "DROP"


# -- prediction --------------------------------------------------------------------------------


@dataclass
class Prediction:
    outcome: str
    results: list[ChainResult]  # every chain evaluated, request then reply


def predict(lab: Lab, ruleset: Ruleset, probe: Probe, ipsets: dict[str, list[str]]) -> Prediction:
    """The router's hooks for the request (client side in) and, if it passes, the reply."""
    request = probe.packet()
    inbound = lab.context(ipsets, reply=False, out=False)
    results = []
    mangle = ruleset.evaluate("mangle", "PREROUTING", request, inbound)
    request = request.replace(mark=mangle.mark)
    nat = ruleset.evaluate("nat", "PREROUTING", request, inbound)
    results += [mangle, nat]
    translated = nat.nat is not None and nat.nat["kind"] == "DNAT"
    if translated:
        assert nat.nat is not None
        request = request.replace(
            dst=nat.nat["to"], dport=nat.nat.get("port", request.dport), ctstate="NEW,DNAT"
        )
    forward = lab.context(ipsets, reply=False)
    verdict = ruleset.evaluate("filter", "FORWARD", request, forward)
    results.append(verdict)
    if verdict.verdict == "REJECT" and lab.bridge is not None:
        # The bridging host has no address and no route: its rejection never leaves it.
        return Prediction("DROP", results)
    if verdict.verdict != "ACCEPT":
        return Prediction(verdict.verdict, results)
    reply = request.reply().replace(ctstate="ESTABLISHED,DNAT" if translated else "ESTABLISHED")
    reply_in = lab.context(ipsets, reply=True, out=False)
    reply_mangle = ruleset.evaluate("mangle", "PREROUTING", reply, reply_in)
    reply = reply.replace(mark=reply_mangle.mark)
    back = ruleset.evaluate("filter", "FORWARD", reply, lab.context(ipsets, reply=True))
    results += [reply_mangle, back]
    if probe.proto == "tcp" and back.verdict == "ACCEPT":
        # The handshake's last ACK and the FINs of the request's direction.
        later = request.replace(ctstate=reply.ctstate)
        results.append(ruleset.evaluate("filter", "FORWARD", later, forward))
    # A reply stopped on its way is silence for the client, rejected or not.
    return Prediction("ACCEPT" if back.verdict == "ACCEPT" else "DROP", results)


# -- the kernel's counters ---------------------------------------------------------------------

_CHAIN = re.compile(r"^Chain (\S+) \((?:policy \S+ (\d+) packets|\d+ references)")


def counters(router: netns_lib.Namespace, table: str) -> dict[tuple[str, int | None], int]:
    """(chain, rule number or None for the policy) -> packets, from iptables -L -v -x."""
    out = router.run(["iptables", "-t", table, "-L", "-v", "-x", "-n", "--line-numbers"]).stdout
    counts: dict[tuple[str, int | None], int] = {}
    chain = ""
    for line in out.splitlines():
        head = _CHAIN.match(line)
        if head:
            chain = head.group(1)
            if head.group(2) is not None:
                counts[(chain, None)] = int(head.group(2))
        elif line[:1].isdigit():
            number, packets = line.split()[:2]
            counts[(chain, int(number))] = int(packets)
    return counts


def deciding_hits(
    ruleset: Ruleset, table: str, counts: dict[tuple[str, int | None], int], chains: set[str]
) -> set[tuple[str, int | None]]:
    """The deciding rules and policies of ``chains`` that counted packets."""
    hit: set[tuple[str, int | None]] = set()
    for chain, texts in ruleset.chains(table).items():
        if chain not in chains:
            continue
        for number, text in enumerate(texts, 1):
            if parse_rule(text).target in DECIDING and counts.get((chain, number), 0) > 0:
                hit.add((chain, number))
        if counts.get((chain, None), 0) > 0:
            hit.add((chain, None))
    return hit


def reachable(ruleset: Ruleset, table: str, builtin: str) -> set[str]:
    """The chains reachable from ``builtin`` by jumps and gotos."""
    chains = ruleset.chains(table)
    seen, todo = {builtin}, [builtin]
    while todo:
        for text in chains.get(todo.pop(), []):
            target = parse_rule(text).target
            if target in chains and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


# -- scenarios ---------------------------------------------------------------------------------


def restore_text(tables: dict[str, list[str]]) -> str:
    """iptables-restore input: each table with every built-in chain declared."""
    out = []
    for table, lines in tables.items():
        out.append(f"*{table}")
        declared = {line.split()[0][1:] for line in lines if line.startswith(":")}
        for chain in BUILTIN_CHAINS[table]:
            if chain not in declared:
                out.append(f":{chain} ACCEPT [0:0]")
        out += lines
        out.append("COMMIT")
    return "\n".join(out) + "\n"


STATEFUL = {
    "filter": [
        ":FORWARD DROP [0:0]",
        ":web - [0:0]",
        # A match the evaluator does not model, on a rule that cannot change the verdict.
        '-A FORWARD -m limit --limit 10/sec -j LOG --log-prefix "fwd: "',
        "-A FORWARD -m conntrack --ctstate INVALID -j DROP",
        "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A FORWARD ! -s 10.1.0.3 -i r0 -o r1 -p icmp --icmp-type echo-request -j ACCEPT",
        "-A FORWARD -i r0 -o r1 -p tcp -m multiport --dports 22,80,8000:8100 -j web",
        "-A FORWARD -i r0 -p udp --dport 5353 -j ACCEPT",
        "-A FORWARD -i r0 -p udp -j REJECT",
        "-A web -s 10.1.0.3 -j RETURN",
        "-A web -p tcp --dport 22 -j ACCEPT",
        "-A web -p tcp -m set --match-set trusted src --dport 80 -j ACCEPT",
        "-A web -p tcp --dport 8000:8100 -j REJECT --reject-with tcp-reset",
    ]
}
STATEFUL_PROBES = [
    Probe("icmp", CLIENT, SERVER, None, "ACCEPT"),
    Probe("icmp", CLIENT_2, SERVER, None, "DROP"),
    Probe("tcp", CLIENT, SERVER, 22, "ACCEPT"),
    Probe("tcp", CLIENT_2, SERVER, 22, "DROP"),
    Probe("tcp", CLIENT, SERVER, 80, "ACCEPT"),
    Probe("tcp", CLIENT, SERVER, 8080, "REJECT"),
    Probe("tcp", CLIENT, SERVER, 443, "DROP"),
    Probe("udp", CLIENT, SERVER, 5353, "ACCEPT"),
    Probe("udp", CLIENT, SERVER, 5354, "REJECT"),
]

MARKS = {
    "mangle": [
        "-A PREROUTING -i r0 -p tcp --dport 80 -j MARK --set-xmark 0x2/0xff",
        "-A PREROUTING -i r0 -p icmp -j MARK --set-mark 0x1",
    ],
    "filter": [
        ":classify - [0:0]",
        ":marked - [0:0]",
        "-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT",
        "-A FORWARD -i r0 -g classify",
        "-A FORWARD -j DROP",
        "-A classify -m mark --mark 0x2/0x2 -j marked",
        "-A classify -j MARK --or-mark 0x10",
        "-A classify -p icmp -m mark --mark 0x11 -m icmp --icmp-type 8 -j ACCEPT",
        "-A classify -p udp -j RETURN",
        "-A classify -j REJECT",
        "-A marked -s 10.1.0.3 -p tcp -j REJECT --reject-with tcp-reset",
        "-A marked -j ACCEPT",
    ],
}
MARKS_PROBES = [
    Probe("icmp", CLIENT, SERVER, None, "ACCEPT"),
    Probe("tcp", CLIENT, SERVER, 80, "ACCEPT"),
    Probe("tcp", CLIENT_2, SERVER, 80, "REJECT"),
    Probe("tcp", CLIENT, SERVER, 22, "REJECT"),
    Probe("udp", CLIENT, SERVER, 5353, "ACCEPT"),  # RETURN after a goto: FORWARD's policy
]

DNAT = {
    "nat": [
        "-A PREROUTING -d 10.1.0.1 -p tcp --dport 8080 -j DNAT --to-destination 10.2.0.2:80",
        "-A PREROUTING -d 10.1.0.1 -p udp --dport 5300 -j DNAT --to-destination 10.2.0.2:5353",
    ],
    "filter": [
        ":FORWARD DROP [0:0]",
        "-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT",
        # No rule for the replies: what these let through gets no answer.
        "-A FORWARD -i r0 -p icmp -j ACCEPT",
        "-A FORWARD -i r0 -p tcp -m tcp --dport 22 -j ACCEPT",
    ],
}
DNAT_PROBES = [
    Probe("tcp", CLIENT, ROUTER_IN, 8080, "ACCEPT"),
    Probe("udp", CLIENT, ROUTER_IN, 5300, "ACCEPT"),
    Probe("icmp", CLIENT, SERVER, None, "DROP"),
    Probe("tcp", CLIENT, SERVER, 22, "DROP"),
    Probe("tcp", CLIENT, SERVER, 80, "DROP"),
]


@pytest.mark.parametrize(
    ("tables", "probes"),
    [(STATEFUL, STATEFUL_PROBES), (MARKS, MARKS_PROBES), (DNAT, DNAT_PROBES)],
    ids=["stateful-sets-multiport-return", "marks-goto", "dnat-missing-replies"],
)
def test_predictions_equal_the_kernel(
    lab: Lab, tables: dict[str, list[str]], probes: list[Probe]
) -> None:
    lab.router.run(["ipset", "create", "trusted", "hash:ip"])
    lab.router.run(["ipset", "add", "trusted", CLIENT])
    tables = {"filter": [], "nat": [], "mangle": [], **tables}  # every table starts empty
    lab.router.run(["iptables-restore"], input=restore_text(tables))
    failures = check_probes(lab, probes, {"trusted": [CLIENT]})
    assert not failures, "\n".join(failures)


def check_probes(lab: Lab, probes: list[Probe], ipsets: dict[str, list[str]]) -> list[str]:
    """Predict and send each probe; what disagrees (outcome, deciding rules, jumps)."""
    saved = {
        t: lab.router.run(["iptables-save", "-t", t]).stdout for t in ("filter", "nat", "mangle")
    }
    ruleset = Ruleset.parse(saved)
    chains = {
        "filter": reachable(ruleset, "filter", "FORWARD"),
        "nat": reachable(ruleset, "nat", "PREROUTING"),
    }
    failures = []
    for probe in probes:
        prediction = predict(lab, ruleset, probe, ipsets)
        assert all(r.verdict != "UNKNOWN" for r in prediction.results), prediction
        for table in ("filter", "nat", "mangle"):
            lab.router.run(["iptables", "-t", table, "-Z"])
        real = send(lab, probe)
        if not prediction.outcome == real == probe.expect:
            failures.append(
                f"{probe}: predicted {prediction.outcome}, real {real}, meant {probe.expect}"
            )
            continue
        # The rules that decided in the kernel are the predicted ones.
        for table in ("filter", "nat"):
            counts = counters(lab.router, table)
            results = [r for r in prediction.results if r.table == table]
            want = {(r.chain, r.rule) for r in results}
            got = deciding_hits(ruleset, table, counts, chains[table])
            if got != want:
                failures.append(
                    f"{probe}: {table} predicted {sorted(want, key=str)}, kernel {sorted(got, key=str)}"
                )
            for result in results:
                for chain, number, text in result.trail:
                    if counts.get((chain, number), 0) == 0:
                        failures.append(f"{probe}: the jump {text!r} counted nothing")
    return failures


@pytest.mark.parametrize("split_above", [0, 2], ids=["flat", "buckets"])
def test_novanet_compute_rules_on_a_bridge(compute_lab: Lab, split_above: int) -> None:
    """novanet's own compute rules (programmed by its manager) judge bridged traffic.

    Flat: the seed's nova-compute-local; buckets: the jumps of a big host
    (novanet/compute/dispatch.py), here with two other instances.
    """
    lab = compute_lab
    group = secgroups.set_name("nova", 7)
    lab.router.run(["ipset", "create", group, "hash:ip"])
    lab.router.run(["ipset", "add", group, NEIGHBOUR])
    mgr = IptablesManager("compute", IptablesRunner("nft", netns=lab.router.name))
    declare(mgr.ipv4, compute_rules.base_rules(["br100"]))
    accepts = ["icmp 8 -1 10.0.0.0/24", "tcp 22 22 0.0.0.0/0", f"udp {UDP_PORT} {UDP_PORT} @7"]
    spec = compute_rules.InstanceFilter(
        9, INSTANCE, "10.0.0.0/24", DHCP_SERVER, tuple(secgroups.render(accepts, "nova"))
    )
    filt = mgr.ipv4["filter"]
    jumps = LocalJumps(filt, split_above)
    others = [(1, "10.0.0.3"), (2, "10.0.0.200")] if split_above else []
    for inst_id, address in [(9, INSTANCE), *others]:
        other = compute_rules.InstanceFilter(inst_id, address, "10.0.0.0/24", DHCP_SERVER)
        chain = compute_rules.chain_name(inst_id)
        filt.add_chain(chain)
        filt.set_rules(chain, compute_rules.instance_chain(other, allow_same_net_traffic=True))
        jumps.set(chain, address)
    filt.set_rules("inst-9", compute_rules.instance_chain(spec, allow_same_net_traffic=False))
    # An administrator's rule in the provider chain, on the bridge port.
    filt.set_rules(
        "provider",
        ["-p tcp -m physdev --physdev-in eth2 -m tcp --dport 80 -j REJECT --reject-with tcp-reset"],
    )
    mgr.apply()
    listing = lab.router.run(["iptables", "-S", "nova-compute-local"]).stdout
    if split_above:
        assert "-A nova-compute-local -d 10.0.0.0/26 -j nova-compute-l-0a000000" in listing
    else:
        assert f"-A nova-compute-local -d {INSTANCE}/32 -j nova-compute-inst-9" in listing
    probes = [
        Probe("icmp", DHCP_SERVER, INSTANCE, None, "ACCEPT"),
        Probe("icmp", OUTSIDE, INSTANCE, None, "DROP"),  # sg-fallback
        Probe("tcp", OUTSIDE, INSTANCE, 22, "ACCEPT"),
        Probe("tcp", DHCP_SERVER, INSTANCE, 80, "DROP"),  # provider's REJECT: no way back
        Probe("udp", NEIGHBOUR, INSTANCE, UDP_PORT, "ACCEPT"),  # the group's set
        Probe("udp", DHCP_SERVER, INSTANCE, UDP_PORT, "DROP"),
    ]
    failures = check_probes(lab, probes, {group: [NEIGHBOUR]})
    assert not failures, "\n".join(failures)
