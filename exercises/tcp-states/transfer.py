#!/usr/bin/env python3
"""The seed's `ipc-static -i tcp 2thread`, across the lab link: one side writes a fixed total I/O size
over a TCP connection, the other reads it all, then both close.

    transfer.py read  --port P [--buffer B]                       on dest: accept one connection, read to EOF, close
    transfer.py write --host H --port P --total N [--buffer B] [--prime]
                                                                  on source: connect, write N bytes, close

stdout: one JSON event per line (wall and monotonic times); stderr: the seed's summary line.
The writer closes first, so it is the active closer (FIN_WAIT1, FIN_WAIT2, TIME_WAIT) and the reader
the passive one (CLOSE_WAIT, LAST_ACK).
"""
import argparse
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
    print(json.dumps({"event": event, "wall": time.time(), "mono": time.monotonic(), **fields}), file=OUT, flush=True)


def say(text):
    print(text, file=sys.stderr, flush=True)


def read(port, buffer):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(1)
    emit("listening", port=port)
    conn, peer = ls.accept()
    emit("accepted", peer=f"{peer[0]}:{peer[1]}")
    ls.close()
    total, start = 0, time.monotonic()
    while True:
        chunk = conn.recv(buffer)
        if not chunk:
            break
        total += len(chunk)
    elapsed = time.monotonic() - start
    emit("eof", bytes=total)
    conn.close()
    emit("closed", bytes=total, seconds=elapsed)
    say(f"read {total} bytes in {elapsed:.6f} s: {total * 8 / elapsed / 1e6 if elapsed else 0:.1f} Mbit/s")


def prime(host, port):
    """One connect() to a port nobody listens on: the RST that comes back leaves both neighbour (ARP)
    entries resolved, so the handshake measured next is TCP's alone, without an ARP round trip."""
    p = socket.socket()
    try:
        p.connect((host, port))
    except OSError:
        pass
    p.close()
    emit("primed", port=port)


def write(host, port, total, buffer):
    s = socket.socket()
    start = time.monotonic()
    emit("connecting", host=host, port=port)
    s.connect((host, port))
    connected = time.monotonic()
    local = s.getsockname()
    emit("connected", local=f"{local[0]}:{local[1]}", local_port=local[1], handshake_ms=(connected - start) * 1000)
    block, sent = b"x" * buffer, 0
    while sent < total:
        sent += s.send(block[: min(buffer, total - sent)])
    emit("written", bytes=sent)
    s.close()
    elapsed = time.monotonic() - connected
    emit("closed", bytes=sent, seconds=elapsed)
    say(f"wrote {sent} bytes in {elapsed:.6f} s: {sent * 8 / elapsed / 1e6 if elapsed else 0:.1f} Mbit/s")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["read", "write"])
    p.add_argument("--host")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--total", type=int, default=1 << 20)
    p.add_argument("--buffer", type=int, default=128 << 10)
    p.add_argument("--prime", action="store_true", help="resolve ARP first, with a connect() to port+1")
    a = p.parse_args()
    if a.mode == "read":
        read(a.port, a.buffer)
    else:
        if not a.host:
            p.error("write needs --host")
        if a.prime:
            prime(a.host, a.port + 1)
        write(a.host, a.port, a.total, a.buffer)


if __name__ == "__main__":
    main()
