"""`invoke analyze` streams: its peak memory on a capture ten times the size of the usual one (a bulk
transfer of a million packets, what `invoke bench` captures) is what it is on the usual one. Whole
processes, measured by the kernel (wait4's peak resident set)."""
from __future__ import annotations

import sys
from pathlib import Path

from lab.cli.bench import measured
from tests.bigcapture import bulk

REPO = Path(__file__).resolve().parents[2]
USUAL = 1_000_002  # packets: data, data, ACK, over and over


def peak(path: Path, labels: Path) -> int:
    return measured([sys.executable, "-m", "invoke", "--search-root", str(REPO), "analyze", str(path), "--labels", str(labels)])[1]


def test_ten_times_the_file_is_not_ten_times_the_memory(tmp_path):
    usual = peak(bulk(tmp_path / "usual.pcap", USUAL), tmp_path / "usual.txt")
    (tmp_path / "usual.pcap").unlink()
    big = bulk(tmp_path / "tenfold.pcap", 10 * USUAL)
    tenfold = peak(big, tmp_path / "tenfold.txt")
    assert sum(1 for _ in open(tmp_path / "tenfold.txt", "rb")) == 10 * USUAL  # every frame labelled
    print(f"\npeak memory: {usual / 1e6:.0f} MB on {USUAL:,} packets, {tenfold / 1e6:.0f} MB on {10 * USUAL:,} "
          f"({big.stat().st_size / 1e6:.0f} MB of capture)")
    assert tenfold < usual * 1.2, f"{tenfold / 1e6:.0f} MB on the tenfold file against {usual / 1e6:.0f} MB"
