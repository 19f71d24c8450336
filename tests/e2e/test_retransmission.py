"""retransmission-timeout on real namespaces and containers: tcp_retries2 and TCP_USER_TIMEOUT with data
in flight, each check failing on a real folder where it should, a sweep over the user timeout, Wireshark's
agreement, and the exercise typed by hand into tmux."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from scapy.all import rdpcap, wrpcap

from tests.wireshark import COMPARED, disagreements

from .conftest import copy_results, edit_manifest, invoke, report, run_ok, up, verdicts
from .test_handson import handson_record, person, wait_step  # noqa: F401  (the fixture)

EX = "retransmission-timeout"
CHECKS = {"connection_established", "tail_loss_probe", "rto_backoff", "retransmission_abort"}


@pytest.fixture(scope="module")
def retries(tmp_path_factory) -> Path:
    return run_ok(tmp_path_factory, EX, "e2erto", ["retries2=3", "pause=0.5"])


@pytest.fixture(scope="module")
def user_timeout(tmp_path_factory) -> Path:
    return run_ok(tmp_path_factory, EX, "e2erto", ["user_timeout=1500", "pause=0.5"])


def detail(folder: Path, check: str) -> str:
    return next(c["detail"] for c in report(folder)["checks"] if c["name"] == check)


def figures(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text()).get("measures") or {}


def test_retries2_run_passes_with_a_probe_four_rto_retransmissions_and_etimedout(retries):
    v = verdicts(retries)
    assert set(v) == CHECKS and all(v.values()), v
    obs = {c["name"]: c["observed"] for c in report(retries)["checks"]}
    assert "4 RTO retransmissions" in obs["rto_backoff"] and "ETIMEDOUT" in obs["retransmission_abort"]
    assert "no RST" in obs["retransmission_abort"]
    # the namespace had the exercise's tcp_retries2, and the host's own is untouched
    manifest = json.loads((retries / "manifest.json").read_text())
    assert manifest["sysctls"]["source"]["net.ipv4.tcp_retries2"] == "3"
    assert Path("/proc/sys/net/ipv4/tcp_retries2").read_text().strip() == "15"


def test_user_timeout_run_aborts_at_first_rto_plus_u(user_timeout):
    v = verdicts(user_timeout)
    assert all(v.values()), v
    obs = {c["name"]: c["observed"] for c in report(user_timeout)["checks"]}
    # U=1500 ms from the first RTO retransmission (about 0.41 s): 1.9 s after the request, 3 RTO retransmissions
    assert "3 RTO retransmissions" in obs["rto_backoff"]
    at = float(obs["retransmission_abort"].split("ETIMEDOUT at ")[1].split(" s")[0])
    assert 1.9 < at < 2.1


def test_every_label_wireshark_also_has_agrees_with_tshark(retries, user_timeout):
    for folder in (retries, user_timeout):
        for capture in ("source", "observer"):
            assert disagreements(folder / f"{capture}.pcap") == {name: [] for name in COMPARED}


def test_abort_and_backoff_fail_when_the_folder_claims_another_retries2(retries, tmp_path):
    folder = edit_manifest(copy_results(retries, tmp_path / "c"), retries2=5)
    assert invoke("check", str(folder)).returncode == 1
    v = verdicts(folder)
    assert v["rto_backoff"] is False and v["retransmission_abort"] is False and v["tail_loss_probe"] is True
    assert "5 RTO retransmissions" in report(folder)["checks"][2]["expected"] or "where 5 fit" in detail(folder, "rto_backoff")


def test_a_retries2_run_fails_as_a_user_timeout_run(retries, tmp_path):
    folder = edit_manifest(copy_results(retries, tmp_path / "c"), user_timeout=1500)
    assert invoke("check", str(folder)).returncode == 1
    assert verdicts(folder)["retransmission_abort"] is False and verdicts(folder)["rto_backoff"] is False


def rewrite(folder: Path, capture: str, change) -> None:
    pkts = rdpcap(str(folder / f"{capture}.pcap"))
    wrpcap(str(folder / f"{capture}.pcap"), change(pkts))


def test_tail_loss_probe_fails_when_the_probe_is_cut_from_the_capture(retries, tmp_path):
    folder = copy_results(retries, tmp_path / "c")
    from lab.analysis import tcpflow as tf
    (flow,) = tf.analyze_file(folder / "source.pcap")
    probe = flow.first(tf.TAIL_LOSS_PROBE)
    assert probe is not None
    rewrite(folder, "source", lambda pkts: [p for i, p in enumerate(pkts, 1) if i != probe.seg.index])
    assert invoke("check", str(folder)).returncode == 1
    assert verdicts(folder)["tail_loss_probe"] is False


def test_abort_fails_with_an_rst_on_the_wire_or_another_errno(retries, tmp_path):
    folder = copy_results(retries, tmp_path / "c")

    def add_rst(pkts):
        last = [p for p in pkts if p["IP"].src == "10.0.1.1"][-1].copy()
        last["TCP"].flags = "R"
        last["TCP"].remove_payload()
        del last["IP"].len, last["IP"].chksum, last["TCP"].chksum
        last.time = float(last.time) + 0.5
        return list(pkts) + [last]

    rewrite(folder, "source", add_rst)
    assert invoke("check", str(folder)).returncode == 1
    assert verdicts(folder)["retransmission_abort"] is False
    assert "RST from the client" in detail(folder, "retransmission_abort")

    folder = copy_results(retries, tmp_path / "d")
    log = folder / "client.log"
    log.write_text(log.read_text().replace('"error": "ETIMEDOUT"', '"error": "ECONNRESET"'))
    assert invoke("check", str(folder)).returncode == 1
    assert verdicts(folder)["retransmission_abort"] is False
    assert "not ETIMEDOUT" in detail(folder, "retransmission_abort")


def test_a_sweep_over_the_user_timeout_draws_the_abort_against_u(tmp_path):
    r = invoke("up", EX, "--lab", "e2ertos", "--results", str(tmp_path / "s"), "--set", "user_timeout=600,1200", "--set", "pause=0.5",
               timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    comparison = json.loads((tmp_path / "s" / "comparison.json").read_text())
    aborts = [run["figures"]["abort"] for run in comparison["runs"]]
    # each abort is first RTO retransmission + U: 600 ms apart, with the model beside it
    measured = [a["abort (ETIMEDOUT)"] for a in aborts]
    model = [a["model: abort (ETIMEDOUT)"] for a in aborts]
    assert 500 < measured[1] - measured[0] < 700, measured
    assert all(0 <= m - n < 250 for m, n in zip(measured, model)), (measured, model)
    assert (tmp_path / "s" / "comparison.png").stat().st_size > 10_000


def test_in_containers_as_on_namespaces(tmp_path):
    r = up(EX, "e2edkrto", ["user_timeout=1000", "pause=0.5"], tmp_path / "r", "--backend", "docker")
    assert r.returncode == 0, r.stdout + r.stderr
    v = verdicts(tmp_path / "r")
    assert set(v) == CHECKS and all(v.values())


def test_by_hand_in_tmux(person, tmp_path):  # noqa: F811  (the fixture)
    p = person("horto", EX, ["retries2=2", "pause=0.5"])
    for n, (shell, host) in enumerate([("capture", "source"), ("server", "dest"), ("client", "source"), ("firewall", "dest")], 1):
        p.type(shell, host, p.commands[n - 1])
        wait_step(p.lab, n)
    # While the kernel resends, the lab's live view names each resend and the model's next one.
    deadline, seen = time.monotonic() + 20, ""
    while time.monotonic() < deadline and "RTO retransmission" not in seen:
        seen = (handson_record(p.lab).get("live") or {}).get("next", "")
        time.sleep(0.1)
    assert "after the lost request" in seen, seen
    p.tmux.wait_for(p.shells["client"], "ETIMEDOUT", timeout=30)
    wait_step(p.lab, 5)
    live = handson_record(p.lab)["live"]
    assert any("tail loss probe: the request sent again" in text for _, text in live["events"]), live["events"]
    assert {"tail-loss-probe", "rto-retransmission"} <= {seg["kind"] for seg in live["wire"]["segments"]}
    r = p.finish(tmp_path / "r")
    assert r.returncode == 0, r.stdout + r.stderr
    v = verdicts(tmp_path / "r")
    assert set(v) == CHECKS | {"student_capture"} and all(v.values()), v  # the person's own capture is judged too


def test_the_client_stopped_before_its_kernel_gave_up_fails_with_its_hint(person, tmp_path):  # noqa: F811  (the fixture)
    p = person("horto2", EX, ["retries2=5", "pause=0.5"])
    for n, (shell, host) in enumerate([("capture", "source"), ("server", "dest"), ("client", "source"), ("firewall", "dest")], 1):
        p.type(shell, host, p.commands[n - 1])
        wait_step(p.lab, n)
    p.tmux.wait_for(p.shells["client"], "reply in", timeout=10)
    time.sleep(2.5)  # the probe and a few RTO retransmissions, far from the abort at about 13 s
    p.tmux.keys(p.shells["client"], "C-c")
    p.tmux.wait_for(p.shells["client"], "interrupted (Ctrl-C)")
    r = p.finish(tmp_path / "r")
    assert r.returncode == 1, r.stdout + r.stderr
    abort = next(c for c in report(tmp_path / "r")["checks"] if c["name"] == "retransmission_abort")
    assert abort["passed"] is False and "the client was stopped (Ctrl-C?) before its kernel gave up" in abort["hint"], abort
