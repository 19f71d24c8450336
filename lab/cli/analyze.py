"""`invoke analyze FILE`: the timers in anyone's capture, per TCP connection, explained against the
kernel model; as text, as JSON (--json), as pictures (--plots), and written back into the capture as
packet comments (--annotate). Exit 0 with findings, 2 for a file it cannot read (one line saying why)."""
from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

from .. import ui
from ..analysis import capture
from ..analysis import connections as conns
from ..analysis.findings import KERNELS, findings
from ..errors import LabError
from ..report import annotate as annotating
from ..report import capture_report as report
from ..report import plots
from . import EXIT_OK

# Pictures are drawn for this many connections at most (the most interesting ones).
PLOTTED = 10
# Connections read and shown without --all: the busiest this many.
SHOWN = 50


def analyze(file: str, flow: Optional[str], json_out: Optional[str], plots_dir: Optional[str], kernel: str,
            all_: bool, annotate_out: Optional[str], labels_out: Optional[str] = None) -> int:
    path = Path(file)
    if not path.exists():
        raise LabError(f"{file}: no such file")
    if kernel not in KERNELS:
        raise LabError(f"--kernel {kernel}: use one of {', '.join(KERNELS)}")
    try:
        wanted = report.flow_arg(flow)
    except ValueError as e:
        raise LabError(str(e)) from None
    for out in (json_out, annotate_out, labels_out):
        if out and not Path(out).resolve().parent.is_dir():
            raise LabError(f"{out}: its folder does not exist")
    if annotate_out and Path(annotate_out).resolve() == path.resolve():
        raise LabError(f"--annotate {annotate_out}: that is the capture itself; name another file")

    size = path.stat().st_size
    with ExitStack() as stack:
        labels = stack.enter_context(open(labels_out, "wb")) if labels_out else None
        write_labels = (lambda frames, ws: labels.write(capture.format_frames(frames, ws))) if labels else None
        update = stack.enter_context(ui.transfer(str(path), size, verb="read")) if size > 50_000_000 else None
        scan, every = conns.gather(path, progress=update, on_frames=write_labels)
    unread = scan.skipped().get("a link type not read", 0)
    if scan.frames and unread == scan.frames:
        raise LabError(f"{file}: link type {', '.join(map(str, sorted(scan.links)))} is not one tcplab reads "
                       "(it reads Ethernet, Linux cooked SLL and SLL2, raw IP, BSD loopback, PPP, PPPoE, Cisco HDLC, NFLOG, "
                       "pflog, 802.11 with radiotap, Prism, AVS or PPI)")
    if wanted:
        every = [c for c in every if c.matches(*wanted)]
        if not every:
            raise LabError(f"--flow {flow}: no TCP connection between those two ends in {file}")
    hz, kernel = _results_folder(path, kernel)
    if all_ or wanted:
        candidates = every
    else:
        # Findings are worked out for the connections where something happened, the busiest first, at
        # most SHOWN of them: a capture of a million connections is read in seconds, not hours.
        busy = [(c.eventful(), c) for c in every]
        candidates = [c for score, c in sorted((x for x in busy if x[0]), key=lambda x: (-x[0], x[1].number))[:SHOWN]]
    read = [(c, _findings(c, kernel, scan.last_ts, hz)) for c in candidates]
    read.sort(key=lambda cf: report.interest(*cf))
    shown = read if (all_ or wanted) else [(c, f) for c, f in read if any(x.kind not in report.QUIET_KINDS or
                                                                          x.settings.get("how") == "rst" for x in f)]
    report.print_text(path, scan, shown, len(every) - len(shown), kernel, hz)
    if not every:
        ui.console.print("no TCP segment in it")
    if json_out:
        report.write_json(Path(json_out), report.to_json(path, scan, shown, kernel))
        ui.step(f"JSON: {json_out}")
    if plots_dir:
        _plots(path, Path(plots_dir), [c for c, _ in shown[:PLOTTED]])
    if labels_out:
        ui.step(f"labels: {labels_out} (a line per TCP frame: frame number, Wireshark's flags)")
    if annotate_out:
        comments: dict[int, list[str]] = {}
        for _, found in read:
            for f in found:
                for frame, text in f.comments.items():
                    comments.setdefault(frame, []).append(f"tcplab: {text}")
        n = annotating.annotate(path, Path(annotate_out), comments)
        ui.step(f"annotated capture: {annotate_out} ({n} frames with a comment; Wireshark: frame.comment, Expert Information)")
    return EXIT_OK


def _findings(conn, kernel: str, end: float, hz: Optional[int]) -> list:
    """One connection's findings; a reading that fails on a capture unlike any seen is said, and the
    other connections are still read (the tests run the corpus and damaged files through findings)."""
    try:
        return findings(conn, kernel, end, hz)
    except Exception as e:  # noqa: BLE001  (one connection's reading must not lose the file's)
        ui.warn(f"connection #{conn.number} {conn}: no findings ({type(e).__name__}: {e})")
        return []


def _results_folder(path: Path, kernel: str) -> tuple[Optional[int], str]:
    """A capture in a results folder: the sending machine's HZ and (for --kernel host) its kernel release
    from the manifest beside it, so that the windows are the checks' own."""
    try:
        manifest = json.loads((path.parent / "manifest.json").read_text())
        recorded = manifest.get("kernel") or {}
    except (OSError, ValueError, AttributeError):
        return None, kernel
    hz = recorded.get("hz") if isinstance(recorded.get("hz"), int) else None
    release = recorded.get("release") if kernel == "host" and isinstance(recorded.get("release"), str) else None
    return hz, release or kernel


def _plots(path: Path, folder: Path, chosen: list) -> None:
    from ..analysis import tcpflow
    from ..analysis.pcap import read_table

    folder.mkdir(parents=True, exist_ok=True)
    table = read_table(path, only={c.number for c in chosen})
    for flow, conn in zip(tcpflow.analyze(table), sorted(chosen, key=lambda c: c.number)):
        stem = f"connection-{conn.number}"
        plots.draw_window(flow, folder / f"{stem}-window.png")
        plots.draw_sequence(flow, folder / f"{stem}-sequence.png")
    ui.step(f"pictures: {folder} (a window chart and a time-sequence picture per connection, {len(chosen)} connections)")
