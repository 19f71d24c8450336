#!/usr/bin/env python3
"""Persist-timer server: reads a little, stops reading so its buffer fills and it advertises a zero
window, stalls, then resumes and drains the connection to its end.

Prints one JSON event per line on stdout (monotonic and wall-clock times, to line up with captures)
and a readable account on stderr (more of it with --verbose). Handles one connection, then exits.
"""
import argparse
import hashlib
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=9999, help="port to listen on (default 9999)")
    ap.add_argument("--recv-buf", type=int, default=4096, help="SO_RCVBUF to request; the kernel doubles it (default 4096)")
    ap.add_argument("--initial-reads", type=int, default=5, help="reads before stalling (default 5)")
    ap.add_argument("--stall", type=float, default=15, help="seconds without reading (default 15)")
    ap.add_argument("--verbose", action="store_true", help="report every read")
    a = ap.parse_args()

    def say(text, always=True):
        if always or a.verbose:
            print(f"[server {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, lambda *_: (emit("stopped", signal="SIGTERM"), sys.exit(0)))
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Set before listen so the accepted socket inherits it, and the window scale is chosen for it.
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.recv_buf)
    srv.bind(("0.0.0.0", a.port))
    srv.listen(1)
    real = srv.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    emit("listening", port=a.port, recv_buf_requested=a.recv_buf, recv_buf=real)
    say(f"listening on port {a.port}; SO_RCVBUF requested {a.recv_buf}, kernel gave {real}")
    conn, peer = srv.accept()
    emit("accepted", peer=f"{peer[0]}:{peer[1]}")
    say(f"accepted {peer[0]}:{peer[1]}")

    digest, total, reads = hashlib.sha256(), 0, 0
    chunk = max(1, a.recv_buf)
    while reads < a.initial_reads:
        data = conn.recv(chunk)
        if not data:
            break
        digest.update(data)
        total += len(data)
        reads += 1
        say(f"read {len(data)} bytes ({total} in all)", always=False)
    emit("stall_start", bytes=total, reads=reads, seconds=a.stall)
    say(f"{reads} reads, {total} bytes; not reading for {a.stall:g} s: the buffer fills and the window closes")
    time.sleep(a.stall)
    emit("stall_end", bytes=total)
    say("reading again: the window reopens")
    start = time.monotonic()
    while True:
        data = conn.recv(65536)
        if not data:
            break
        digest.update(data)
        total += len(data)
        reads += 1
    emit("closed", bytes=total, reads=reads, sha256=digest.hexdigest(), drain_seconds=time.monotonic() - start)
    say(f"the client closed; received {total} bytes in {reads} reads")
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
