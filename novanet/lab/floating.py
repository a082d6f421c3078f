"""Floating IPs in the lab: the pool, and the demo's section beyond the article.

The lab's pool is 192.168.56.224/28 on the management segment (controller-1's
eth1, the seed's public_interface); creating it writes rows only, so the
seed's listings are unchanged until an address is associated.

The demo's section: a rule in ``default`` for ICMP and TCP 22 from anywhere,
``floating associate``, then from the outside gateway 192.168.56.101: a
ping to the floating address, TCP 22 reaching a listener in the guest that
prints its peer (the gateway's own address, not the controller's), TCP 8080
refused by the guest's chain (no rule allows it), the guest connecting out
to a listener on the gateway that sees the floating address; then
``floating disassociate`` and the ping fails again. Listeners and clients
are one-shot Python snippets bounded in time, run inside the namespaces.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from novanet.lab import checks, seeddata, verify
from novanet.lab.checks import Check
from novanet.lab.cloud import Cloud
from novanet.lab.instances import Instance

FLOATING_IP = "192.168.56.225"
OPEN_PORT = 22
CLOSED_PORT = 8080
OUT_PORT = 9000

# One connection, then exit; prints the peer's address ("timeout" if none came).
LISTEN = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(); s.settimeout(float(sys.argv[2]))\n"
    "try:\n c, peer = s.accept(); print(peer[0]); c.sendall(b'hello'); c.close()\n"
    "except OSError: print('timeout')\n"
)
# Retries until the listener is up (or the deadline): prints what it got, or why not.
CONNECT = (
    "import socket,sys,time\n"
    "end=time.monotonic()+float(sys.argv[3]); why='no answer'\n"
    "while time.monotonic()<end:\n"
    " try:\n"
    "  s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n"
    "  print(s.recv(16).decode() or 'closed'); sys.exit(0)\n"
    " except ConnectionRefusedError: why='refused'; time.sleep(0.2)\n"
    " except OSError as e: why=str(e) or type(e).__name__; time.sleep(0.2)\n"
    "print(why); sys.exit(1)\n"
)


def tcp(
    run_in: Callable[[str, list[str], float], tuple[str, str, int]],
    server: str,
    client: str,
    address: str,
    port: int,
    seconds: float = 6.0,
) -> tuple[str, str]:
    """(what the client got, the peer the server saw) for one TCP connection."""
    seen: dict[str, str] = {}

    def listen() -> None:
        out, _, _ = run_in(server, [sys.executable, "-c", LISTEN, str(port), str(seconds)], 30)
        seen["peer"] = out.strip()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    out, err, _ = run_in(
        client, [sys.executable, "-c", CONNECT, address, str(port), str(seconds)], 30
    )
    listener.join(seconds + 30)
    return (out.strip() or err.strip()), seen.get("peer", "no listener")


RULES = (("icmp", "-1", "-1", "0.0.0.0/0"), ("tcp", str(OPEN_PORT), str(OPEN_PORT), "0.0.0.0/0"))


def floating_checks(cloud: Cloud, cirros: Instance) -> list[Check]:
    """The demo's floating IP section (see the module doc).

    The lab is left as the seed has it afterwards (no association, ``default``
    without rules): a kept lab is explored, and tested, as the article's.
    """
    for rule in RULES:
        cloud.novanet.manage("secgroup", "add-rule", "default", *rule)
    try:
        return _checks(cloud, cirros)
    finally:
        for rule in RULES:
            cloud.novanet.manage("secgroup", "delete-rule", "default", *rule)


def _checks(cloud: Cloud, cirros: Instance) -> list[Check]:
    novanet = cloud.novanet
    gateway = "gateway"
    run_in = cloud.instances.run_in
    out: list[Check] = []
    novanet.manage("floating", "associate", FLOATING_IP, cirros.name)
    nat, _ = cloud.lab.execute(novanet.controller, ["iptables", "-t", "nat", "-S"])
    want = [
        f"-A nova-network-PREROUTING -d {FLOATING_IP}/32 -j DNAT --to-destination {cirros.address}",
        f"-A nova-network-float-snat -s {cirros.address}/32 -j SNAT --to-source {FLOATING_IP}",
    ]
    addrs, _ = cloud.lab.execute(novanet.controller, ["ip", "-4", "-o", "addr", "show", "eth1"])
    have = [line for line in nat.splitlines() if line in want]
    bound = f"{FLOATING_IP}/32" in addrs
    out.append(
        checks.truth(
            "floating.kernel",
            f"floating associate {FLOATING_IP} {cirros.display_name}: DNAT, SNAT, /32 on eth1",
            " | ".join(want + [f"inet {FLOATING_IP}/32"]),
            " | ".join(have + ([f"inet {FLOATING_IP}/32"] if bound else ["(no address)"])),
            have == want and bound,
        )
    )
    ping = cloud.instances.ping(gateway, FLOATING_IP, count=2)
    out.append(
        checks.truth(
            "floating.ping_in",
            f"ping {FLOATING_IP} from the gateway",
            "replies",
            verify.ping_text(ping),
            ping.ok,
        )
    )
    got, peer = tcp(run_in, cirros.name, gateway, FLOATING_IP, OPEN_PORT)
    out.append(
        checks.truth(
            "floating.tcp_in",
            f"TCP {OPEN_PORT} from the gateway to {FLOATING_IP}: the guest sees the true client",
            f"hello; peer {seeddata.GATEWAY_IP}",
            f"{got}; peer {peer}",
            got == "hello" and peer == seeddata.GATEWAY_IP,
        )
    )
    got, peer = tcp(run_in, cirros.name, gateway, FLOATING_IP, CLOSED_PORT, seconds=3)
    out.append(
        checks.truth(
            "floating.tcp_blocked",
            f"TCP {CLOSED_PORT} from the gateway (no rule allows it) must be blocked",
            "no connection",
            f"{got}; peer {peer}",
            got != "hello" and peer in ("timeout", "no listener"),
        )
    )
    got, peer = tcp(run_in, gateway, cirros.name, seeddata.GATEWAY_IP, OUT_PORT)
    out.append(
        checks.truth(
            "floating.snat_out",
            f"{cirros.display_name} to the gateway leaves with its floating address",
            f"peer {FLOATING_IP}",
            f"{got}; peer {peer}",
            got == "hello" and peer == FLOATING_IP,
        )
    )
    novanet.manage("floating", "disassociate", FLOATING_IP)
    ping = cloud.instances.ping(gateway, FLOATING_IP, count=1, wait=1)
    out.append(
        checks.truth(
            "floating.cut",
            f"floating disassociate {FLOATING_IP}: the gateway's ping must fail",
            "no reply",
            verify.ping_text(ping),
            not ping.ok,
        )
    )
    return out
