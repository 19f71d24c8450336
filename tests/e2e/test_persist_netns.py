"""persist-timer and zero-window-probe on real namespaces: defaults, the seed's variations, pictures,
checks failing on real captures, and packet-by-packet agreement with Wireshark."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.wireshark import COMPARED, disagreements, tshark_flags

from .conftest import EX1_FAST, EX2_FAST, copy_results, invoke, report, run_ok, up, verdicts

PERSIST_CHECKS = {"connection_established", "zero_window_advertised", "window_probes", "window_reopened", "stream_intact"}
# The seed's variations, as the exercise README lists them.
QUICK = ["stall=5", "duration=7"]
TINY = ["recv_buf=1024", "send_buf=4096", "block_size=1024", "stall=3", "duration=4"]
EXTENDED = ["stall=30", "duration=32"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    return run_ok(tmp_path_factory, "persist-timer", "e2epq", QUICK)


@pytest.fixture(scope="module")
def lost(tmp_path_factory) -> Path:
    return run_ok(tmp_path_factory, "zero-window-probe", "e2ezw", [])


def test_persist_timer_defaults(tmp_path):
    r = up("persist-timer", "e2epd", [], tmp_path / "r")
    assert r.returncode == 0, r.stdout
    assert set(verdicts(tmp_path / "r")) == PERSIST_CHECKS
    probes = next(c for c in report(tmp_path / "r")["checks"] if c["name"] == "window_probes")
    assert probes["observed"].startswith("6 probes")  # 0.2, 0.6, 1.4, 3.0, 6.3, 12.7 s into a 15 s stall


@pytest.mark.parametrize("sets", [TINY, EXTENDED], ids=["tiny-buffer", "extended-observation"])
def test_persist_timer_variations(tmp_path, sets):
    r = up("persist-timer", "e2epv", sets, tmp_path / "r")
    assert r.returncode == 0, r.stdout
    assert report(tmp_path / "r")["passed"]


def test_quick_demo_reports_what_the_seed_reports(quick):
    assert report(quick)["passed"]
    err = (quick / "client.err").read_text()
    for line in ("[PASS] Zero-window detected", "[PASS] Persist timer triggered", "[PASS] Data sent"):
        assert line in err
    listening = next(json.loads(l) for l in (quick / "server.log").read_text().splitlines() if '"listening"' in l)
    assert listening["recv_buf"] == 2 * listening["recv_buf_requested"]  # the kernel doubles SO_RCVBUF
    assert {"window.png", "throughput.png"} <= set(report(quick)["plots"])
    for png in ("window.png", "throughput.png"):
        assert (quick / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_zero_window_probe_defaults(lost):
    assert report(lost)["passed"]
    assert set(verdicts(lost)) == {"connection_established", "window_update_lost", "no_data_while_lost",
                                   "probe_reopens", "data_resumes", "stream_intact"}
    names = {p.name for p in lost.iterdir()}
    assert {"source.pcap", "dest.pcap", "observer.pcap"} <= names


def test_window_probes_fail_under_another_rto(quick, tmp_path):
    folder = copy_results(quick, tmp_path / "c")
    log = folder / "client.log"
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    for e in lines:
        if e["event"] == "blocked":
            e["rto_us"] = 1_000_000  # as if the RTO had been 1 s: the first probe would wait that long
    log.write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert invoke("check", str(folder)).returncode == 1
    assert verdicts(folder)["window_probes"] is False


def test_lost_update_checks_fail_when_the_loss_window_is_elsewhere(lost, tmp_path):
    folder = copy_results(lost, tmp_path / "c")
    m = json.loads((folder / "manifest.json").read_text())
    for entry in m["timeline"]:
        if entry["step"] == "bridge_drop":  # claim the path began dropping long after the update left
            entry["started"] += 100
            entry["finished"] += 100
    (folder / "manifest.json").write_text(json.dumps(m))
    assert invoke("check", str(folder)).returncode == 1
    assert verdicts(folder)["window_update_lost"] is False


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory) -> list[Path]:
    """Every kind of capture the exercises make, with the bulk phase after each stall cut to a fraction
    of a second: tshark reads some 8,000 packets a second, and the point is each kind, not volume."""
    return [
        run_ok(tmp_path_factory, "persist-timer", "e2ewpt", ["stall=2", "duration=2.3"]),
        run_ok(tmp_path_factory, "zero-window-probe", "e2ewzw", ["stall=2", "loss=1", "duration=3.2"]),
        run_ok(tmp_path_factory, "exercise1", "e2ewk1", EX1_FAST),
        run_ok(tmp_path_factory, "exercise2", "e2ewk2", EX2_FAST),
    ]


def test_analyzer_agrees_with_wireshark_on_every_capture(short_runs):
    """Frame by frame, for each compared flag. The mapping (tests/wireshark.py): a Linux zero-window
    probe (0 bytes at SND.UNA - 1) is Wireshark's keep_alive; Wireshark's zero_window_probe is the
    RFC form (1 new byte at SND.NXT), which Linux never sends, so both sides must show none of it."""
    captures = [p for folder in short_runs for p in sorted(folder.glob("*.pcap"))]
    assert len(captures) == 2 + 3 + 2 + 2
    seen: dict[str, int] = {}
    for pcap in captures:
        assert disagreements(pcap) == {name: [] for name in COMPARED}, pcap
        # The same capture as Wireshark and `tshark -w` write it, pcapng: the analyzer reads it alike.
        ng = pcap.with_suffix(".pcapng")
        subprocess.run(["editcap", "-F", "pcapng", str(pcap), str(ng)], check=True, capture_output=True)
        assert ng.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
        assert disagreements(ng) == {name: [] for name in COMPARED}, ng
        for flags in tshark_flags(pcap).values():
            for f in flags:
                seen[f] = seen.get(f, 0) + 1
    # The comparison means something only where the flags occur: every one the exercises produce does.
    for flag in ("keep_alive", "zero_window", "window_update", "window_full", "reset"):
        assert seen.get(flag, 0) > 0, f"no {flag} in any capture: {seen}"
    assert "zero_window_probe" not in seen
