"""`invoke analyze`'s reading of a capture, per connection: as text for a person, as JSON for a program.

The interesting connections come first (a timer gave up, then the most findings); connections with
nothing but a handshake, data and a FIN are listed only with --all.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from rich.markup import escape

from .. import ui
from ..analysis.capture import Scan
from ..analysis.connections import Connection
from ..analysis.findings import Finding

# Findings that make a connection worth showing without --all.
QUIET_KINDS = {"end"}


def interest(conn: Connection, found: list[Finding]) -> tuple:
    """Sort key, most interesting first: an abort or a gave-up timer, then the number of findings, then size."""
    gave_up = any(f.kind == "end" and f.settings.get("how") == "rst" for f in found) or any(
        "gave_up_after_first_rto" in f.settings or "abort" in f.settings for f in found)
    timers = sum(1 for f in found if f.kind not in QUIET_KINDS)
    return (not gave_up, -timers, -conn.packets, conn.number)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _both(a, b, fmt=str) -> str:
    if a is None and b is None:
        return "not seen"
    show = lambda x: "-" if x is None else fmt(x)  # noqa: E731
    return f"{show(a)} / {show(b)}"


def header(conn: Connection) -> list[str]:
    s = conn.summary
    c, sv = s["client"], s["server"]
    answered = sv["syn_seen"] if c["syn_seen"] else True  # the SYN answered, where a SYN was seen
    rtt = (f"{s['first_rtt'] * 1000:.3f} ms" if s["first_rtt"] and answered
           else "no SYN-ACK seen" if c["syn_seen"] else "not seen (no handshake)")
    sack = "both" if c["sack"] and sv["sack"] else "client only" if c["sack"] else "server only" if sv["sack"] else "no"
    ts = "both" if c["timestamps"] and sv["timestamps"] else "client only" if c["timestamps"] else "server only" if sv["timestamps"] else "no"
    scaled = c["wscale"] is not None and sv["wscale"] is not None
    return [
        f"#{conn.number}  {conn}   {conn.duration:.3f} s, {conn.packets} packets, "
        f"{_size(c['payload'])} from the client, {_size(sv['payload'])} from the server",
        f"    handshake RTT {rtt}; MSS {_both(c['mss'], sv['mss'])}; window scale "
        + (f"{c['wscale']} / {sv['wscale']}" if scaled else "off" if (c['syn_seen'] or sv['syn_seen']) else "not known (no SYN seen)")
        + f"; SACK {sack}; timestamps {ts}",
    ]


def print_text(path: Path, scan: Scan, shown: list[tuple[Connection, list[Finding]]], hidden: int, kernel: str,
               hz: Optional[int] = None) -> None:
    def say(text: str = "") -> None:
        ui.console.print(escape(text), soft_wrap=True)  # long lines left whole: the terminal wraps them

    skipped = scan.skipped()
    say(f"{path}: {scan.frames} frames, {scan.connections} TCP connection{'s' if scan.connections != 1 else ''}"
        + ("; not read: " + ", ".join(f"{n} {why}" for why, n in skipped.items()) if skipped else "")
        + f"; kernel model: {kernel}" + (f", HZ {hz}" if hz else ", HZ not known (the widest windows)"))
    if scan.cut_short:
        ui.warn(f"{path}: the last record is cut short (the capture was stopped mid-write): the frames before it are read")
    if scan.damaged:
        ui.warn(f"{path}: {scan.damaged}: the file is damaged there; the {scan.frames} frames before are read, the rest is not")
    for conn, found in shown:
        say()
        for line in header(conn):
            say(line)
        for f in found:
            say(f"    - {f.kind.replace('_', ' ')} ({f.side}): {f.text}")
            if f.model:
                say(f"      model: {f.model}")
            if f.frames:
                more = f" and {len(f.frames) - 12} more" if len(f.frames) > 12 else ""
                say(f"      frames {', '.join(map(str, f.frames[:12]))}{more}")
        if conn.dropped:
            say(f"    ({conn.dropped} flagged segments past the first {conn.kept} not kept)")
    if hidden:
        say()
        say(f"{hidden} more connection{'s' if hidden != 1 else ''} not shown (nothing but a handshake, data and a close, "
            f"or past the {len(shown)} busiest): --all shows every one")


def to_json(path: Path, scan: Scan, shown: list[tuple[Connection, list[Finding]]], kernel: str) -> dict:
    return {
        "file": str(path),
        "frames": scan.frames,
        "connections": scan.connections,
        "not_read": scan.skipped(),
        "cut_short": scan.cut_short,
        "damaged": scan.damaged,
        "kernel": kernel,
        "shown": [
            {
                "number": conn.number,
                "client": list(conn.client),
                "server": list(conn.server),
                "summary": conn.summary,
                "findings": [f.to_dict() for f in found],
            }
            for conn, found in shown
        ],
    }


def write_json(out: Path, doc: dict) -> None:
    Path(out).write_text(json.dumps(doc, indent=2, default=_plain) + "\n")


def _plain(value):
    """numpy numbers and arrays in JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def flow_arg(text: Optional[str]) -> Optional[tuple[tuple[str, int], tuple[str, int]]]:
    """--flow ADDR:PORT-ADDR:PORT (IPv6 in brackets: [2001:db8::1]:80-[2001:db8::2]:40000)."""
    if not text:
        return None
    try:
        a, b = _split_ends(text)
        return _endpoint(a), _endpoint(b)
    except ValueError:
        raise ValueError(f"--flow {text}: write it ADDR:PORT-ADDR:PORT, e.g. 10.0.1.1:40000-10.0.1.2:8990 "
                         "(IPv6 in brackets: [2001:db8::1]:80-[2001:db8::2]:40000)") from None


def _split_ends(text: str) -> tuple[str, str]:
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "-" and depth == 0:
            return text[:i], text[i + 1:]
    raise ValueError(text)


def _endpoint(text: str) -> tuple[str, int]:
    import ipaddress

    addr, _, port = text.rpartition(":")
    addr = addr.strip("[]")
    return str(ipaddress.ip_address(addr)), int(port)
