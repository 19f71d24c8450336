#!/usr/bin/env python3
"""Request/reply client: sends a request of SIZE bytes every PAUSE seconds and reads each reply, until
the connection fails.

When the path to the server goes silent, the next request is never acknowledged: the kernel resends it
(a tail loss probe, then RTO retransmissions with a doubling timeout) until tcp_retries2's time, or
TCP_USER_TIMEOUT when set, runs out; recv() then fails with ETIMEDOUT, and a send() after that with
EPIPE. Before each request the client logs the kernel's RTO and smoothed RTT from TCP_INFO, which
the checks hold the retransmissions against. JSON events on stdout, a readable account on stderr.
"""
import argparse
import errno
import json
import os
import socket
import struct
import sys
import time

EVENTS = os.environ.get("TCPLAB_EVENTS")
OUT = open(os.path.join(EVENTS, "%s-%d.log" % (os.path.splitext(os.path.basename(sys.argv[0]))[0], os.getpid())), "a") if EVENTS else sys.stdout


def emit(event, **fields):
    print(json.dumps({"event": event, "mono": time.monotonic(), "wall": time.time(), **fields}), file=OUT, flush=True)


def say(text):
    print(f"[client {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def tcp_info(sock):
    """RTO, smoothed RTT and its variance (microseconds) from struct tcp_info (linux/tcp.h)."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    rto = struct.unpack_from("I", raw, 8)[0]
    rtt, rttvar = struct.unpack_from("II", raw, 68)
    return {"rto_us": rto, "rtt_us": rtt, "rttvar_us": rttvar}


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="10.0.1.2", help="server address (default 10.0.1.2)")
    ap.add_argument("--port", type=int, default=8991, help="server port (default 8991)")
    ap.add_argument("--size", type=int, default=100, help="bytes in each request (default 100)")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between a reply and the next request (default 1)")
    ap.add_argument("--user-timeout", type=int, default=0, help="TCP_USER_TIMEOUT in ms (0: not set)")
    a = ap.parse_args()

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if a.user_timeout:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, a.user_timeout)
    with open("/proc/sys/net/ipv4/tcp_retries2") as f:
        retries2 = int(f.read())
    emit("options", user_timeout=s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT), retries2=retries2)
    say(f"tcp_retries2 {retries2} in this namespace, user timeout {a.user_timeout} ms")
    try:
        s.connect((a.host, a.port))
    except OSError as e:
        emit("connect_failed", errno=e.errno, error=errname(e), message=e.strerror)
        say(f"connect to {a.host}:{a.port} failed: {e.strerror}")
        return 1
    local, remote = s.getsockname(), s.getpeername()
    emit("connected", local=f"{local[0]}:{local[1]}", local_port=local[1], remote=f"{remote[0]}:{remote[1]}")
    say(f"connected {local[0]}:{local[1]} -> {remote[0]}:{remote[1]}")

    n = 0
    while True:
        n += 1
        info = tcp_info(s)
        s.sendall(b"r" * a.size)
        sent = time.monotonic()
        emit("sent", n=n, bytes=a.size, **info)
        try:
            reply = s.recv(65536)
        except OSError as e:
            emit("error", errno=e.errno, error=errname(e), message=e.strerror, n=n, after=time.monotonic() - sent)
            say(f"request {n}: recv() failed after {time.monotonic() - sent:.3f} s: {errname(e)} ({e.strerror})")
            break
        if not reply:
            emit("closed", n=n)
            say("the server closed the connection")
            return 0
        emit("reply", n=n, bytes=len(reply), rtt_ms=(time.monotonic() - sent) * 1000)
        if n == 1:
            emit("waiting")
        say(f"request {n}: reply in {(time.monotonic() - sent) * 1000:.3f} ms (RTO {info['rto_us'] / 1000:.0f} ms)")
        time.sleep(a.pause)
    try:
        s.send(b"after")
        emit("send_after_error", error="none")
    except OSError as e:
        emit("send_after_error", errno=e.errno, error=errname(e), message=e.strerror)
        say(f"a send() after that: {errname(e)} ({e.strerror})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        emit("interrupted")
        say("interrupted (Ctrl-C)")
        sys.exit(130)
