#!/usr/bin/env python3
"""A streamed chat call's first byte, for scripts/bench-relay.sh: wrk times whole answers, so
this one client opens a connection, sends a streamed call, times the wait for its first event
(`data:`) and hangs up (the relay ends the call as cancelled, as a client leaving early would),
call after call for SECONDS. Prints p50 and p99 in microseconds and calls per second.

    first-byte.py URL KEY SECONDS
"""
import socket, sys, time
url, key, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
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
