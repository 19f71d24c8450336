#!/usr/bin/env python3
"""TIME_WAIT watcher: reads the host's TCP sockets of a port with `ss` every --interval seconds.

Each reading is logged as it was printed (`ss -tan -o state all dport = :PORT`: every state, with
the timers), so the results folder holds what `ss` showed and a check can hold it against the
capture. It stops by itself at the first reading without a socket in TIME-WAIT after one was seen
(the kernel has reaped it), after --until seconds, or on SIGTERM / Ctrl-C.

Reading ss's timer column: `timer:(timewait,59sec,0)` is 59 s left; below 10 s it prints
`8.908ms`, which means 8 s 908 ms (not 8.9 ms); `timer:(timewait,,0)` is an entry whose timer has
expired and which the kernel has not reaped yet.

Prints one JSON event per line on stdout and a readable account on stderr.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time


# Set by `invoke shell` (hands-on mode): a folder of the lab's where the JSON events go, one file per
# run of the program, so the terminal shows only the readable text on stderr.
EVENTS = os.environ.get("TCPLAB_EVENTS")
OUT = open(os.path.join(EVENTS, "%s-%d.log" % (os.path.splitext(os.path.basename(sys.argv[0]))[0], os.getpid())), "a") if EVENTS else sys.stdout


def emit(event, **fields):
    print(json.dumps({"event": event, "mono": time.monotonic(), "wall": time.time(), **fields}), file=OUT, flush=True)


def say(text):
    print(f"[watcher {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def read(argv):
    """The socket lines ss printed (its header dropped)."""
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=10).stdout
    return [line.rstrip() for line in out.splitlines()[1:] if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=9200, help="the server's port: sockets with this remote port are read (default 9200)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between readings (default 1)")
    ap.add_argument("--until", type=float, default=90.0, help="stop after this many seconds at the latest (default 90)")
    a = ap.parse_args()

    def stop(signum, _frame):
        emit("stopped", signal=signal.Signals(signum).name)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    argv = ["ss", "-tan", "-o", "state", "all", "dport", "=", f":{a.port}"]
    emit("watching", argv=argv, interval=a.interval, port=a.port)
    say(f"reading `{' '.join(argv)}` every {a.interval:g} s")
    start = time.monotonic()
    seen_tw, shown = False, None
    n = 0
    while time.monotonic() - start < a.until:
        n += 1
        began = time.time()
        lines = read(argv)
        emit("reading", n=n, began=began, lines=lines)
        waiting = [l for l in lines if l.startswith("TIME-WAIT")]
        if lines != shown and (lines or shown):
            say("\n  ".join(["ss:"] + (lines or ["(no socket of the port)"])))
        elif waiting and n % 10 == 0:
            say("  " + "\n  ".join(waiting))
        shown = lines
        if waiting:
            seen_tw = True
        elif seen_tw:
            emit("gone", n=n)
            say("the TIME-WAIT socket is gone (reaped, or taken over by a new connection)")
            return 0
        # The next reading on the interval's grid, however long ss took.
        time.sleep(max(0.0, start + n * a.interval - time.monotonic()))
    emit("until", n=n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
