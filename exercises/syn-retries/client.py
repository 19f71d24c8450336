#!/usr/bin/env python3
"""SYN-retries client: connect() to a port nobody listens on, then to a port whose packets are dropped.

The first connect() draws an RST from the peer's kernel and fails at once with ECONNREFUSED; the second
gets no answer at all, so the kernel resends the SYN on its timer until it gives up and connect() fails
with ETIMEDOUT. TCP_SYNCNT and TCP_USER_TIMEOUT are set on each socket where given (0 leaves them unset).

Prints one JSON event per line on stdout (monotonic and wall-clock times, to line up with the capture)
and a readable account on stderr. Only the Python standard library: it runs on any Linux host.
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
# Linux's TCP_SYNCNT (include/uapi/linux/tcp.h); Python's socket module has it, but older builds may not.
TCP_SYNCNT = getattr(socket, "TCP_SYNCNT", 7)
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)


def emit(event, **fields):
    print(json.dumps({"event": event, "mono": time.monotonic(), "wall": time.time(), **fields}), file=OUT, flush=True)


def say(text):
    print(f"[client {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def sysctl(name):
    """A sysctl of this host's network namespace, as a number; None where the kernel has no such sysctl."""
    try:
        with open("/proc/sys/" + name.replace(".", "/")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def make_socket(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if a.syncnt:
        s.setsockopt(socket.IPPROTO_TCP, TCP_SYNCNT, a.syncnt)
    if a.user_timeout:
        s.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, a.user_timeout)
    # Bound before connect() so the local port is known (and logged) before the first SYN leaves:
    # the checks find this attempt's packets in the capture by it.
    s.bind(("0.0.0.0", 0))
    return s


def attempt(a, target, port):
    """One connect(); logs how it ended as the event named `target` ("closed_port" or "silent_port")."""
    s = make_socket(a)
    local_port = s.getsockname()[1]
    emit("connecting", target=target, port=port, local_port=local_port)
    say(f"connect() to {a.host}:{port} ({target.replace('_', ' ')}) from port {local_port} ...")
    started_mono, started_wall = time.monotonic(), time.time()
    try:
        s.connect((a.host, port))
    except OSError as e:
        elapsed = time.monotonic() - started_mono
        name = errno.errorcode.get(e.errno, str(e.errno))
        emit(target, port=port, local_port=local_port, started=started_wall, elapsed=elapsed, errno=e.errno, error=name,
             message=e.strerror)
        say(f"connect() failed after {elapsed:.3f} s: {name} ({e.strerror})")
    else:
        elapsed = time.monotonic() - started_mono
        emit(target, port=port, local_port=local_port, started=started_wall, elapsed=elapsed, errno=0, error=None,
             message="connected")
        say(f"connected after {elapsed:.3f} s (something answered on port {port})")
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="10.0.1.2", help="server address (default 10.0.1.2)")
    ap.add_argument("--port", type=int, default=9080, help="the silent port: its packets are dropped (default 9080)")
    ap.add_argument("--closed-port", type=int, default=9081, help="a port nobody listens on, tried first (0: skip; default 9081)")
    ap.add_argument("--syncnt", type=int, default=0, help="TCP_SYNCNT, SYN retransmissions before giving up (0: not set)")
    ap.add_argument("--user-timeout", type=int, default=0, help="TCP_USER_TIMEOUT in ms (0: not set)")
    a = ap.parse_args()

    # What governs the retries, read back: the kernel's TCP_SYNCNT is the socket's own, else tcp_syn_retries.
    probe = make_socket(a)
    emit(
        "options",
        syncnt=probe.getsockopt(socket.IPPROTO_TCP, TCP_SYNCNT),
        syncnt_set=a.syncnt,
        user_timeout=probe.getsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT),
        syn_retries=sysctl("net.ipv4.tcp_syn_retries"),
        syn_linear_timeouts=sysctl("net.ipv4.tcp_syn_linear_timeouts"),
    )
    probe.close()
    linear = sysctl("net.ipv4.tcp_syn_linear_timeouts")
    say(f"tcp_syn_retries {sysctl('net.ipv4.tcp_syn_retries')}, tcp_syn_linear_timeouts "
        f"{'absent (older kernel)' if linear is None else linear}, TCP_SYNCNT {a.syncnt or 'not set'}, "
        f"TCP_USER_TIMEOUT {str(a.user_timeout) + ' ms' if a.user_timeout else 'not set'}")
    if a.closed_port:
        attempt(a, "closed_port", a.closed_port)
    attempt(a, "silent_port", a.port)
    emit("done")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C at a hands-on shell: said in the log, so the verdict can tell
        emit("interrupted")
        say("interrupted (Ctrl-C): connect() was abandoned before the kernel gave up")
        sys.exit(130)
