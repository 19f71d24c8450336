"""Measures round-trip times across the lab: `rtt.py serve PORT` echoes; `rtt.py measure HOST PORT N`
times N connects (the handshake) and N one-byte echoes, and prints them as JSON events."""
import json
import socket
import sys
import time


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    emit("listening", port=port)
    while True:
        c, _ = s.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            b = c.recv(1)
            if not b:
                break
            c.sendall(b)
        c.close()


def measure(host, port, n):
    connects, echoes = [], []
    for _ in range(n):
        c = socket.socket()
        t = time.monotonic()
        c.connect((host, port))
        connects.append((time.monotonic() - t) * 1000)
        c.close()
    c = socket.create_connection((host, port))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(n):
        t = time.monotonic()
        c.sendall(b"x")
        c.recv(1)
        echoes.append((time.monotonic() - t) * 1000)
    c.close()
    emit("rtt", connect_ms=connects, echo_ms=echoes)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        measure(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
