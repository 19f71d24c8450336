"""The path's own round trip between two lab hosts, before any delay is added: the time connect()
takes to a port of the peer (a closed port answers the SYN with a RST, an open one with a SYN+ACK:
one round trip either way). An added delay of L each way is then seen as 2L on top of this.

Runs on the host (standard library only, Python 3.7 or later): pathrtt.py ADDRESS PORT [COUNT]
prints a JSON list of milliseconds, one per answered attempt.
"""
import json
import socket
import sys
import time


def main() -> None:
    address, port = sys.argv[1], int(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    samples = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1.0)
        began = time.monotonic()
        try:
            s.connect((address, port))
        except ConnectionRefusedError:
            pass
        except OSError:
            s.close()
            continue  # no answer (a firewall's drop): this attempt tells nothing
        samples.append((time.monotonic() - began) * 1000)
        s.close()
    print(json.dumps(samples))


if __name__ == "__main__":
    main()
