"""HTTP probes run inside a client namespace by the functional tests.

``python -m tests.unit.metadata.probe get HOST PORT PATH [--bind SRC]``
    prints {"status": N, "body": "..."} (one request, plain socket)
``python -m tests.unit.metadata.probe slow HOST PORT COUNT SECONDS``
    opens COUNT connections that send a request line, then header bytes one
    every 0.5 s (slowloris) and prints, per connection, the seconds after which the
    server closed it (null if it was still open after SECONDS)
``python -m tests.unit.metadata.probe raw HOST PORT KIND``
    sends a hostile request (long-url, long-header, big-headers,
    many-headers, body, garbage) and prints the server's status line
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time

HOSTILE = {
    "long-url": b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "long-header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n",
    "big-headers": b"GET / HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
    + b"\r\n",
    "many-headers": b"GET / HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-H%d: a\r\n" % i for i in range(150))
    + b"\r\n",
    "body": b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 1000000000\r\n\r\nsome of the body",
    "garbage": b"\x00\x01\x02 junk\r\n\r\n",
    "bad-version": b"GET / HTTP/9.9\r\n\r\n",
}


def _get(host: str, port: int, path: str, bind: str | None) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    if bind:
        sock.bind((bind, 0))
    sock.connect((host, port))
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return {"status": int(head.split()[1]), "body": body.decode("utf-8", "replace")}


def _raw(host: str, port: int, kind: str) -> str:
    sock = socket.create_connection((host, port), timeout=10)
    try:
        sock.sendall(HOSTILE[kind])
    except OSError:
        pass  # the server may close before it has read everything
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return "reset"
    return data.split(b"\r\n", 1)[0].decode("latin-1")


def _slow(host: str, port: int, count: int, seconds: float) -> list[float | None]:
    start = time.monotonic()
    socks = [socket.create_connection((host, port), timeout=10) for _ in range(count)]
    for sock in socks:
        # the request line at once, then the headers a byte at a time, never ending
        sock.sendall(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nX-Slow: ")
    closed: dict[int, float] = {}
    sel = selectors.DefaultSelector()
    for index, sock in enumerate(socks):
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, index)
    next_byte = start
    while time.monotonic() - start < seconds and len(closed) < count:
        now = time.monotonic()
        if now >= next_byte:
            for index, sock in enumerate(socks):
                if index not in closed:
                    try:
                        sock.send(b"a")
                    except OSError:
                        closed[index] = now - start
            next_byte = now + 0.5
        for key, _ in sel.select(timeout=0.1):
            index = key.data
            try:
                data = socks[index].recv(4096)
            except OSError:
                data = b""
            if not data and index not in closed:
                closed[index] = time.monotonic() - start
                sel.unregister(socks[index])
    return [closed.get(i) for i in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("get")
    g.add_argument("host")
    g.add_argument("port", type=int)
    g.add_argument("path")
    g.add_argument("--bind")
    s = sub.add_parser("slow")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("count", type=int)
    s.add_argument("seconds", type=float)
    r = sub.add_parser("raw")
    r.add_argument("host")
    r.add_argument("port", type=int)
    r.add_argument("kind", choices=sorted(HOSTILE))
    args = parser.parse_args()
    if args.cmd == "get":
        result: object = _get(args.host, args.port, args.path, args.bind)
    elif args.cmd == "slow":
        result = _slow(args.host, args.port, args.count, args.seconds)
    else:
        result = _raw(args.host, args.port, args.kind)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
