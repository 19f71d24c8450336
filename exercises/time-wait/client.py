#!/usr/bin/env python3
"""TIME_WAIT client: one request, then it closes first, then it tries its local port again.

After the reply it waits 1.5 intervals (so a reading of `ss` sees the connection established), then
closes first the orderly way (shutdown: its FIN; it reads until the server's FIN; close), which
leaves its side of the connection in TIME_WAIT; with --linger0 1 it sets SO_LINGER {on, 0} and
close() resets the connection instead (an RST, no TIME_WAIT). It waits 1.5 intervals again (so `ss`
sees what the close left), then opens a new socket (SO_REUSEADDR), binds it to the same local
address and port and connects to the same server. With TCP timestamps on, Linux lets that bound
connect() take the TIME_WAIT 4-tuple over at once (tcp_twsk_unique: PAWS keeps the old segments
out); with them off, connect() fails with EADDRNOTAVAIL, sending nothing, until the TIME_WAIT
socket is gone. It tries again every --interval seconds until it connects or --again-for seconds
have passed. A connection it gets is reset at once (SO_LINGER 0), so it leaves no second TIME_WAIT.

Prints one JSON event per line on stdout (with monotonic and wall-clock times, to line up with the
capture) and a readable account on stderr.
"""
import argparse
import errno
import json
import os
import socket
import struct
import sys
import time


# Set by `invoke shell` (hands-on mode): a folder of the lab's where the JSON events go, one file per
# run of the program, so the terminal shows only the readable text on stderr.
EVENTS = os.environ.get("TCPLAB_EVENTS")
OUT = open(os.path.join(EVENTS, "%s-%d.log" % (os.path.splitext(os.path.basename(sys.argv[0]))[0], os.getpid())), "a") if EVENTS else sys.stdout
LINGER_ZERO = struct.pack("ii", 1, 0)  # struct linger {l_onoff = 1, l_linger = 0}


def emit(event, **fields):
    print(json.dumps({"event": event, "mono": time.monotonic(), "wall": time.time(), **fields}), file=OUT, flush=True)


def say(text):
    print(f"[client {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def error_name(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def new_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Without SO_REUSEADDR (on the first socket too, whose TIME_WAIT inherits it) bind() itself would
    # refuse the port with EADDRINUSE; with it, bind() succeeds and connect() meets the TIME_WAIT.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s


def reset_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="10.0.1.2", help="server address (default 10.0.1.2)")
    ap.add_argument("--port", type=int, default=9200, help="server port (default 9200)")
    ap.add_argument("--linger0", type=int, choices=(0, 1), default=0,
                    help="1: SO_LINGER {on, 0} before close(), which resets the connection (default 0: an orderly close)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between attempts on the same port (default 1)")
    ap.add_argument("--again-for", type=float, default=75.0, help="seconds to keep trying the same port (default 75)")
    ap.add_argument("--request", default="hello", help="text to send as the request")
    a = ap.parse_args()

    s = new_socket()
    emit("options", linger0=a.linger0, reuseaddr=s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR), interval=a.interval)
    try:
        s.connect((a.host, a.port))
    except OSError as e:
        emit("connect_failed", errno=e.errno, error=error_name(e), message=e.strerror)
        say(f"connect to {a.host}:{a.port} failed: {e.strerror}")
        return 1
    local, remote = s.getsockname(), s.getpeername()
    emit("connected", local=f"{local[0]}:{local[1]}", local_port=local[1], remote=f"{remote[0]}:{remote[1]}")
    say(f"connected {local[0]}:{local[1]} -> {remote[0]}:{remote[1]}")
    data = a.request.encode()
    s.sendall(data)
    emit("sent", bytes=len(data))
    reply = s.recv(65536)
    emit("reply", bytes=len(reply), text=reply.decode(errors="replace"))
    say(f"reply: {reply.decode(errors='replace').strip()!r}")
    time.sleep(1.5 * a.interval)  # a reading of ss sees the connection established

    if a.linger0:
        reset_close(s)
        emit("closed", how="rst")
        say("closed with SO_LINGER {on, 0}: an RST instead of a FIN, and no TIME_WAIT on this side")
    else:
        s.shutdown(socket.SHUT_WR)  # our FIN: we close first
        emit("fin_sent")
        rest = s.recv(65536)  # b"" once the server's FIN is in: this side is now in TIME_WAIT
        emit("peer_closed", bytes=len(rest))
        s.close()
        emit("closed", how="fin")
        say(f"closed first (FIN); the server's FIN came back: {local[0]}:{local[1]} is in TIME_WAIT now "
            f"(`ss -tan -o state time-wait` shows it)")
    closed = time.monotonic()
    time.sleep(1.5 * a.interval)  # a reading of ss sees what the close left

    attempt = 0
    while True:
        attempt += 1
        t = new_socket()
        try:
            t.bind(local)
        except OSError as e:
            t.close()
            emit("again", attempt=attempt, since_close=time.monotonic() - closed, step="bind", result=error_name(e), errno=e.errno)
            result = f"bind() failed with {error_name(e)}"
        else:
            try:
                t.connect((a.host, a.port))
            except OSError as e:
                t.close()
                emit("again", attempt=attempt, since_close=time.monotonic() - closed, step="connect", result=error_name(e), errno=e.errno)
                result = f"connect() failed with {error_name(e)}"
            else:
                emit("again", attempt=attempt, since_close=time.monotonic() - closed, step="connect", result="connected",
                     local_port=t.getsockname()[1])
                say(f"attempt {attempt}, {time.monotonic() - closed:.1f} s after the close: connected again from port {local[1]}; "
                    f"resetting it (SO_LINGER 0) so it leaves no TIME_WAIT")
                reset_close(t)
                emit("done", attempts=attempt, connected=True)
                return 0
        if attempt == 1 or attempt % 10 == 0:
            say(f"attempt {attempt}, {time.monotonic() - closed:.1f} s after the close, from port {local[1]}: {result}")
        if time.monotonic() - closed + a.interval > a.again_for:
            emit("done", attempts=attempt, connected=False)
            say(f"gave up after {attempt} attempts")
            return 0
        time.sleep(a.interval)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C at a hands-on shell: said in the log, so the verdict can tell
        emit("interrupted")
        say("interrupted (Ctrl-C)")
        sys.exit(130)
