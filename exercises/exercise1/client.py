#!/usr/bin/env python3
"""Keepalive client: sets the keepalive options, makes one request, then blocks in recv().

Prints one JSON event per line on stdout (with monotonic and wall-clock times, to line up with the
capture) and a readable account on stderr. When the peer goes silent, recv() ends with the error the
kernel reports: ETIMEDOUT after a keepalive abort.
"""
import argparse
import errno
import json
import os
import socket
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="10.0.1.2", help="server address (default 10.0.1.2)")
    ap.add_argument("--port", type=int, default=8990, help="server port (default 8990)")
    ap.add_argument("--keepidle", type=int, default=5, help="TCP_KEEPIDLE, seconds of idle before the first probe")
    ap.add_argument("--keepintvl", type=int, default=2, help="TCP_KEEPINTVL, seconds between probes")
    ap.add_argument("--keepcnt", type=int, default=3, help="TCP_KEEPCNT, unanswered probes before giving up")
    ap.add_argument("--user-timeout", type=int, default=0, help="TCP_USER_TIMEOUT in ms (0: not set)")
    ap.add_argument("--request", default="hello", help="text to send as the request")
    a = ap.parse_args()

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, a.keepidle)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, a.keepintvl)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, a.keepcnt)
    if a.user_timeout:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, a.user_timeout)
    # Read the options back: what the kernel holds is what the checks compare with.
    emit(
        "options",
        keepalive=s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        keepidle=s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        keepintvl=s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        keepcnt=s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        user_timeout=s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    )
    say(f"keepalive on: idle {a.keepidle} s, interval {a.keepintvl} s, count {a.keepcnt}, user timeout {a.user_timeout} ms")
    try:
        s.connect((a.host, a.port))
    except OSError as e:
        emit("connect_failed", errno=e.errno, error=errno.errorcode.get(e.errno, str(e.errno)), message=e.strerror)
        say(f"connect to {a.host}:{a.port} failed: {e.strerror}")
        return 1
    local, remote = s.getsockname(), s.getpeername()
    emit("connected", local=f"{local[0]}:{local[1]}", local_port=local[1], remote=f"{remote[0]}:{remote[1]}")
    say(f"connected {local[0]}:{local[1]} -> {remote[0]}:{remote[1]}")

    data = a.request.encode()
    s.sendall(data)
    emit("sent", bytes=len(data))
    try:
        reply = s.recv(65536)
    except OSError as e:
        return fail(e, "reading the reply")
    emit("reply", bytes=len(reply), text=reply.decode(errors="replace"))
    say(f"reply: {reply.decode(errors='replace').strip()!r}; now idle, blocked in recv()")

    emit("waiting")
    start = time.monotonic()
    try:
        more = s.recv(65536)
    except OSError as e:
        return fail(e, f"after {time.monotonic() - start:.3f} s in recv()")
    if not more:
        emit("closed", after=time.monotonic() - start)
        say("the server closed the connection")
    else:
        emit("data", bytes=len(more))
    return 0


def fail(e, when):
    name = errno.errorcode.get(e.errno, str(e.errno))
    emit("error", errno=e.errno, error=name, message=e.strerror)
    say(f"recv() failed {when}: {name} ({e.strerror})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C at a hands-on shell: said in the log, so the verdict can tell
        emit("interrupted")
        say("interrupted (Ctrl-C): the socket closes and the kernel stops probing")
        sys.exit(130)
