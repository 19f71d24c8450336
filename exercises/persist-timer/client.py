#!/usr/bin/env python3
"""Persist-timer client: sends continuously, reports each period in which the receiver's zero window
blocked it, and checks itself against what the kernel did.

Prints one JSON event per line on stdout (monotonic and wall-clock times) and a readable account with
the self-check lines on stderr. The kernel's own counters (TCP_INFO, and the namespace's
TcpExtTCPWinProbe) say whether the persist timer really sent window probes.
"""
import argparse
import hashlib
import json
import os
import select
import socket
import struct
import sys
import time

# A send() that waits at least this long is a blocked period, not ordinary flow control.
BLOCKED = 0.5


# Set by `invoke shell` (hands-on mode): a folder of the lab's where the JSON events go, one file per
# run of the program, so the terminal shows only the readable text on stderr.
EVENTS = os.environ.get("TCPLAB_EVENTS")
OUT = open(os.path.join(EVENTS, "%s-%d.log" % (os.path.splitext(os.path.basename(sys.argv[0]))[0], os.getpid())), "a") if EVENTS else sys.stdout


def emit(event, **fields):
    print(json.dumps({"event": event, "mono": time.monotonic(), "wall": time.time(), **fields}), file=OUT, flush=True)


def tcp_info(sock):
    """RTO (us), backoff and unanswered probes from struct tcp_info (linux/tcp.h)."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    state, ca_state, retransmits, probes, backoff = struct.unpack_from("BBBBB", raw, 0)
    rto, ato, snd_mss, rcv_mss = struct.unpack_from("IIII", raw, 8)
    return {"rto_us": rto, "probes": probes, "backoff": backoff, "snd_mss": snd_mss}


def win_probes():
    """TcpExtTCPWinProbe: window probes this network namespace has sent."""
    try:
        lines = open("/proc/net/netstat").read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table.get("TCPWinProbe", 0))
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="10.0.1.2", help="server address (default 10.0.1.2)")
    ap.add_argument("--port", type=int, default=9999, help="server port (default 9999)")
    ap.add_argument("--send-buf", type=int, default=65536, help="SO_SNDBUF to request; the kernel doubles it (default 65536)")
    ap.add_argument("--block-size", type=int, default=8192, help="bytes per send() (default 8192)")
    ap.add_argument("--duration", type=float, default=20, help="seconds to keep sending (default 20)")
    ap.add_argument("--verbose", action="store_true", help="report more")
    a = ap.parse_args()

    def say(text, always=True):
        if always or a.verbose:
            print(f"[client {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, a.send_buf)
    real = s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    s.connect((a.host, a.port))
    local = s.getsockname()
    emit("connected", local=f"{local[0]}:{local[1]}", local_port=local[1], send_buf_requested=a.send_buf, send_buf=real,
         **tcp_info(s))
    say(f"connected to {a.host}:{a.port}; SO_SNDBUF requested {a.send_buf}, kernel gave {real}")
    s.setblocking(False)
    probes_before = win_probes()

    block = bytes((i * 7 + 3) % 256 for i in range(a.block_size))
    digest, sent, blocked = hashlib.sha256(), 0, []
    pending = memoryview(b"")
    start = time.monotonic()
    deadline = start + a.duration
    while time.monotonic() < deadline:
        if not pending:
            pending = memoryview(block)
        try:
            n = s.send(pending)
        except BlockingIOError:
            # Wait for room, sampling TCP_INFO meanwhile: the RTO that paces the window probes is the
            # one in force once the last ACKs before the zero window have updated it, not the one at
            # the first EAGAIN. No RTT sample arrives while the window is closed, so the last one holds.
            waited_from = time.monotonic()
            writable, info = False, tcp_info(s)
            while not writable and time.monotonic() < deadline:
                _, ready, _ = select.select([], [s], [], min(0.05, max(0.0, deadline - time.monotonic())))
                writable = bool(ready)
                if not writable:
                    info = tcp_info(s)
            waited = time.monotonic() - waited_from
            if waited >= BLOCKED:
                period = {"start_wall": time.time() - waited, "seconds": waited, "rto_us": info["rto_us"],
                          "backoff": info["backoff"], "unblocked": writable}
                blocked.append(period)
                emit("blocked", **period)
                say(f"send() blocked for {waited:.3f} s: the receiver's window was closed (RTO {info['rto_us'] / 1000:.0f} ms)"
                    + ("" if writable else "; still blocked at the end"))
            continue
        digest.update(pending[:n])
        sent += n
        pending = pending[n:]
    elapsed = time.monotonic() - start
    s.setblocking(True)
    s.shutdown(socket.SHUT_WR)  # the receiver drains what is queued and sees the end
    s.recv(1)
    s.close()
    probes = win_probes()
    probes_sent = probes - probes_before if probes is not None and probes_before is not None else None
    emit("done", bytes=sent, sha256=digest.hexdigest(), seconds=elapsed, blocked_periods=len(blocked),
         window_probes=probes_sent)

    longest = max((b["seconds"] for b in blocked), default=0.0)
    check = [
        (bool(blocked), f"Zero-window detected: {len(blocked)} blocked period(s), the longest {longest:.3f} s"),
        (bool(probes_sent), f"Persist timer triggered: {probes_sent} window probe(s) sent (TcpExtTCPWinProbe)"),
        (sent > 0, f"Data sent: {sent} bytes in {elapsed:.1f} s with a {real}-byte send buffer"),
    ]
    for ok, text in check:
        say(f"[{'PASS' if ok else 'FAIL'}] {text}")
    return 0 if all(ok for ok, _ in check) else 1


if __name__ == "__main__":
    sys.exit(main())
