"""`invoke analyze`'s findings on captures built with scapy: each reading shown right where the timers
did what Linux does, and shown wrong (or absent) where they did not."""
from __future__ import annotations

import pytest
from scapy.layers.inet import TCP

from lab.analysis import connections
from lab.analysis.findings import findings
from tests.pcapbuild import Conversation, lost_request


def read(c: Conversation, tmp_path, kernel: str = "6.12", end_after: float = 0.0):
    """The findings by kind; `end_after`: the capture ran on this long after the last segment."""
    path = c.write(tmp_path / "f.pcap")
    scan, conns = connections.gather(path)
    (conn,) = conns
    return {f.kind: f for f in findings(conn, kernel, scan.last_ts + end_after)}


def keepalive_abort(probes: list[float], rst: float) -> Conversation:
    c = Conversation()
    c.handshake()
    c.client_data(0.001, b"hello")
    c.server_data(0.002, b"reply")
    for t in probes:
        c.client_probe(0.002 + t)
    c.client_rst(0.002 + rst)
    return c


def test_keepalive_settings_read_from_the_probes_and_the_abort(tmp_path):
    f = read(keepalive_abort([2.004, 3.008, 4.012], 5.016), tmp_path)
    ka = f["keepalive"]
    assert ka.settings["keepidle"] == 2 and ka.settings["keepintvl"] == 1 and ka.settings["keepcnt"] == 3
    assert "KEEPIDLE 2 s" in ka.text and "KEEPINTVL 1 s" in ka.text and "KEEPCNT 3" in ka.model
    assert "keepalive gave up" in f["end"].text
    assert ka.comments[min(ka.comments)].startswith("keepalive probe 1 of 3, 2.004 s after the last segment received")


def test_an_abort_off_keepcnt_s_time_is_read_as_a_user_timeout(tmp_path):
    ka = read(keepalive_abort([2.004, 3.008], 3.5), tmp_path)["keepalive"]
    assert "keepcnt" not in ka.settings
    assert ka.settings["user_timeout_ms"] == 3500 and "user timeout" in ka.model


def test_probes_not_on_whole_seconds_are_not_read_as_linux_settings(tmp_path):
    ka = read(keepalive_abort([2.5, 3.1], 9.0), tmp_path)["keepalive"]
    assert "keepidle" not in ka.settings and "no whole-second KEEPIDLE fits" in ka.text


def persist(gaps: list[float]) -> Conversation:
    c = Conversation()
    c.handshake()
    c.client_data(0.01, b"x" * 1000)
    c.server_ack(0.02, win=0)
    t = 0.02
    for g in gaps:
        t += g
        c.client_probe(t)
        c.server_ack(t + 0.0001, win=0)
    c.server_ack(t + 0.5)  # the window reopens
    return c


def test_zero_window_probes_doubling_from_the_rto(tmp_path):
    zw = read(persist([0.208, 0.416, 0.832, 1.664]), tmp_path)["zero_window"]
    assert zw.settings["probes"] == 4 and zw.settings["doubling"] is True
    assert "reopened" in zw.text and "persist timer" in zw.model and "do not double" not in zw.model


def test_zero_window_probes_that_do_not_double_are_said_so(tmp_path):
    zw = read(persist([0.5, 0.5, 0.5, 0.5]), tmp_path)["zero_window"]
    assert zw.settings["doubling"] is False and "do not double" in zw.model


def test_rto_backoff_and_the_retries2_it_gave_up_at(tmp_path):
    """A tail loss probe, RTO retransmissions from 200 ms doubling, then nothing though the capture ran
    on: tcp_retries2=3 gives up at 3.0 s after the first RTO retransmission (0.2 x (2**4 - 1))."""
    c = lost_request([0.204, 0.408, 0.816, 1.632, 3.264])
    f = read(c, tmp_path, end_after=20.0)
    rt = f["retransmission"]
    assert rt.settings["tail_loss_probe"] is True and rt.settings["rto_retransmissions"] == 4
    assert "4 RTO retransmissions: the first 0.204 s after the probe, then 0.408, 0.816, 1.632 s apart" in rt.text
    assert rt.settings["tcp_retries2"] == [3] and "tcp_retries2=3" in rt.model


def test_no_retries2_is_claimed_when_the_capture_stopped_before_the_next_expiry(tmp_path):
    rt = read(lost_request([0.204, 0.408, 0.816, 1.632]), tmp_path, end_after=0.5)["retransmission"]
    assert "tcp_retries2" not in rt.settings and "gave up" not in rt.text


@pytest.mark.parametrize("kernel, resends, fits, fits_linux, retries", [
    ("6.1", [1.0, 3.0, 7.0], True, True, [3]),  # doubling from 1 s
    ("6.12", [1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 11.0], True, True, [3]),  # 4 linear timeouts first
    ("6.12", [1.0, 3.0, 7.0], False, True, "any"),  # 6.1's schedule is not 6.12's: said so
    ("6.1", [0.5, 1.7], False, False, "any"),  # no Linux's
])
def test_syn_retries_against_the_kernel_s_schedule(tmp_path, kernel, resends, fits, fits_linux, retries):
    c = Conversation()
    c._add(0.0, True, "S", options=[("MSS", 1460)])
    first = c.packets[0]
    for t in resends:
        again = first.copy()
        again.time = c.t0 + t + 0.003
        c.packets.append(again)
    f = read(c, tmp_path, kernel)
    syn = f["syn_retries"]
    assert syn.settings["fits_kernel"] is fits and syn.settings["fits_linux"] is fits_linux
    if retries != "any":
        assert syn.settings.get("tcp_syn_retries") == retries
    if fits_linux and not fits:
        assert "these gaps fit Linux before 6.5" in syn.model
    if not fits_linux:
        assert "fit no Linux schedule" in syn.model
    assert f["end"].text.startswith("never established")


def test_frames_captured_twice_are_not_resends(tmp_path):
    c = Conversation()
    c.handshake()
    for t in (0.01, 0.02):
        p = c.client_data(t, b"x" * 100)
        again = p.copy()
        again.time = p.time + 0.00001
        c.packets.append(again)
        c.server_ack(t + 0.001)
    f = read(c, tmp_path)
    assert f["duplicates"].settings["count"] == 2
    assert "retransmission" not in f


def test_a_reset_to_a_probe_is_read_as_half_open_and_one_to_a_syn_as_refused(tmp_path):
    c = keepalive_abort([2.004], 2.0045)
    c.packets[-1] = c.packets[-1].__class__(bytes(c.packets[-1]))
    rst = c.packets[-1]
    rst[TCP].sport, rst[TCP].dport = rst[TCP].dport, rst[TCP].sport
    rst["IP"].src, rst["IP"].dst = rst["IP"].dst, rst["IP"].src
    rst[TCP].flags = "R"
    rst.time = c.t0 + 2.0065
    del rst["IP"].chksum, rst[TCP].chksum
    assert "half-open" in read(c, tmp_path)["end"].text
    refused = Conversation()
    refused._add(0.0, True, "S")
    refused._add(0.0001, False, "RA")
    assert "connection refused" in read(refused, tmp_path)["end"].text
