"""nagle-delayed-ack on real namespaces (and once in Docker, once typed by a person into tmux): the four
variants each pass with their own expectations, each fails when the manifest claims another variant, the
checks fail on an edited capture and an edited log, the figures for sweeps, and Wireshark's agreement."""
from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

import pytest
from scapy.layers import inet, l2  # noqa: F401  (registers Ethernet, IP and TCP, which rdpcap needs)
from scapy.utils import rdpcap, wrpcap

from lab.analysis import tcpflow as tf
from lab.report import measures
from tests.wireshark import COMPARED, disagreements

from .conftest import copy_results, edit_manifest, invoke, report, run_ok, up, verdicts
from .test_handson import person, wait_step  # noqa: F401  (person: the fixture)

EX = "nagle-delayed-ack"
CHECKS = {"connection_established", "request_latency", "nagle_holds_second_write", "quickack_at_start"}
VARIANTS = {
    "default": {"nodelay": 0, "writes": 2, "quickack": 0},
    "nodelay": {"nodelay": 1, "writes": 2, "quickack": 0},
    "writes1": {"nodelay": 0, "writes": 1, "quickack": 0},
    "quickack": {"nodelay": 0, "writes": 2, "quickack": 1},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One run of each variant (about 1.5 s each), in labs of their own."""
    return {name: run_ok(tmp_path_factory, EX, f"e2ena{name[:4]}", [f"{k}={v}" for k, v in params.items()])
            for name, params in VARIANTS.items()}


def latencies(folder: Path) -> list[float]:
    return [e["ms"] for e in map(json.loads, (folder / "client.log").read_text().splitlines()) if e["event"] == "reply"]


def test_default_every_request_after_the_first_pays_the_delayed_ack(runs):
    folder = runs["default"]
    assert verdicts(folder) == dict.fromkeys(CHECKS, True)
    ms = latencies(folder)
    assert len(ms) == 10 and ms[0] < 5 and all(39 <= x <= 50 for x in ms[1:])
    checks = {c["name"]: c for c in report(folder)["checks"]}
    assert "requests 2-10 each 40 ms of delayed-ACK timer" in " ".join(checks["request_latency"]["expected"].split())
    assert "nagle_held after a delayed_ack in requests 2-10" in " ".join(checks["nagle_holds_second_write"]["observed"].split())
    assert "(delayed_ack)" in checks["quickack_at_start"]["observed"]


@pytest.mark.parametrize("variant", ["nodelay", "writes1", "quickack"])
def test_each_remedy_makes_every_request_fast(runs, variant):
    folder = runs[variant]
    assert verdicts(folder) == dict.fromkeys(CHECKS, True)
    ms = latencies(folder)
    assert len(ms) == 10 and max(ms) < 5, ms  # 0.05-0.25 ms measured
    assert "requests 1-10 fast" in " ".join(next(c for c in report(folder)["checks"] if c["name"] == "request_latency")["expected"].split())


# Every other variant claimed: which checks must fail (each at least one; every check fails somewhere).
FAILS = {
    ("default", "nodelay"): {"request_latency", "nagle_holds_second_write"},
    ("default", "writes1"): {"request_latency", "nagle_holds_second_write"},
    ("default", "quickack"): {"request_latency", "nagle_holds_second_write", "quickack_at_start"},
    ("nodelay", "default"): {"request_latency", "nagle_holds_second_write", "quickack_at_start"},
    ("nodelay", "writes1"): {"nagle_holds_second_write"},
    ("nodelay", "quickack"): {"nagle_holds_second_write"},
    ("writes1", "default"): {"request_latency", "nagle_holds_second_write", "quickack_at_start"},
    ("writes1", "nodelay"): {"nagle_holds_second_write"},
    ("writes1", "quickack"): {"nagle_holds_second_write"},
    ("quickack", "default"): {"request_latency", "nagle_holds_second_write", "quickack_at_start"},
    ("quickack", "nodelay"): {"nagle_holds_second_write"},
    ("quickack", "writes1"): {"nagle_holds_second_write"},
}


@pytest.mark.parametrize("ran, claimed", sorted(FAILS))
def test_a_run_judged_as_another_variant_fails(runs, tmp_path, ran, claimed):
    folder = edit_manifest(copy_results(runs[ran], tmp_path / "c"), **VARIANTS[claimed])
    r = invoke("check", str(folder))
    assert r.returncode == 1, r.stdout
    failed = {n for n, ok in verdicts(folder).items() if not ok}
    assert failed == FAILS[(ran, claimed)], report(folder)["checks"]


def test_a_capture_whose_timer_fired_early_fails(runs, tmp_path):
    """The default run's capture with every gap halved: the delayed ACKs come after ~22 ms, sooner than
    the 40 ms timer can fire."""
    folder = copy_results(runs["default"], tmp_path / "c")
    pkts = rdpcap(str(folder / "source.pcap"))
    t0 = float(pkts[0].time)
    for p in pkts:
        p.time = t0 + (float(p.time) - t0) / 2
    wrpcap(str(folder / "source.pcap"), pkts)
    assert invoke("check", str(folder)).returncode == 1
    v = verdicts(folder)
    assert not v["request_latency"] and not v["nagle_holds_second_write"] and not v["quickack_at_start"]
    assert v["connection_established"]


def test_a_log_naming_another_connection_fails(runs, tmp_path):
    folder = copy_results(runs["default"], tmp_path / "c")
    log = folder / "client.log"
    events = [json.loads(l) for l in log.read_text().splitlines()]
    for e in events:
        if e["event"] == "connected":
            e["local_port"] += 1
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert invoke("check", str(folder)).returncode == 1
    assert not any(ok for n, ok in verdicts(folder).items())


def test_request_times_for_sweeps_and_kernels(runs):
    figures, problems = measures.run(runs["default"])
    assert problems == []
    assert figures["requests"]["delayed requests (count)"] == 9 == figures["requests"]["model: delayed requests (count)"]
    assert 39 <= figures["medians"]["median delayed request"] <= 50
    assert 39 <= figures["medians"]["median delayed ACK"] <= 50 and figures["medians"]["model: delayed ACK"] == 40
    assert figures["request latency"]["request 1"] < 5 and figures["request latency"]["model: request 2"] > 40
    fast, _ = measures.run(runs["nodelay"])
    assert fast["requests"]["delayed requests (count)"] == 0 == fast["requests"]["model: delayed requests (count)"]


def test_a_sweep_of_requests_compares_the_runs(tmp_path):
    r = up(EX, "e2enasw", ["requests=3,6"], tmp_path / "s")
    assert r.returncode == 0, r.stdout + r.stderr
    comparison = json.loads((tmp_path / "s" / "comparison.json").read_text())
    assert "delayed requests (count)" in json.dumps(comparison)


def test_labels_agree_with_wireshark(runs):
    """Every flag tshark and tcplab both know agrees frame by frame on both captures of each variant; and our
    delayed_ack frames are exactly the pure ACKs Wireshark times at 35 ms or more after the data they acknowledge."""
    for folder in runs.values():
        for pcap in (folder / "source.pcap", folder / "observer.pcap"):
            assert disagreements(pcap) == {name: [] for name in COMPARED}, pcap
            out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "tcp.analysis.ack_rtt >= 0.035 && tcp.len == 0",
                                  "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, check=True).stdout
            theirs = sorted(int(x) for x in out.split())
            flow = tf.analyze_file(pcap)[0]
            ours = sorted(int(flow.table.index[flow.rows][k]) for k in flow.where(tf.DELAYED_ACK))
            assert ours == theirs, pcap
    n = len(tf.analyze_file(runs["default"] / "source.pcap")[0].where(tf.DELAYED_ACK))
    assert n == 9


def test_nagle_held_is_the_segment_right_after_the_ack_of_the_first(runs):
    for pcap in (runs["default"] / "source.pcap", runs["default"] / "observer.pcap"):
        flow = tf.analyze_file(pcap)[0]
        held = flow.where(tf.NAGLE_HELD)
        # One per delayed request (2-10): the second segment, right after the server's delayed ACK of the first.
        # Request 1's quick ACK comes some 20 us after its first segment, often before the program's second
        # write: then nothing was held, and the label (rightly) may be missing there.
        delayed = flow.where(tf.DELAYED_ACK)
        assert len(delayed) == 9 and all(k + 1 in held.tolist() for k in delayed.tolist()), pcap
        assert len(held) in (9, 10), pcap
        for k in held.tolist():
            assert not flow.from_server[k] and flow.from_server[k - 1] and flow.rel_ack[k - 1] == flow.rel_seq[k]
    # With one write per request there is nothing to hold.
    assert len(tf.analyze_file(runs["writes1"] / "source.pcap")[0].where(tf.NAGLE_HELD)) == 0


def test_in_docker_as_on_namespaces(tmp_path):
    r = up(EX, "e2enadk", [], tmp_path / "r", "--backend", "docker")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["backend"] == "docker"
    assert verdicts(tmp_path / "r") == dict.fromkeys(CHECKS, True)
    ms = latencies(tmp_path / "r")
    assert ms[0] < 5 and 39 <= statistics.median(ms[1:]) <= 50


def test_by_hand_in_tmux(person, tmp_path):  # noqa: F811  (the fixture)
    """The three steps typed at shells on source and dest; `finish` judges them with the same checks."""
    p = person("honagle", EX, ["requests=5"])
    flat = " ".join(p.started.split())
    assert "python3 client.py --host 10.0.1.2 --port 9100 --nodelay 0 --writes 2 --size 200 --requests 5" in flat
    for n, (shell, host) in enumerate((("capture", "source"), ("server", "dest"), ("client", "source")), 1):
        p.type(shell, host, p.commands[n - 1])
        wait_step(p.lab, n)
    screen = p.tmux.wait_for(p.shells["client"], "5 requests, median")
    assert "request 2: reply after 4" in screen  # ~44 ms
    r = p.finish(tmp_path / "r")
    assert r.returncode == 0, r.stdout + r.stderr
    v = verdicts(tmp_path / "r")
    assert v == dict.fromkeys(CHECKS | {"student_capture"}, True), report(tmp_path / "r")["checks"]
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["mode"] == "hands-on" and m["parameters"]["requests"] == 5 and m["parameters"]["nodelay"] == 0


def test_a_remedy_typed_where_the_lab_assigned_none_fails_with_its_hint(person, tmp_path):  # noqa: F811  (the fixture)
    """`start --strict`: the lab's values are judged, not what was typed. TCP_NODELAY typed anyway makes every
    request fast, where the lab's variant wants the delayed-ACK timer; the hint says what to type instead."""
    p = person("honaglex", EX, ["requests=4"], "--strict")
    for n, (shell, host) in enumerate((("capture", "source"), ("server", "dest"), ("client", "source")), 1):
        line = p.commands[n - 1].replace("--nodelay 0", "--nodelay 1") if n == 3 else p.commands[n - 1]
        p.type(shell, host, line)
        wait_step(p.lab, n)
    p.tmux.wait_for(p.shells["client"], "4 requests, median")
    r = p.finish(tmp_path / "r")
    assert r.returncode == 1, r.stdout
    checks = {c["name"]: c for c in report(tmp_path / "r")["checks"]}
    assert not checks["request_latency"]["passed"] and not checks["nagle_holds_second_write"]["passed"]
    said = checks["request_latency"]["hint"]
    assert "nodelay=0 (your lab's value)" in said and "run the client with --nodelay 0 (step 3)" in said, said
