"""novanet-dhcpbridge: dnsmasq's --dhcp-script.

dnsmasq runs it, one call at a time, as ``init`` (print the lease database:
dnsmasq keeps leases only in memory with --leasefile-ro) and ``add|old|del
MAC IP [HOSTNAME]`` on every lease change. It must be fast: dnsmasq answers
no DHCP for that network while the script runs.

Fast path: hand the event to the running novanet-network over the unix
socket named in NOVANET_DHCPBRIDGE_SOCKET (only the standard library is
imported: about 20 ms). When the daemon is not there (restarting, stopped),
fall back to doing the same work directly on the database, so no lease
event is lost. ``old`` returns at once, as nova's did: dnsmasq sends one per
lease at every SIGHUP and they carry nothing new.

Environment (set by novanet-network when it starts dnsmasq):
NOVANET_NETWORK_ID, NOVANET_CONFIG_FILES (JSON list of [kind, path]) and
NOVANET_DHCPBRIDGE_SOCKET. Exit codes: 0 done, 1 runtime failure, 2 bad
arguments or environment (nothing changed).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys

MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
IPV4_RE = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")
ACTIONS = ("init", "add", "old", "del")
SOCKET_TIMEOUT = 10.0
MAX_NETWORK_ID = 2**31 - 1  # an INTEGER column; the daemon refuses larger ids too


class Usage(Exception):
    pass


def parse(argv: list[str], environ: dict[str, str]) -> dict[str, object]:
    """Validate arguments and environment into one event (raises Usage)."""
    if not argv or argv[0] not in ACTIONS:
        raise Usage(f"expected one of {', '.join(ACTIONS)}, got {' '.join(argv) or 'nothing'}")
    action = argv[0]
    event: dict[str, object] = {"action": action}
    if action == "init":
        if len(argv) != 1:
            raise Usage("init takes no arguments")
    else:
        if len(argv) not in (3, 4):
            raise Usage(f"{action} needs MAC IP [HOSTNAME]")
        mac, ip = argv[1], argv[2]
        if not MAC_RE.match(mac):
            raise Usage(f"{mac!r} is not a MAC address")
        if not IPV4_RE.match(ip):
            raise Usage(f"{ip!r} is not an IPv4 address")
        event.update(mac=mac.lower(), address=ip)
    raw_id = environ.get("NOVANET_NETWORK_ID", "")
    digits = raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 10
    if not digits or not 1 <= int(raw_id) <= MAX_NETWORK_ID:
        raise Usage(f"NOVANET_NETWORK_ID must be a network id, not {raw_id[:40]!r}")
    event["network_id"] = int(raw_id)
    return event


def _via_daemon(path: str, event: dict[str, object]) -> dict[str, object] | None:
    """Send the event to novanet-network; None if it is not listening."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        sock.settimeout(SOCKET_TIMEOUT)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        sock.sendall(json.dumps(event).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        return None
    finally:
        sock.close()
    if not data:
        return None
    reply = json.loads(data)
    return reply if isinstance(reply, dict) else None


def _direct(event: dict[str, object], environ: dict[str, str]) -> dict[str, object]:
    """Do the work on the database ourselves (the daemon is down)."""
    from novanet.network import leases

    return leases.handle_direct(event, environ)


USAGE = """\
usage: novanet-dhcpbridge init | add|old|del MAC IP [HOSTNAME]

dnsmasq's --dhcp-script for novanet-network (dnsmasq runs it; see the README).
  init                  print the network's leases (dnsmasq reads them at start)
  add|del MAC IP [NAME] a lease was handed out / released: record it
  old MAC IP [NAME]     a lease was renewed or re-read: nothing to do

environment (set by novanet-network when it starts dnsmasq):
  NOVANET_NETWORK_ID         id of the network of this dnsmasq
  NOVANET_CONFIG_FILES       JSON list of [kind, path]: the configuration files
  NOVANET_DHCPBRIDGE_SOCKET  unix socket of the running novanet-network
exit codes: 0 done, 1 runtime failure, 2 bad arguments or environment
"""


def run(argv: list[str], environ: dict[str, str], out: object = sys.stdout) -> int:
    if argv[:1] == ["old"]:
        return 0
    if argv[:1] in (["-h"], ["--help"]):
        out.write(USAGE)  # type: ignore[attr-defined]
        return 0
    if argv[:1] == ["--version"]:
        from novanet import __version__

        out.write(f"novanet-dhcpbridge {__version__}\n")  # type: ignore[attr-defined]
        return 0
    try:
        event = parse(argv, environ)
    except Usage as exc:
        sys.stderr.write(f"novanet-dhcpbridge: error: {exc}\n")
        return 2
    reply = None
    path = environ.get("NOVANET_DHCPBRIDGE_SOCKET")
    if path:
        reply = _via_daemon(path, event)
    if reply is None:
        try:
            reply = _direct(event, environ)
        except Exception as exc:  # noqa: BLE001 - dnsmasq only sees the exit code
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [repr(exc)]
            sys.stderr.write(f"novanet-dhcpbridge: error: {reason[0]}\n")
            return 1
    if not reply.get("ok"):
        sys.stderr.write(f"novanet-dhcpbridge: error: {reply.get('error', 'failed')}\n")
        return int(reply.get("code", 1))  # type: ignore[call-overload]
    output = reply.get("output") or ""
    if output:
        out.write(str(output))  # type: ignore[attr-defined]
    return 0


def main() -> None:
    from novanet.cmd.pipes import run_filter

    sys.exit(run_filter(lambda: run(sys.argv[1:], dict(os.environ))))


if __name__ == "__main__":
    main()
