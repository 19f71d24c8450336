#!/usr/bin/env python3
"""Half-open server: answers each request once, then keeps the connection open without sending.

It sets no keepalive of its own, so every probe on the wire comes from the client. When its socket is
destroyed under it (the lab's stand-in for a reboot: `ss -K` on this host), the blocked recv() fails
with ECONNABORTED and the event `lost` says when: that is the moment the host forgot the connection.
Prints one JSON event per line on stdout and a readable account on stderr; stops on SIGTERM or SIGINT.
"""
import argparse
import errno
import json
import os
import signal
import socket
import sys
import threading
import time


# Set by `invoke shell` (hands-on mode): a folder of the lab's where the JSON events go, one file per
# run of the program, so the terminal shows only the readable text on stderr.
EVENTS = os.environ.get("TCPLAB_EVENTS")
OUT = open(os.path.join(EVENTS, "%s-%d.log" % (os.path.splitext(os.path.basename(sys.argv[0]))[0], os.getpid())), "a") if EVENTS else sys.stdout


def emit(event, **fields):
    print(json.dumps({"event": event, "mono": time.monotonic(), "wall": time.time(), **fields}), file=OUT, flush=True)


def say(text):
    print(f"[server {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def handle(conn, peer):
    name = f"{peer[0]}:{peer[1]}"
    try:
        while True:
            request = conn.recv(65536)
            if not request:
                emit("closed", peer=name)
                say(f"{name} closed the connection")
                return
            emit("request", peer=name, bytes=len(request))
            reply = b"reply to " + request
            conn.sendall(reply)
            emit("replied", peer=name, bytes=len(reply))
            say(f"answered {name}; now keeping the connection open")
    except OSError as e:
        name_of = errno.errorcode.get(e.errno, str(e.errno))
        # ECONNABORTED: the socket was destroyed on this host (ss -K); the kernel sent nothing if the port's
        # outgoing packets were dropped meanwhile, so the client still believes the connection is open.
        emit("lost", peer=name, errno=e.errno, error=name_of, message=e.strerror)
        say(f"the connection with {name} is gone on this host: {name_of} ({e.strerror})")
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8990, help="port to listen on (default 8990)")
    ap.add_argument("--bind", default="0.0.0.0", help="address to listen on (default all)")
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
    emit("listening", port=a.port)
    say(f"listening on {a.bind}:{a.port}")
    while True:
        conn, peer = srv.accept()
        emit("accepted", peer=f"{peer[0]}:{peer[1]}")
        threading.Thread(target=handle, args=(conn, peer), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
