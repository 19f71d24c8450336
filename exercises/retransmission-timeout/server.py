#!/usr/bin/env python3
"""Request/reply server: answers each request of SIZE bytes with a short reply, on one connection.

Prints one JSON event per line on stdout and a readable account on stderr, like every tcplab program.
"""
import argparse
import json
import os
import socket
import sys
import time

EVENTS = os.environ.get("TCPLAB_EVENTS")
OUT = open(os.path.join(EVENTS, "%s-%d.log" % (os.path.splitext(os.path.basename(sys.argv[0]))[0], os.getpid())), "a") if EVENTS else sys.stdout


def emit(event, **fields):
    print(json.dumps({"event": event, "mono": time.monotonic(), "wall": time.time(), **fields}), file=OUT, flush=True)


def say(text):
    print(f"[server {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8991, help="port to listen on (default 8991)")
    ap.add_argument("--size", type=int, default=100, help="bytes in each request (default 100)")
    a = ap.parse_args()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", a.port))
    ls.listen(1)
    emit("listening", port=a.port)
    say(f"listening on port {a.port}")
    conn, peer = ls.accept()
    emit("accepted", peer=f"{peer[0]}:{peer[1]}")
    say(f"connection from {peer[0]}:{peer[1]}")
    n = 0
    while True:
        got = b""
        while len(got) < a.size:
            chunk = conn.recv(a.size - len(got))
            if not chunk:
                emit("closed", requests=n)
                say("the client closed the connection")
                return 0
            got += chunk
        n += 1
        reply = f"reply {n}\n".encode()
        conn.sendall(reply)
        emit("replied", n=n, bytes=len(reply))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        emit("interrupted")
        sys.exit(130)
    except OSError as e:
        emit("error", errno=e.errno, message=e.strerror)
        say(f"error: {e.strerror}")
        sys.exit(0)
