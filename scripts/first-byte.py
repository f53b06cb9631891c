#!/usr/bin/env python3
"""A streamed chat call's first byte, for scripts/bench-relay.sh: wrk times whole answers, so
this one client opens a connection, sends a streamed call and times the wait for its first
event (`data:`), call after call for SECONDS. Prints p50 and p99 in microseconds and calls per
second.

    first-byte.py URL KEY SECONDS [read|leave]

`read` (the default) reads each answer to its end, as a client usually does (the relay's
connection to KIE then goes back to its pool and the call ends as answered); `leave` hangs up
at the first event (the relay ends the call as cancelled, and its connection to KIE, cut
mid-answer, cannot be used again: the next call opens a new one).
"""
import socket, sys, time
url, key, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "read"
if mode not in ("read", "leave"):
    sys.exit(f"mode must be read or leave, not {mode}")
host, rest = url.removeprefix("http://").split("/", 1)
addr, port = host.split(":")
body = b'{"messages":[{"role":"user","content":"a lighthouse at dusk, slow push in"}],"max_tokens":64,"stream":true}'
head = f"POST /{rest} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
request = head.encode() + body
def once():
    s = socket.create_connection((addr, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.perf_counter()
    s.sendall(request)
    got = b""
    while b"data:" not in got:
        part = s.recv(65536)
        if not part:
            sys.exit(f"{url}: closed before the first event: {got[:200]!r}")
        got += part
    waited = time.perf_counter() - t0
    if mode == "read":
        # To the end: `[DONE]`, then the server closes (Connection: close).
        while part:
            part = s.recv(65536)
            got += part
        if b"[DONE]" not in got:
            sys.exit(f"{url}: the answer ended without [DONE]: {got[-200:]!r}")
    s.close()
    if not got.startswith(b"HTTP/1.1 200"):
        sys.exit(f"{url}: {got[:200]!r}")
    return waited
for _ in range(20):
    once()
waits = []
start = time.perf_counter()
while time.perf_counter() - start < secs:
    waits.append(once())
waits.sort()
pick = lambda q: waits[min(len(waits) - 1, int(q * len(waits)))] * 1e6
print(f"{pick(0.5):.0f} {pick(0.99):.0f} {len(waits) / (time.perf_counter() - start):.0f}")
