#!/usr/bin/env python3
"""Half-open client: makes one request, then idles until it learns the server forgot the connection.

With --keepalive 1 it sets SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT first, so its
kernel probes the idle connection; a peer whose host lost the socket answers the probe with an RST and
the blocked recv() fails with ECONNRESET. Without keepalive nothing is sent while it idles: it learns
only when it writes again, after --send-after seconds (0: never), and the RST answers that data.
Prints one JSON event per line on stdout (monotonic and wall-clock times, to line up with the capture)
and a readable account on stderr.
"""
import argparse
import errno
import json
import os
import select
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
    ap.add_argument("--keepalive", type=int, choices=(0, 1), default=1, help="1: SO_KEEPALIVE on (default); 0: off")
    ap.add_argument("--keepidle", type=int, default=4, help="TCP_KEEPIDLE, seconds of idle before the first probe")
    ap.add_argument("--keepintvl", type=int, default=2, help="TCP_KEEPINTVL, seconds between probes")
    ap.add_argument("--keepcnt", type=int, default=3, help="TCP_KEEPCNT, unanswered probes before giving up")
    ap.add_argument("--send-after", type=float, default=10, help="seconds idle before writing again (0: never)")
    ap.add_argument("--request", default="hello", help="text to send as the request")
    a = ap.parse_args()

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, a.keepalive)
    # The timers are set either way (harmless without SO_KEEPALIVE), so a run differs in one option only.
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, a.keepidle)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, a.keepintvl)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, a.keepcnt)
    # Read the options back: what the kernel holds is what the checks compare with.
    emit(
        "options",
        keepalive=int(bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))),
        keepidle=s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        keepintvl=s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        keepcnt=s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        send_after=a.send_after,
    )
    if a.keepalive:
        say(f"keepalive on: idle {a.keepidle} s, interval {a.keepintvl} s, count {a.keepcnt}")
    else:
        say("keepalive off: nothing is sent while the connection idles")
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
        return fail(e, "recv", "reading the reply")
    emit("reply", bytes=len(reply), text=reply.decode(errors="replace"))
    when = f"writes again in {a.send_after:g} s" if a.send_after > 0 else "never writes again"
    say(f"reply: {reply.decode(errors='replace').strip()!r}; now idle in recv() ({when})")

    emit("waiting", send_after=a.send_after)
    start = time.monotonic()
    # Idle: readable means data, the peer's FIN, or an error (the RST that answered a probe).
    readable, _, _ = select.select([s], [], [], a.send_after if a.send_after > 0 else None)
    if not readable:
        again = b"still there?"
        try:
            s.sendall(again)  # the connection is ESTABLISHED as far as this side knows: the data leaves
        except OSError as e:
            return fail(e, "send", f"after {time.monotonic() - start:.3f} s idle")
        emit("sent_again", bytes=len(again), after=time.monotonic() - start)
        say(f"wrote again after {time.monotonic() - start:.3f} s idle; reading the answer")
    try:
        more = s.recv(65536)
    except OSError as e:
        return fail(e, "recv", f"after {time.monotonic() - start:.3f} s")
    if not more:
        emit("closed", after=time.monotonic() - start)
        say("the server closed the connection")
    else:
        emit("data", bytes=len(more), text=more.decode(errors="replace"))
        say(f"the server answered: {more.decode(errors='replace').strip()!r}: it had not forgotten the connection")
    return 0


def fail(e, call, when):
    name = errno.errorcode.get(e.errno, str(e.errno))
    emit("error", call=call, errno=e.errno, error=name, message=e.strerror)
    say(f"{call}() failed {when}: {name} ({e.strerror})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C at a hands-on shell: said in the log, so the verdict can tell
        emit("interrupted")
        say("interrupted (Ctrl-C): the socket closes")
        sys.exit(130)
