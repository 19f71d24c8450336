"""exercise1 and exercise2 on real network namespaces, real tcpdump and the real kernel's keepalive."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from scapy.layers import inet, l2  # noqa: F401  (registers Ethernet, IP and TCP, which rdpcap needs)
from scapy.utils import rdpcap, wrpcap

from .conftest import (
    EX1_FAST, EX2_FAST, assert_lab_gone, run_ok, copy_results, edit_manifest, invoke, namespaces, report, start, up,
    verdicts, wait_for_event, with_sets,
)


@pytest.fixture(scope="module")
def ex1(tmp_path_factory) -> Path:
    return run_ok(tmp_path_factory, "exercise1", "e2eone", EX1_FAST)


@pytest.fixture(scope="module")
def ex2(tmp_path_factory) -> Path:
    return run_ok(tmp_path_factory, "exercise2", "e2etwo", EX2_FAST)


def test_exercise1_passes_and_leaves_a_complete_results_folder(ex1):
    assert report(ex1)["passed"] is True
    assert set(verdicts(ex1)) == {"connection_established", "keepalive_probes", "keepalive_abort"}
    names = {p.name for p in ex1.iterdir()}
    assert {"manifest.json", "report.json", "source.pcap", "observer.pcap", "client.log", "server.log"} <= names
    m = json.loads((ex1 / "manifest.json").read_text())
    assert m["parameters"]["keepcnt"] == 2 and m["backend"] == "netns"
    assert m["kernel"]["release"] and m["kernel"]["hz"]
    assert m["sysctls"]["source"]["net.ipv4.tcp_keepalive_time"] == "7200"
    assert all(c["packets_captured"] > 0 for c in m["captures"])
    probes = next(c for c in report(ex1)["checks"] if c["name"] == "keepalive_probes")
    assert probes["observed"].startswith("2 probes")
    # The client's recv() really failed with ETIMEDOUT.
    assert '"error": "ETIMEDOUT"' in (ex1 / "client.log").read_text()


def test_observer_sees_every_frame_of_the_connection(ex1):
    src = [bytes(p.payload) for p in rdpcap(str(ex1 / "source.pcap"))]
    obs = [bytes(p.payload) for p in rdpcap(str(ex1 / "observer.pcap"))]
    # Everything source put on the wire crossed the bridge (the RST too); dest's replies stop at the drop.
    assert src == obs


def test_check_on_the_folder_gives_the_same_verdict(ex1):
    before = report(ex1)
    r = invoke("check", str(ex1))
    assert r.returncode == 0, r.stdout
    assert report(ex1) == before
    assert r.stdout.strip().splitlines()[-1] == f"results: {ex1}"


def test_exercise2_user_timeout_decides(ex2):
    assert report(ex2)["passed"] is True
    assert verdicts(ex2)["user_timeout_decides"] is True
    probes = next(c for c in report(ex2)["checks"] if c["name"] == "keepalive_probes")
    assert probes["observed"].startswith("2 probes")  # KEEPCNT is 5


def test_the_verdict_reads_in_an_80_column_terminal(ex2):
    """One block per check at 80 columns (the four-column table wrapped its expected column word by
    word, some 60 lines for 4 checks); the table from 120 columns; the full text in report.json."""
    narrow = invoke("check", str(ex2), env={**os.environ, "COLUMNS": "80"})
    assert narrow.returncode == 0, narrow.stdout
    lines = narrow.stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("exercise2 on netns"))
    end = next(i for i, l in enumerate(lines) if l.startswith("PASSED 4/4 checks"))
    assert end - start <= 30, "\n".join(lines[start:end])
    assert [l for l in lines if len(l) > 80] == []
    assert "PASS keepalive_probes" in lines and "┃" not in narrow.stdout
    flat = " ".join(narrow.stdout.split())
    for check in report(ex2)["checks"]:
        assert " ".join(check["expected"].split()) in flat and " ".join(check["observed"].split()) in flat
    wide = invoke("check", str(ex2), env={**os.environ, "COLUMNS": "160"})
    assert "┃ check" in wide.stdout and [l for l in wide.stdout.splitlines() if len(l) > 160] == []


def test_exercise2_user_timeout_can_also_give_more_probes_than_keepcnt(tmp_path):
    r = up("exercise2", "e2emore", ["keepidle=1", "keepintvl=1", "keepcnt=2", "user_timeout=4000"], tmp_path / "r")
    assert r.returncode == 0, r.stdout
    probes = next(c for c in report(tmp_path / "r")["checks"] if c["name"] == "keepalive_probes")
    assert probes["observed"].startswith("3 probes")


def test_a_run_whose_parameters_make_a_check_fail(tmp_path):
    # U=3000 with T=1 I=1 gives ceil(2/1) = 2 probes, which is also KEEPCNT: the packets cannot show which decided.
    r = up("exercise2", "e2efail", ["keepidle=1", "keepintvl=1", "keepcnt=2", "user_timeout=3000"], tmp_path / "r")
    assert r.returncode == 1, r.stdout
    v = verdicts(tmp_path / "r")
    assert v == {"connection_established": True, "keepalive_probes": True, "keepalive_abort": True, "user_timeout_decides": False}
    assert "FAILED 3/4 checks" in r.stdout


# Each check fails on a real capture where it should: the folder from one run, re-checked as if the
# parameters had been others, or with evidence removed.


def test_probe_and_abort_checks_fail_under_other_parameters(ex1, tmp_path):
    folder = edit_manifest(copy_results(ex1, tmp_path / "c"), keepcnt=3)
    r = invoke("check", str(folder))
    assert r.returncode == 1
    v = verdicts(folder)
    assert v["keepalive_probes"] is False and v["keepalive_abort"] is False and v["connection_established"] is True


def test_probe_timing_fails_under_another_interval(ex1, tmp_path):
    folder = edit_manifest(copy_results(ex1, tmp_path / "c"), keepidle=2, keepintvl=1)
    assert invoke("check", str(folder)).returncode == 1
    assert verdicts(folder)["keepalive_probes"] is False
    detail = next(c["detail"] for c in report(folder)["checks"] if c["name"] == "keepalive_probes")
    assert "first probe at 1.0" in detail


def drop_packets(folder: Path, capture: str, drop) -> None:
    pkts = rdpcap(str(folder / f"{capture}.pcap"))
    wrpcap(str(folder / f"{capture}.pcap"), [p for p in pkts if not drop(p)])


def test_connection_check_fails_without_the_handshake(ex1, tmp_path):
    folder = copy_results(ex1, tmp_path / "c")
    drop_packets(folder, "source", lambda p: "S" in str(p["TCP"].flags))
    assert invoke("check", str(folder)).returncode == 1
    assert verdicts(folder)["connection_established"] is False


def test_abort_check_fails_without_the_rst_or_with_another_error(ex1, tmp_path):
    folder = copy_results(ex1, tmp_path / "c")
    drop_packets(folder, "source", lambda p: "R" in str(p["TCP"].flags))
    assert invoke("check", str(folder)).returncode == 1
    assert verdicts(folder)["keepalive_abort"] is False

    folder = copy_results(ex1, tmp_path / "d")
    log = folder / "client.log"
    log.write_text(log.read_text().replace('"ETIMEDOUT"', '"ECONNRESET"'))
    assert invoke("check", str(folder)).returncode == 1
    assert verdicts(folder)["keepalive_abort"] is False


def test_user_timeout_check_fails_on_a_capture_where_keepcnt_decided(ex1, tmp_path):
    # exercise1's run (no user timeout, KEEPCNT=2) re-checked as exercise2 with U=5000 ms, which would allow 4 probes.
    folder = copy_results(ex1, tmp_path / "c")
    m = json.loads((folder / "manifest.json").read_text())
    m["parameters"]["user_timeout"] = 5000
    m["checks"].append({"check": "user_timeout_decides", "capture": "source", "client": "client", "keepidle": "{keepidle}",
                        "keepintvl": "{keepintvl}", "keepcnt": "{keepcnt}", "user_timeout": "{user_timeout}"})
    (folder / "manifest.json").write_text(json.dumps(m))
    assert invoke("check", str(folder)).returncode == 1
    assert verdicts(folder)["user_timeout_decides"] is False


# Lifecycle: interrupts, kills, parallel labs, kept labs.


def test_ctrl_c_during_up_tears_the_lab_down(tmp_path):
    lab = "e2eintr"
    p = start(*with_sets("exercise1", lab, ["keepidle=30"], "--results", str(tmp_path / "r")))
    state = wait_for_event(lab, "client", "source", "waiting")
    pids = [proc["pid"] for proc in state["processes"]]
    assert len(namespaces(lab)) == 3 and len(pids) == 4
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    assert p.returncode != 0, out
    assert "interrupted" in out
    assert_lab_gone(lab, pids)
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["timeline_error"] == "interrupted"


def test_down_after_sigkill_leaves_nothing(tmp_path):
    lab = "e2ekill"
    p = start(*with_sets("exercise1", lab, ["keepidle=30"], "--results", str(tmp_path / "r")))
    state = wait_for_event(lab, "client", "source", "waiting")
    pids = [proc["pid"] for proc in state["processes"]]
    p.kill()
    p.wait(timeout=10)
    assert len(namespaces(lab)) == 3  # SIGKILL gave `up` no chance to clean
    assert "left over" in invoke("status").stdout
    r = invoke("down", "--lab", lab)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_lab_gone(lab, pids)
    again = invoke("down", "--lab", lab)
    assert again.returncode == 0 and "nothing left to remove" in again.stdout


def test_two_labs_side_by_side_with_the_same_addresses(tmp_path):
    a = start(*with_sets("exercise1", "e2epara", EX1_FAST, "--results", str(tmp_path / "a")))
    b = start(*with_sets("exercise2", "e2eparb", EX2_FAST, "--results", str(tmp_path / "b")))
    wait_for_event("e2epara", "client", "source", "waiting")
    wait_for_event("e2eparb", "client", "source", "waiting")
    assert len(namespaces("e2epara")) == 3 and len(namespaces("e2eparb")) == 3
    out_a, _ = a.communicate(timeout=60)
    out_b, _ = b.communicate(timeout=60)
    assert a.returncode == 0, out_a
    assert b.returncode == 0, out_b
    assert report(tmp_path / "a")["passed"] and report(tmp_path / "b")["passed"]
    assert namespaces("e2epara") == [] and namespaces("e2eparb") == []


def test_keep_leaves_the_lab_up_until_down(tmp_path):
    lab = "e2ekeep"
    r = up("exercise1", lab, EX1_FAST, tmp_path / "r", "--keep")
    assert r.returncode == 0, r.stdout
    assert len(namespaces(lab)) == 3
    assert "kept up" in invoke("status").stdout
    again = up("exercise1", lab, EX1_FAST, tmp_path / "r2")
    assert again.returncode == 2 and f"invoke down --lab {lab}" in again.stdout + again.stderr
    assert invoke("down", "--lab", lab).returncode == 0
    assert namespaces(lab) == []


def test_a_failed_build_is_torn_down_even_with_keep(tmp_path):
    lab = "e2ehalf"
    subprocess.run(["ip", "netns", "add", f"tcplab-{lab}-dest"], check=True)  # in the way of the lab's own
    try:
        r = up("exercise1", lab, EX1_FAST, tmp_path / "r", "--keep")
        assert r.returncode == 2 and "already exists" in r.stdout + r.stderr
        assert namespaces(lab) == [f"tcplab-{lab}-dest"]  # the lab's own two were removed; the stranger stays
        assert "kept" not in invoke("status").stdout
        assert not (tmp_path / "r").exists()
    finally:
        subprocess.run(["ip", "netns", "del", f"tcplab-{lab}-dest"])
