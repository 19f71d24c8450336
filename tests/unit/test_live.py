"""The live view of the wire (lab/handson/live.py's `wire`, docs/lab-server.md) on synthetic captures:
the segments that matter and their kinds, the keepalive anchor, the model's next expected event as
wall-clock times, the server's window, their bounds, and the `next` line `invoke watch` shows, which
is made from the same expected event and must read as it did before there was a structured one."""
from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np
import pytest

from lab.analysis import tcpflow as tf
from lab.analysis.kernel_model import KeepaliveModel, PersistModel
from lab.handson import live
from tests.pcapbuild import Conversation, lost_request

HZ = 250
OPTIONS = {"event": "options", "keepalive": 1, "keepidle": 4, "keepintvl": 2, "keepcnt": 9, "user_timeout": 9000}
RTO = 0.208


def keepalive_conversation(probes: list[float], rst: Optional[float] = None, t0: float = 1_000_000.0,
                           cseq: int = 1000) -> Conversation:
    """SYN, SYN-ACK, data both ways, then the client's probes (seconds after the server's reply), unanswered."""
    c = Conversation(t0=t0)
    c.cseq = cseq
    c.handshake()
    c.client_data(0.001, b"hello")
    c.server_data(0.002, b"reply to hello")  # the last segment the client receives
    c.client_ack(0.0021)
    for p in probes:
        c.client_probe(0.002 + p)
    if rst is not None:
        c.client_rst(0.002 + rst)
    return c


def zero_window_conversation(probes: list[float], reopen: Optional[float] = None) -> Conversation:
    """The receiver's window closes after the client's data; the client probes (seconds after the zero window)."""
    c = Conversation()
    c.handshake()
    c.client_data(0.01, b"x" * 1000)
    c.server_ack(0.02, win=0)
    for p in probes:
        c.client_probe(0.02 + p)
        c.server_ack(0.02 + p + 0.0001, win=0)
    if reopen is not None:
        c.server_ack(0.02 + reopen, win=64)
    return c


def flows_of(tmp_path, *conversations: Conversation) -> list[tf.Flow]:
    c = conversations[0]
    c.packets = sorted((p for conv in conversations for p in conv.packets), key=lambda p: float(p.time))
    return tf.analyze_file(c.write(tmp_path / "c.pcap"))


def the_view(flows: list[tf.Flow], options=OPTIONS, rto=None, hz=HZ, window=False) -> dict[str, Any]:
    got = live.view(flows, options, rto, hz, window)
    json.dumps(got)  # what the keeper writes into the record: plain JSON, no numpy numbers
    return got


def assert_band(expect: dict, origin: float, band) -> None:
    for part in ("nominal", "low", "high"):
        assert expect[part] == pytest.approx(origin + getattr(band, part), abs=1e-6), part


# --- keepalive ------------------------------------------------------------------------------------

def test_a_keepalive_connection_gives_its_segments_anchor_and_the_third_probes_band(tmp_path):
    flows = flows_of(tmp_path, keepalive_conversation([4.167, 6.183]))
    w = the_view(flows)["wire"]
    segs = w["segments"]
    assert [(s["from"], s["kind"]) for s in segs] == [
        ("client", "syn"), ("server", "syn-ack"), ("client", "data"), ("server", "data"),
        ("client", "keepalive"), ("client", "keepalive"),
    ]  # the plain ACKs do not matter
    assert [s["text"] for s in segs] == ["SYN", "SYN-ACK", "5 bytes", "14 bytes", "keepalive probe 1", "keepalive probe 2"]
    assert [s["len"] for s in segs] == [0, 0, 5, 14, 0, 0]
    assert segs[0]["win"] == 64240 and segs[1]["win"] == 65160  # a SYN's window is not scaled
    assert segs[3]["win"] == 512 << 7
    assert all(a["ts"] < b["ts"] for a, b in zip(segs, segs[1:]))
    assert w["t0"] == pytest.approx(1_000_000.0) and w["t0"] == segs[0]["ts"]
    assert w["anchor"] == segs[3]["ts"]  # the server's reply: the idle clock starts there
    # Probe 3's timer is armed by probe 2: one interval after it, within the kernel's allowance.
    m = KeepaliveModel(4, 2, 9, 9000, HZ)
    assert w["expect"]["what"] == "keepalive probe 3"
    assert_band(w["expect"], segs[-1]["ts"], m.interval())
    assert w["window"] == []  # no zero window, not a window exercise


def test_the_first_probe_is_expected_a_keepidle_after_the_anchor(tmp_path):
    w = the_view(flows_of(tmp_path, keepalive_conversation([])))["wire"]
    assert w["expect"]["what"] == "keepalive probe 1"
    assert_band(w["expect"], w["anchor"], KeepaliveModel(4, 2, 9, 9000, HZ).first_probe())


def test_after_the_last_probe_the_abort_is_expected_and_after_the_rst_nothing(tmp_path):
    probes = [4.167, 6.183, 8.199]
    m = KeepaliveModel(4, 2, 9, 9000, HZ)
    assert max(m.probe_counts()) == 3  # the user timeout decides
    w = the_view(flows_of(tmp_path, keepalive_conversation(probes)))["wire"]
    assert w["expect"]["what"] == "abort (RST, ETIMEDOUT)"
    assert_band(w["expect"], w["segments"][-1]["ts"], m.interval())
    w = the_view(flows_of(tmp_path, keepalive_conversation(probes, rst=10.215)))["wire"]
    assert w["segments"][-1]["kind"] == "rst" and w["segments"][-1]["from"] == "client"
    assert w["expect"] is None and w["anchor"] is not None  # the probes are still timed from the anchor


def test_an_answered_probe_is_told_and_the_count_starts_again(tmp_path):
    c = keepalive_conversation([4.0])
    c.server_ack(4.003)  # the server is alive
    c.client_probe(8.004)
    w = the_view(flows_of(tmp_path, c))["wire"]
    tail = [(s["from"], s["kind"], s["text"]) for s in w["segments"][-3:]]
    assert tail == [("client", "keepalive", "keepalive probe 1"), ("server", "keepalive-ack", "answers the keepalive probe"),
                    ("client", "keepalive", "keepalive probe 1")]
    assert w["anchor"] == w["segments"][-2]["ts"] and w["expect"]["what"] == "keepalive probe 2"


def test_no_options_no_keepalive_expectation_and_no_anchor_before_probes(tmp_path):
    w = the_view(flows_of(tmp_path, keepalive_conversation([])), options=None)["wire"]
    assert w["expect"] is None and w["anchor"] is None


def test_several_connections_the_wire_describes_the_last(tmp_path):
    first = keepalive_conversation([], rst=1.0)
    second = keepalive_conversation([4.1], t0=1_000_010.0, cseq=777_000)  # the same ports, a new ISN
    flows = flows_of(tmp_path, first, second)
    assert len(flows) == 2
    got = the_view(flows)
    w = got["wire"]
    assert w["t0"] == pytest.approx(1_000_010.0) and w["segments"][0]["kind"] == "syn"
    assert all(s["ts"] >= w["t0"] for s in w["segments"])
    assert w["expect"]["what"] == "keepalive probe 2"
    assert got["next"] == live.story(flows, OPTIONS, None, HZ)[1] != ""


def test_no_connection_yet_gives_an_empty_wire():
    got = the_view([])
    assert got == {"events": [], "next": "", "wire": {"t0": None, "anchor": None, "segments": [], "expect": None, "window": []}}


# --- the persist timer ----------------------------------------------------------------------------

def test_a_zero_window_gives_its_probes_the_window_series_and_the_persist_models_band(tmp_path):
    probes = [0.208, 0.624]
    flows = flows_of(tmp_path, zero_window_conversation(probes))
    w = the_view(flows, options=None, rto=RTO)["wire"]
    segs = w["segments"]
    assert [(s["from"], s["kind"]) for s in segs] == [
        ("client", "syn"), ("server", "syn-ack"), ("client", "data"),
        ("server", "zero-window"), ("client", "zero-window-probe"), ("server", "zero-window"),
        ("client", "zero-window-probe"), ("server", "zero-window"),
    ]
    assert [s["text"] for s in segs[3:]] == ["zero window", "window probe 1", "zero window, answering the probe",
                                             "window probe 2", "zero window, answering the probe"]
    zero_at = segs[3]["ts"]
    # The server's window over time: every segment it sent, its zeros among them.
    assert [v for _, v in w["window"]] == [65160, 0, 0, 0]
    assert [t for t, v in w["window"] if v == 0] == [zero_at, segs[5]["ts"], segs[7]["ts"]]
    # Probe 3: the doubled interval after probe 2.
    assert w["expect"]["what"] == "window probe 3"
    assert_band(w["expect"], segs[6]["ts"], PersistModel(RTO, HZ).interval(2))
    assert w["anchor"] is None


def test_the_first_window_probe_is_expected_an_rto_after_the_zero_window(tmp_path):
    w = the_view(flows_of(tmp_path, zero_window_conversation([])), options=None, rto=RTO)["wire"]
    assert w["expect"]["what"] == "window probe 1"
    assert_band(w["expect"], w["segments"][-1]["ts"], PersistModel(RTO, HZ).interval(0))


def test_the_window_reopened_ends_the_expectation_and_shows_in_the_series(tmp_path):
    w = the_view(flows_of(tmp_path, zero_window_conversation([0.208], reopen=0.5)), options=None, rto=RTO)["wire"]
    assert w["segments"][-1]["kind"] == "window-update" and w["segments"][-1]["text"] == "window update: 8192 bytes"
    assert w["window"][-1][1] == 64 << 7 and w["expect"] is None


def test_a_window_exercise_shows_the_window_before_it_ever_closes(tmp_path):
    flows = flows_of(tmp_path, keepalive_conversation([]))
    assert the_view(flows, window=False)["wire"]["window"] == []
    assert [v for _, v in the_view(flows, window=True)["wire"]["window"]] == [65160, 512 << 7]


# --- bounds ---------------------------------------------------------------------------------------

def test_a_long_flow_keeps_500_segments_the_zero_windows_first_and_2000_window_points_with_every_zero(tmp_path):
    c = Conversation()
    c.handshake()
    t = 0.01
    for i in range(2100):
        c.client_data(t, b"d" * 10)
        c.server_ack(t + 0.0001, win=0 if i % 100 == 99 else 100 + i % 7)
        t += 0.001
    (flow,) = tf.analyze_file(c.write(tmp_path / "long.pcap"))
    w = the_view([flow], options=None)["wire"]
    mattering = live.segments(flow, limit=10**9)
    assert len(mattering) > 2100
    # Every zero window stays in view; the latest data fills the rest.
    kept = w["segments"]
    assert len(kept) == 500 and [s["ts"] for s in kept] == sorted(s["ts"] for s in kept)
    special = [s for s in mattering if s["kind"] != "data"]
    assert 21 <= len(special) < 500 and all(s in kept for s in special)
    data = [s for s in kept if s["kind"] == "data"]
    assert data == [s for s in mattering if s["kind"] == "data"][-len(data):]
    server = flow.where(sender=tf.SERVER)
    assert len(server) > 2000 and len(w["window"]) == 2000
    times = [p[0] for p in w["window"]]
    assert times == sorted(times) and times[0] == float(flow.ts[server[0]]) and times[-1] == float(flow.ts[server[-1]])
    zeros = flow.ts[server][flow.window[server] == 0].tolist()
    assert len(zeros) == 21 and [t for t, v in w["window"] if v == 0] == zeros


def test_thinning_keeps_the_zeros_then_the_edges_of_runs_then_an_even_spread():
    win = np.array([5] * 3000 + [0] * 10 + [7] * 3000)
    keep = live._thin(win, 100)
    assert len(keep) == 100 and list(keep) == sorted(set(keep.tolist()))
    assert set(np.flatnonzero(win == 0)) <= set(keep.tolist())
    assert {0, 2999, 3010, len(win) - 1} <= set(keep.tolist())  # the runs' ends and the reopening
    many_zeros = np.array([0, 1] * 3000)
    keep = live._thin(many_zeros, 2000)
    assert len(keep) == 2000 and (many_zeros[keep] == 0).sum() >= 1999 and keep[-1] == len(many_zeros) - 1
    assert list(live._thin(np.arange(10), 2000)) == list(range(10))


# --- the `next` line, as it read before the structured expectation -------------------------------

def next_before(flows: list[tf.Flow], options, rto, hz) -> str:
    """`next` as live.py computed it before `expect` existed (its _next, kept here verbatim)."""
    expect = ""
    for f in flows:
        anchor = f.last(sender=tf.SERVER)
        probes = f.pick(tf.KEEPALIVE, tf.CLIENT, after=anchor.ts) if anchor else []
        zero = f.first(tf.ZERO_WINDOW, tf.SERVER)
        wprobes = f.pick(tf.ZERO_WINDOW_PROBE, tf.CLIENT, after=zero.ts) if zero else []
        expect = _old_next(f, anchor, probes, zero, wprobes, options, rto, hz)
    return expect


def _old_next(f, anchor, probes, zero, wprobes, options, rto, hz) -> str:
    if len(f.where(tf.RST_)) or len(f.where(tf.FIN_)):
        return ""
    if zero is not None and not any(f.window[k] > 0 for k in f.where(sender=tf.SERVER, after=zero.ts)):
        m = PersistModel(rto if rto is not None else 0.2, hz)
        k = len(wprobes)
        since = wprobes[-1].ts if wprobes else zero.ts
        w = m.interval(k)
        return (f"next window probe due {w.nominal:.3f} s after the {'last probe' if wprobes else 'zero window'}, "
                f"at {since - zero.ts + w.nominal:.3f} s into the zero window (window {since - zero.ts + w.low:.3f}..{since - zero.ts + w.high:.3f})")
    if not options or not options.get("keepalive") or anchor is None or not len(f.where(tf.DATA, tf.SERVER)):
        return ""
    m = KeepaliveModel(float(options["keepidle"]), float(options["keepintvl"]), int(options["keepcnt"]), int(options.get("user_timeout") or 0), hz)
    n, counts = len(probes), m.probe_counts()
    first, gap = m.first_probe(), m.interval()
    since = probes[-1].ts - anchor.ts if probes else 0.0
    if n < max(counts):
        w = gap if probes else first
        return (f"next keepalive probe due at {since + w.nominal:.2f} s after the last received segment, "
                f"window {since + w.low:.3f}..{since + w.high:.3f}")
    return (f"abort (RST, ETIMEDOUT) due at {since + gap.nominal:.2f} s after the last received segment, "
            f"window {since + gap.low:.3f}..{since + gap.high:.3f}")


NO_UT = {**OPTIONS, "user_timeout": 0, "keepcnt": 3}
CASES = {
    "idle": (lambda: keepalive_conversation([]), OPTIONS, None),
    "one probe": (lambda: keepalive_conversation([4.167]), OPTIONS, None),
    "two probes": (lambda: keepalive_conversation([4.167, 6.183]), OPTIONS, None),
    "three probes": (lambda: keepalive_conversation([4.167, 6.183, 8.199]), OPTIONS, None),
    "cnt decides": (lambda: keepalive_conversation([4.1, 6.13, 8.161]), NO_UT, None),
    "rst": (lambda: keepalive_conversation([4.167, 6.183, 8.199], rst=10.215), OPTIONS, None),
    "no options": (lambda: keepalive_conversation([4.167]), None, None),
    "keepalive off": (lambda: keepalive_conversation([4.167]), {**OPTIONS, "keepalive": 0}, None),
    "zero window": (lambda: zero_window_conversation([]), None, RTO),
    "window probes": (lambda: zero_window_conversation([0.208, 0.624, 1.456]), None, RTO),
    "window probes, rto unknown": (lambda: zero_window_conversation([0.208, 0.624]), OPTIONS, None),
    "reopened": (lambda: zero_window_conversation([0.208], reopen=0.7), None, RTO),
}


@pytest.mark.parametrize("hz", [HZ, 1000, None])
@pytest.mark.parametrize("case", list(CASES))
def test_next_reads_as_before_and_agrees_with_the_wires_expect(tmp_path, case, hz):
    build, options, rto = CASES[case]
    flows = flows_of(tmp_path, build())
    got = the_view(flows, options, rto, hz)
    assert got["next"] == next_before(flows, options, rto, hz)
    assert got["next"] == live.story(flows, options, rto, hz)[1]
    expect = got["wire"]["expect"]
    assert (expect is None) == (got["next"] == "")
    if expect is not None:
        # The same event: the text's times are the wire's, counted from the anchor or the zero window.
        origin = got["wire"]["anchor"] if got["wire"]["anchor"] is not None else got["wire"]["segments"][3]["ts"]
        digits = 3 if "window probe" in expect["what"] else 2
        assert f"{expect['nominal'] - origin:.{digits}f} s" in got["next"]
        assert f"{expect['low'] - origin:.3f}..{expect['high'] - origin:.3f}" in got["next"]


# --- the retransmission timer -----------------------------------------------------------------------

RTO_OPTIONS = {"event": "options", "retries2": 3, "user_timeout": 0}


def test_a_lost_request_is_told_with_its_probe_and_rto_retransmissions_and_the_next_expected(tmp_path):
    (flow,) = tf.analyze_file(lost_request([0.208, 0.416, 0.832]).write(tmp_path / "r.pcap"))
    told, nxt = live.story([flow], RTO_OPTIONS, 0.204, 250, srtt=0.00005)
    texts = [t.text for t in told]
    assert any(t.startswith("tail loss probe: the request sent again 0.208 s after it") for t in texts)
    assert any(t.startswith("RTO retransmission 2, 0.832 s after the request (0.416 s after the previous one)") for t in texts)
    # RTO 204 ms doubling: the third is due 0.816 s after the second
    assert nxt.startswith("RTO retransmission 3 due at 1.648 s after the lost request"), nxt
    kinds = [s["kind"] for s in live.segments(flow)]
    assert kinds.count("tail-loss-probe") == 1 and kinds.count("rto-retransmission") == 2
    assert [s["text"] for s in live.segments(flow) if s["kind"] == "rto-retransmission"] == \
        ["RTO retransmission 1: 100 bytes again", "RTO retransmission 2: 100 bytes again"]


def test_after_the_last_retransmission_the_abort_is_expected_and_without_the_clients_figures_nothing(tmp_path):
    (flow,) = tf.analyze_file(lost_request([0.208, 0.416, 0.832, 1.664, 3.328]).write(tmp_path / "r.pcap"))
    _, nxt = live.story([flow], RTO_OPTIONS, 0.204, 250, srtt=0.00005)
    assert nxt.startswith("abort (ETIMEDOUT, no RST) due at 6.536 s after the lost request"), nxt
    assert live.story([flow], RTO_OPTIONS, None, 250)[1] == ""  # no RTO logged yet: no guess


def test_a_connect_nobody_answers_is_told_with_the_next_syn_and_then_the_failure(tmp_path):
    c = Conversation()
    syn = c._add(0.0, True, "S", options=[("MSS", 1460), ("WScale", 7)])
    for t in (1.02, 2.04):
        again = syn.copy()
        again.time = syn.time + t
        c.packets.append(again)
    (flow,) = tf.analyze_file(c.write(tmp_path / "s.pcap"))
    options = {"event": "options", "syn_retries": 1, "syncnt": 0, "syn_linear_timeouts": 4, "user_timeout": 0}
    _, nxt = live.story([flow], options, None, 250)
    # tcp_syn_retries=1 on 6.18: two SYNs resent, 1 s apart, then the time limit, 3 s after the first
    assert nxt.startswith("connect() fails (ETIMEDOUT) due at 3.000 s after the first SYN"), nxt
    _, nxt = live.story([flow.before(flow.ts[0] + 1.5)], options, None, 250)
    assert nxt.startswith("SYN 3 (resent 2) due at 2.020 s after the first SYN"), nxt
    assert live.story([flow], None, None, 250)[1] == ""


def test_the_keepalive_anchor_is_not_drawn_for_the_retransmission_timer(tmp_path):
    (flow,) = tf.analyze_file(lost_request([0.208, 0.416]).write(tmp_path / "r.pcap"))
    w = live.view([flow], RTO_OPTIONS, 0.204, 250, srtt=0.00005)["wire"]
    assert w["expect"]["what"] == "RTO retransmission 2" and w["anchor"] is None
