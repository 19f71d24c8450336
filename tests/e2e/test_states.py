"""tcp-states on real namespaces and containers: the kernel's traced transitions, their causes, the
handshake against the configured latency, and the trace against the packets; the lab's tracefs
instance and mount gone afterwards, also after SIGKILL and `down`."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import STATE_ROOT, copy_results, invoke, sigkill_when, start, up, verdicts, with_sets

CHECKS = {"state_transitions (client)", "state_transitions (server)", "handshake_rtt", "trace_agrees_with_pcap"}
SMALL = ["total=200000"]


def tracefs_leftovers(lab: str) -> list[str]:
    mounts = [l for l in Path("/proc/mounts").read_text().splitlines() if f"{lab}.tracefs" in l]
    instances = [str(p) for root in (Path("/sys/kernel/tracing"), STATE_ROOT / f"{lab}.tracefs")
                 for p in (root / "instances").glob(f"tcplab_{lab}") if (root / "instances").is_dir()]
    return mounts + instances


@pytest.mark.parametrize("backend, latency", [("netns", 10), ("netns", 0), ("netns", 25), ("docker", 10)])
def test_transitions_causes_and_handshake(backend, latency, tmp_path):
    lab = f"st{backend}{latency}"
    r = up("tcp-states", lab, [*SMALL, f"latency={latency}"], tmp_path / "run", "--backend", backend)
    assert r.returncode == 0, r.stdout + r.stderr
    assert verdicts(tmp_path / "run") == dict.fromkeys(CHECKS, True)
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    # One trace: the kernel every host shares.
    assert m["state_trace"]["port"] == 9100
    assert [(t["file"], t["host"], len(t["clock"])) for t in m["state_trace"]["traces"]] == [("states.trace", None, 2)]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    tables = {c["name"]: c["table"] for c in report["checks"] if "table" in c}
    # The timeline's packet column: the segment each transition matched, as the examples name them.
    client = {(r[1], r[2]): r[4] for r in tables["state_transitions (client)"]["rows"]}
    server = {(r[1], r[2]): r[4] for r in tables["state_transitions (server)"]["rows"]}
    assert client[("CLOSE", "SYN_SENT")].startswith("connect(), Tx SYN (+")
    assert client[("SYN_SENT", "ESTABLISHED")].startswith("Rx SYN+ACK (-")
    assert client[("ESTABLISHED", "FIN_WAIT1")].startswith("close(), Tx FIN (+")
    assert client[("FIN_WAIT1", "FIN_WAIT2")].startswith("Rx ACK of our FIN (")
    assert client[("FIN_WAIT2", "TIME_WAIT")].startswith("Rx FIN, Tx ACK (TIME_WAIT inferred")
    assert server[("LISTEN", "SYN_RECV")].startswith("Rx ACK of our SYN+ACK (")
    assert server[("ESTABLISHED", "CLOSE_WAIT")].startswith("Rx FIN (")
    assert server[("CLOSE_WAIT", "LAST_ACK")].startswith("close(), Tx FIN (+")
    assert server[("CLOSE", "LISTEN")] == "listen()"
    assert report["plots"] == ["state_diagram.png", "state_diagram.svg"]
    svg = (tmp_path / "run" / "state_diagram.svg").read_text()
    assert "connect(), Tx SYN" in svg and "Rx SYN+ACK, Tx ACK" in svg and "timeout = 2MSL" in svg  # observed, and RFC 793 behind
    assert (tmp_path / "run" / "state_diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert tracefs_leftovers(lab) == []


def test_a_wrong_expectation_fails_and_says_where(tmp_path):
    r = up("tcp-states", "stwrong", SMALL, tmp_path / "run")
    assert r.returncode == 0, r.stdout + r.stderr
    folder = copy_results(tmp_path / "run", tmp_path / "edited")
    m = json.loads((folder / "manifest.json").read_text())
    for c in m["checks"]:
        if c["check"] == "state_transitions" and c["side"] == "client":
            c["expect"][2] = "ESTABLISHED>FIN_WAIT1 packet"  # the writer's close() did it, not a packet
        if c["check"] == "handshake_rtt":
            c["latency_ms"] = 20
    (folder / "manifest.json").write_text(json.dumps(m))
    r = invoke("check", str(folder))
    assert r.returncode == 1
    v = verdicts(folder)
    assert not v["state_transitions (client)"] and not v["handshake_rtt"] and v["trace_agrees_with_pcap"]
    detail = next(c["detail"] for c in json.loads((folder / "report.json").read_text())["checks"] if c["name"] == "state_transitions (client)")
    assert detail == "from transition 3: expected ESTABLISHED>FIN_WAIT1 packet, traced ESTABLISHED>FIN_WAIT1 syscall"


def test_sigkill_then_down_removes_the_trace_instance(tmp_path):
    lab = "stkill"
    # A long transfer: the trace is on when `up` dies.
    proc = start(*with_sets("tcp-states", lab, ["total=1000000000", "latency=20"]))

    def tracing() -> bool:
        state = STATE_ROOT / lab / "state.json"
        return state.exists() and bool(json.loads(state.read_text()).get("traces")) and (STATE_ROOT / lab / "hosts" / "source" / "writer.log").exists()

    sigkill_when(proc, tracing, "the trace started")
    assert tracefs_leftovers(lab) != []
    r = invoke("down", "--lab", lab)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tracefs instance tcplab_stkill" in " ".join(r.stdout.split())
    assert tracefs_leftovers(lab) == []
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count(f"tcplab-{lab}-") == 0


def test_the_handshake_may_be_late_by_what_the_delay_line_measured_of_itself(tmp_path):
    """The user-space delay line, which stands in for netem where the kernel lacks it (as here), records
    how late it sent its latest frame: the handshake may run over 2 x latency by twice that, no more.
    The record is edited, so the test holds where netem did the delay too."""
    r = up("tcp-states", "stlate", [*SMALL, "latency=10"], tmp_path / "run")
    assert r.returncode == 0, r.stdout + r.stderr
    handshake = next(c for c in json.loads((tmp_path / "run" / "report.json").read_text())["checks"] if c["name"] == "handshake_rtt")
    measured = min(float(x.split()[0]) for x in handshake["observed"].replace("capture: ", "").replace("trace: ", "").split(", "))
    for late, passes in ((0.0, False), (1.0, True)):
        folder = copy_results(tmp_path / "run", tmp_path / f"late-{late:g}")
        edited = json.loads((folder / "manifest.json").read_text())
        for c in edited["checks"]:
            if c["check"] == "handshake_rtt":
                # An expectation 1 ms short of what was measured, with no tolerance of its own and no path RTT:
                # only the delay line's own lateness can cover it.
                c["latency_ms"], c["tolerance_ms"] = (measured - 1.0) / 2, 0
        edited.pop("path_rtt", None)
        next(i for i in edited["impairments"] if i["impairments"]).setdefault("summary", {})["late_ms"] = {"max": late}
        (folder / "manifest.json").write_text(json.dumps(edited))
        invoke("check", str(folder))
        assert verdicts(folder)["handshake_rtt"] is passes, (late, measured)


def test_trace_against_pcap_fails_when_they_do_not_line_up(tmp_path):
    """The same run, its trace clock moved by 50 ms: the order and causes still hold, but no
    transition sits next to its packet any more."""
    r = up("tcp-states", "stshift", SMALL, tmp_path / "run")
    assert r.returncode == 0, r.stdout + r.stderr
    folder = copy_results(tmp_path / "run", tmp_path / "shifted")
    m = json.loads((folder / "manifest.json").read_text())
    trace = m["state_trace"]["traces"][0]
    trace["clock"] = [[mono, wall + 0.05] for mono, wall in trace["clock"]]
    (folder / "manifest.json").write_text(json.dumps(m))
    assert invoke("check", str(folder)).returncode == 1
    v = verdicts(folder)
    assert not v["trace_agrees_with_pcap"] and v["state_transitions (client)"] and v["state_transitions (server)"]
    detail = next(c["detail"] for c in json.loads((folder / "report.json").read_text())["checks"] if c["name"] == "trace_agrees_with_pcap")
    assert "client SYN_SENT->ESTABLISHED" in detail and "has no matching packet in source.pcap" in detail
