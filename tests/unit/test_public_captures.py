"""tcplab's scanner against tshark 4.0, frame by frame, on real captures other projects made
(../shared/captures: Zeek's and Arkime's test suites; provenance in its README). Prints the totals."""
from __future__ import annotations

import collections
from pathlib import Path

import pytest

from lab.analysis import capture
from tests.wireshark import COMPARED, compare

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "captures"
FILES = sorted(p for p in CORPUS.glob("*") if p.suffix in (".pcap", ".pcapng", ".gz"))
TOTALS: dict[str, collections.Counter] = {"flagged": collections.Counter(), "differ": collections.Counter()}


def test_the_corpus_is_there():
    assert len(FILES) >= 19, f"{CORPUS}: expected the 19 public captures (the project's shared folder, beside the checkout)"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_flag_agrees_with_tshark_frame_by_frame(path):
    differ, flagged = compare(path)
    TOTALS["flagged"].update(flagged)
    TOTALS["differ"].update({name: len(frames) for name, frames in differ.items()})
    assert {name: frames[:20] for name, frames in differ.items() if frames} == {}
    capture.scan(path, keep_all=False)  # and it reads to the end: nothing damaged, nothing cut


def test_print_the_totals(capsys):
    """Runs after the files (pytest keeps the module's order): the agreement per flag over the corpus."""
    assert sum(TOTALS["flagged"].values()) > 2000, "the corpus should flag thousands of frames"
    with capsys.disabled():
        print(f"\nagreement with tshark 4.0 on {len(FILES)} public captures ({CORPUS}):")
        print(f"  {'flag':<24} {'tshark frames':>13} {'differ':>7} {'agree':>7}")
        for name in COMPARED:
            n, bad = TOTALS["flagged"][name], TOTALS["differ"][name]
            share = 100.0 * (1 - bad / n) if n else 100.0
            print(f"  {name:<24} {n:>13} {bad:>7} {share:>6.1f}%")
    assert sum(TOTALS["differ"].values()) == 0
