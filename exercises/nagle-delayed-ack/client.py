#!/usr/bin/env python3
"""Request/response client: each request is `--size` bytes in `--writes` send() calls, then it waits for the reply.

With two small writes and Nagle on, the second write waits for the ACK of the first, which the
server's kernel delays: each request then costs the delayed-ACK timer (40 ms at any HZ). With
TCP_NODELAY (--nodelay 1) or one write (--writes 1) the whole request leaves at once.
Prints one JSON event per line on stdout (with monotonic and wall-clock times, to line up with the
capture) and a readable account on stderr.
"""
import argparse
import errno
import json
import os
import socket
import statistics
import sys
import time


# Set by `invoke shell` (hands-on mode): a folder of the lab's where the JSON events go, one file per
# run of the program, so the terminal shows only the readable text on stderr.
EVENTS = os.environ.get("TCPLAB_EVENTS")
OUT = open(os.path.join(EVENTS, "%s-%d.log" % (os.path.splitext(os.path.basename(sys.argv[0]))[0], os.getpid())), "a") if EVENTS else sys.stdout


def emit(event, **fields):
    print(json.dumps({"event": event, "mono": time.monotonic(), "wall": time.time(), **fields}), file=OUT, flush=True)


def say(text):
    print(f"[client {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def split(size, writes):
    """The request cut into `writes` pieces as even as can be: 200 in 2 is 100 + 100."""
    base, extra = divmod(size, writes)
    return [base + (1 if k < extra else 0) for k in range(writes)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="10.0.1.2", help="server address (default 10.0.1.2)")
    ap.add_argument("--port", type=int, default=9100, help="server port (default 9100)")
    ap.add_argument("--nodelay", type=int, default=0, choices=(0, 1), help="1: set TCP_NODELAY (Nagle off)")
    ap.add_argument("--writes", type=int, default=2, choices=(1, 2), help="send() calls per request (default 2)")
    ap.add_argument("--size", type=int, default=200, help="bytes per request, split over the writes (default 200)")
    ap.add_argument("--requests", type=int, default=10, help="requests on the one connection (default 10)")
    ap.add_argument("--reply", type=int, default=100, help="bytes the server answers with (default 100)")
    a = ap.parse_args()

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if a.nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Read the option back: what the kernel holds is what the checks compare with.
    emit("options", nodelay=s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), writes=a.writes, size=a.size,
         requests=a.requests, reply=a.reply)
    try:
        s.connect((a.host, a.port))
    except OSError as e:
        emit("connect_failed", errno=e.errno, error=errno.errorcode.get(e.errno, str(e.errno)), message=e.strerror)
        say(f"connect to {a.host}:{a.port} failed: {e.strerror}")
        return 1
    local, remote = s.getsockname(), s.getpeername()
    emit("connected", local=f"{local[0]}:{local[1]}", local_port=local[1], remote=f"{remote[0]}:{remote[1]}")
    say(f"connected {local[0]}:{local[1]} -> {remote[0]}:{remote[1]}; Nagle {'off (TCP_NODELAY)' if a.nodelay else 'on'}, "
        f"{a.size} bytes per request in {a.writes} write{'s' if a.writes > 1 else ''}")

    pieces = split(a.size, a.writes)
    took = []
    for n in range(1, a.requests + 1):
        start = time.monotonic()
        emit("request", n=n, bytes=a.size, writes=pieces)
        for k, piece in enumerate(pieces):
            s.sendall(bytes([ord("a") + (n + k) % 26]) * piece)
        got = 0
        while got < a.reply:
            try:
                chunk = s.recv(a.reply - got)
            except OSError as e:
                emit("error", n=n, errno=e.errno, error=errno.errorcode.get(e.errno, str(e.errno)), message=e.strerror)
                say(f"request {n}: recv() failed: {e.strerror}")
                return 1
            if not chunk:
                emit("closed", n=n)
                say(f"request {n}: the server closed the connection")
                return 1
            got += len(chunk)
        ms = (time.monotonic() - start) * 1000
        took.append(ms)
        emit("reply", n=n, bytes=got, ms=ms)
        say(f"request {n}: reply after {ms:.2f} ms")
    emit("done", requests=a.requests, median_ms=statistics.median(took))
    say(f"{a.requests} requests, median {statistics.median(took):.2f} ms")
    s.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C at a hands-on shell: said in the log, so the verdict can tell
        emit("interrupted")
        say("interrupted (Ctrl-C)")
        sys.exit(130)
