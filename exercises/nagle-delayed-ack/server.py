#!/usr/bin/env python3
"""Request/response server: reads each whole request (`--size` bytes), then answers with `--reply` bytes.

The reply needs the whole request, so a second write the client's Nagle holds back delays it. With
--quickack 1 it sets TCP_QUICKACK before every recv(): the option is not sticky (the kernel goes back
to delaying ACKs, ping-pong mode, as soon as the server replies), so it must be set again each time.
Prints one JSON event per line on stdout and a readable account on stderr; stops on SIGTERM or SIGINT.
"""
import argparse
import json
import os
import signal
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
    print(f"[server {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def serve(conn, name, a):
    n = 0
    while True:
        got = 0
        while got < a.size:
            if a.quickack:
                # Not sticky: replying puts the socket back in ping-pong mode, so set it before each read.
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = conn.recv(a.size - got)
            if not chunk:
                emit("closed", peer=name, requests=n)
                say(f"{name} closed after {n} requests")
                return
            got += len(chunk)
        n += 1
        conn.sendall(b"r" * a.reply)
        emit("replied", peer=name, n=n, bytes=a.reply)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=9100, help="port to listen on (default 9100)")
    ap.add_argument("--bind", default="0.0.0.0", help="address to listen on (default all)")
    ap.add_argument("--size", type=int, default=200, help="bytes per request (default 200)")
    ap.add_argument("--reply", type=int, default=100, help="bytes per reply (default 100)")
    ap.add_argument("--quickack", type=int, default=0, choices=(0, 1), help="1: set TCP_QUICKACK before every recv()")
    a = ap.parse_args()

    def stop(signum, _frame):
        emit("stopped", signal=signal.Signals(signum).name)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((a.bind, a.port))
    srv.listen(16)
    emit("listening", port=a.port, quickack=a.quickack, size=a.size, reply=a.reply)
    say(f"listening on {a.bind}:{a.port}; TCP_QUICKACK {'before every recv()' if a.quickack else 'not set'}")
    while True:
        conn, peer = srv.accept()
        name = f"{peer[0]}:{peer[1]}"
        emit("accepted", peer=name)
        try:
            serve(conn, name, a)
        except OSError as e:
            emit("error", peer=name, errno=e.errno, message=e.strerror)
        finally:
            conn.close()


if __name__ == "__main__":
    sys.exit(main())
