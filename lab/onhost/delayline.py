"""A user-space delay line between bridge ports, for kernels without the netem qdisc.

Runs in the network namespace of the host that holds the bridge (the observer), as DUMMYNET runs on
a middle box. For each direction IN -> OUT it reads every frame that arrives on port IN with an
AF_PACKET socket, holds it for the direction's delay, maybe drops it (loss), and writes it out on
port OUT; with a rate, each frame also waits its turn on a link of that many Mbit/s, as netem's
`rate` does (a queue of at most QUEUE_LIMIT frames, beyond which frames are dropped, as netem's
default limit does). The bridge's own forwarding from IN to OUT is dropped by an nftables rule the lab adds, so
each frame crosses once. Frames the bridge hands to the host itself (the observer's capture on the
bridge) still arrive undelayed: the observer sees a frame as it enters the delay line.

    delayline.py IN OUT DELAY_MS LOSS_PERCENT RATE_MBIT [IN OUT DELAY_MS LOSS_PERCENT RATE_MBIT ...]   (rate 0: none)

Prints {"event": "ready"} once every socket is bound, and on SIGTERM or SIGINT a summary of what it
did and how late each frame left against its due time, so the run can say how exact the delay was.
Standard library only (it also runs in containers, whose python3 has nothing else).
"""
from __future__ import annotations

import heapq
import json
import os
import random
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
RCVBUF = 4 << 20
BURST = 32  # frames read in one go before due frames are sent: a burst must not hold up what is due
QUEUE_LIMIT = 1000  # frames waiting for a rate-limited link, as netem's default limit


def open_port(name: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.bind((name, 0))
    s.setblocking(False)
    return s


def run(directions: list) -> dict:
    ports = {}
    for d in directions:
        for name in (d["in"], d["out"]):
            if name not in ports:
                ports[name] = open_port(name)
    by_fd = {}
    for d in directions:
        by_fd.setdefault(ports[d["in"]].fileno(), []).append(d)
    for d in directions:
        d.update(relayed=0, lost=0, send_errors=0, overflowed=0, queued=0, free_at=0.0)
    rng = random.Random(int.from_bytes(os.urandom(8), "big"))
    queue: list = []  # (due, seq, out socket, frame, direction)
    seq = 0
    late: list = []
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(1))
    print(json.dumps({"event": "ready", "directions": [{k: d[k] for k in ("in", "out", "delay_ms", "loss", "rate_mbit")} for d in directions]}), flush=True)
    readable = list({ports[d["in"]] for d in directions})
    while not stop:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            due, _, out, frame, d = heapq.heappop(queue)
            d["queued"] -= 1
            try:
                out.send(frame)
                d["relayed"] += 1
            except OSError:
                d["send_errors"] += 1
            late.append(time.monotonic() - due)
            now = time.monotonic()
        timeout = max(0.0, queue[0][0] - now) if queue else 0.2
        try:
            ready, _, _ = select.select(readable, [], [], timeout)
        except InterruptedError:
            continue
        for s in ready:
            for _ in range(BURST):
                try:
                    frame, addr = s.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # what this program (or the bridge) sent out of the port
                arrived = time.monotonic()
                for d in by_fd[s.fileno()]:
                    if d["loss"] and rng.random() * 100 < d["loss"]:
                        d["lost"] += 1  # the configured loss
                        continue
                    leaves = arrived
                    if d["rate_mbit"]:
                        if d["queued"] >= QUEUE_LIMIT:
                            d["overflowed"] += 1
                            continue
                        # Serialised behind the frames before it, at the link's rate.
                        leaves = max(arrived, d["free_at"]) + len(frame) * 8 / (d["rate_mbit"] * 1e6)
                        d["free_at"] = leaves
                    seq += 1
                    d["queued"] += 1
                    heapq.heappush(queue, (leaves + d["delay_ms"] / 1000, seq, ports[d["out"]], frame, d))
    late.sort()

    def pct(p: float) -> float:
        return round(late[min(len(late) - 1, int(p * len(late)))] * 1000, 3) if late else 0.0

    return {"event": "summary",
            "directions": [{k: d[k] for k in ("in", "out", "delay_ms", "loss", "rate_mbit", "relayed", "lost", "overflowed", "send_errors")}
                           for d in directions],
            "queued_at_exit": len(queue),
            "late_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": round(late[-1] * 1000, 3) if late else 0.0}}


def parse(args: list) -> list:
    if not args or len(args) % 5:
        sys.exit(__doc__)
    out = []
    for i in range(0, len(args), 5):
        name_in, name_out, delay, loss, rate = args[i:i + 5]
        out.append({"in": name_in, "out": name_out, "delay_ms": float(delay), "loss": float(loss), "rate_mbit": float(rate)})
    return out


if __name__ == "__main__":
    print(json.dumps(run(parse(sys.argv[1:]))), flush=True)
