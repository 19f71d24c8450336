"""The impairment layer on real namespaces and containers: a configured one-way delay gives the RTT
it should (netem where the kernel has it, the user-space delay line where not), loss drops about the
share it should, and removing the impairment gives the baseline back."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, invoke, up, verdicts

RTT = str(REPO / "tests" / "e2e" / "rtt")


def kernel_has_netem() -> bool:
    """Asked the same way the lab asks, in a scratch namespace of the test's own."""
    ns = "tcplab-netemprobe-x"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        r = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "0ms"], capture_output=True)
        return r.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", ns])


@pytest.fixture(scope="module")
def method() -> str:
    return "netem" if kernel_has_netem() else "delay-line"


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.parametrize("backend", ["netns", "docker"])
def test_a_delay_gives_its_rtt_and_goes_away(backend, method, tmp_path):
    r = up(RTT, f"imp{backend}", ["delay=10"], tmp_path / "run", "--backend", backend)
    assert r.returncode == 0, r.stdout + r.stderr
    assert verdicts(tmp_path / "run") == {"rtt_follows_delay": True}  # both (before/during, before/after) passed
    history = manifest(tmp_path / "run")["impairments"]
    assert [h["method"] for h in history] == [method, "none"]  # unimpair leaves nothing applied
    assert history[0]["impairments"] == [{"src": "source", "dst": "dest", "delay_ms": 10.0, "loss": 0.0, "rate_mbit": 0.0},
                                         {"src": "dest", "dst": "source", "delay_ms": 10.0, "loss": 0.0, "rate_mbit": 0.0}]
    assert history[1]["impairments"] == []
    if method == "delay-line":
        summary = history[0]["summary"]
        assert [d["in"] for d in summary["directions"]] == ["source-eth0", "dest-eth0"]
        assert all(d["relayed"] > 40 and d["lost"] == 0 and d["send_errors"] == 0 for d in summary["directions"])
        assert "impair (delay-line): source -> dest: 10 ms; dest -> source: 10 ms" in r.stdout


def test_a_longer_delay_one_way_only(tmp_path):
    """direction: one delays source -> dest alone: the RTT grows by the delay once."""
    ex = tmp_path / "oneway"
    ex.mkdir()
    (ex / "rtt.py").write_text((Path(RTT) / "rtt.py").read_text())
    text = (Path(RTT) / "exercise.yml").read_text()
    text = text.replace('delay_ms: "{delay}", loss: "{loss}"}', 'delay_ms: "{delay}", loss: "{loss}", direction: one}')
    text = text.replace('    delay_ms: "{delay}"\n', '    delay_ms: "{delay}"\n    ways: 1\n')
    (ex / "exercise.yml").write_text(text)
    r = up(str(ex), "imponeway", ["delay=40", "count=10"], tmp_path / "run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert manifest(tmp_path / "run")["impairments"][0]["impairments"] == [{"src": "source", "dst": "dest", "delay_ms": 40.0, "loss": 0.0, "rate_mbit": 0.0}]


def test_loss_drops_about_its_share(method, tmp_path):
    if method != "delay-line":
        pytest.skip("the drop counts come from the delay line; netem counts its own (tc -s qdisc)")
    r = up(RTT, "imploss", ["delay=1", "loss=5", "count=60"], tmp_path / "run")
    summary = manifest(tmp_path / "run")["impairments"][0]["summary"]
    relayed = sum(d["relayed"] for d in summary["directions"])
    dropped = sum(d["lost"] for d in summary["directions"])
    assert relayed > 300, r.stdout
    assert 0.01 <= dropped / (relayed + dropped) <= 0.12, (dropped, relayed)


def test_kept_lab_keeps_no_impairment_running(tmp_path):
    lab = "impkeep"
    r = up(RTT, lab, ["delay=5", "count=5"], tmp_path / "run", "--keep")
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        ns = f"tcplab-{lab}-observer"
        tables = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"], capture_output=True, text=True).stdout
        assert f"tcplab_{lab}_delay" not in tables
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        assert pids == [], f"still running in the observer: {pids}"
    finally:
        invoke("down", "--lab", lab)


def test_impairments_from_the_topology_file_hold_from_the_start(method, tmp_path):
    import statistics

    import yaml

    ex = tmp_path / "fromtopo"
    ex.mkdir()
    (ex / "rtt.py").write_text((Path(RTT) / "rtt.py").read_text())
    topo = yaml.safe_load((REPO / "topologies" / "default.yml").read_text())
    topo["impairments"] = [{"from": "source", "to": "dest", "delay_ms": 15}]
    (ex / "slow.yml").write_text(yaml.safe_dump(topo))
    text = (Path(RTT) / "exercise.yml").read_text().split("timeline:")[0]
    text += """timeline:
  - start: server
  - wait: {program: server, event: listening, timeout: 5}
  - start: during
  - wait_exit: {program: during, timeout: 30}
  - stop: server
  - collect:
checks:
  - {check: rtt_follows_delay, program: during, delay_ms: 15}
"""
    (ex / "exercise.yml").write_text("topology: slow.yml\n" + text)
    r = up(str(ex), "imptopo", ["count=10"], tmp_path / "run")
    assert r.returncode == 0, r.stdout + r.stderr
    echo = statistics.median(json.loads((tmp_path / "run" / "during.log").read_text())["echo_ms"])
    assert 30 <= echo <= 32, echo
    first = manifest(tmp_path / "run")["timeline"][0]
    assert first["step"] == "impair" and first["from_topology"] is True and first["method"] == method


@pytest.mark.parametrize("rate", [8, 40])
def test_a_rate_caps_the_transfer(rate, method, tmp_path):
    """tcp-states with a rate on its impairment: 1 MB through an 8 (or 40) Mbit/s link takes at least
    1 s (0.2 s), and TCP fills the link: the reader sees most of the rate."""
    import shutil

    mine = tmp_path / "rated"
    shutil.copytree(REPO / "exercises" / "tcp-states", mine)
    text = (mine / "exercise.yml").read_text()
    text = text.replace('delay_ms: "{latency}"}', 'delay_ms: "{latency}", rate_mbit: "{rate}"}', 1)
    text = text.replace("parameters:\n", 'parameters:\n  rate: {type: float, default: 0, min: 0, help: "link rate, Mbit/s"}\n', 1)
    (mine / "exercise.yml").write_text(text)
    r = up(str(mine), f"rate{rate}", ["latency=1", "total=1000000", f"rate={rate}"], tmp_path / "run")
    assert r.returncode == 0, r.stdout + r.stderr
    closed = next(json.loads(l) for l in (tmp_path / "run" / "reader.log").read_text().splitlines() if '"closed"' in l)
    mbit = closed["bytes"] * 8 / closed["seconds"] / 1e6
    # Headers take their share of the link (about 4% at 1448-byte segments); slow start the first round trips.
    assert 0.75 * rate <= mbit <= rate, mbit
    impaired = [h for h in manifest(tmp_path / "run")["impairments"] if h["impairments"]][0]
    assert {i["rate_mbit"] for i in impaired["impairments"]} == {rate} and impaired["method"] == method
    if method == "delay-line":
        assert [d["rate_mbit"] for d in impaired["summary"]["directions"]] == [rate, rate]
