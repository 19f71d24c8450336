"""The SYN-retry model against the times measured on 6.18 (and the 6.1 code), and the syn-retries checks
on synthetic results folders: each passes on the kernel's schedule and fails off it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from lab import checks
from lab.analysis.context import Context
from lab.analysis.kernel_model import SynRetryModel
from lab.checks.syn_retries import linear_timeouts
from lab.report import measures

HZ = 250
CLIENT_IP, SERVER_IP = "10.0.1.1", "10.0.1.2"
CLOSED_LOCAL, SILENT_LOCAL = 40000, 40001
PORT, CLOSED_PORT = 9080, 9081
T0 = 1_000_000.0
ISN = 123456
CHECKS = ("connection_refused", "syn_retransmissions", "connect_timed_out")
# Measured here (6.18, HZ=250): syn_retries=2, no TCP_SYNCNT: SYNs resent 1.024 s apart, ETIMEDOUT at 7.140 s.
MEASURED = dict(syns=[1.024, 2.048, 3.072, 4.096, 5.120], failed=7.140)


# --- the model --------------------------------------------------------------------------------------


def model(retries: int, linear: int = 4, user_timeout: int = 0) -> SynRetryModel:
    return SynRetryModel(retries, linear, user_timeout, HZ)


@pytest.mark.parametrize(
    "retries, user_timeout, resent, fails, reason, measured",
    [
        # tcp_syn_retries=3: 7 SYNs resent, ETIMEDOUT at 19.45-19.47 s (the reference's measurement)
        (3, 0, [1, 2, 3, 4, 5, 7, 11], 19.0, "count", [19.45, 19.47]),
        # TCP_SYNCNT=2: 5 resent, the time limit (7 s) before the count (6): 7.13-7.14 s
        (2, 0, [1, 2, 3, 4, 5], 7.0, "time limit", [7.13, 7.14]),
        # syn_retries=1 (measured 3.067 s in a sweep here)
        (1, 0, [1, 2], 3.0, "time limit", [3.067]),
        # TCP_USER_TIMEOUT=2500 ms: 2.524-2.531 s
        (2, 2500, [1, 2], 2.5, "user timeout", [2.524, 2.531]),
        # U replaces the time limit: U=10 s runs past syn_retries=2's 7 s, to the count (measured 10.059 s)
        (2, 10000, [1, 2, 3, 4, 5, 7], 10.0, "count", [10.059]),
        # U under 1 s: the first SYN's timer is not clamped; one SYN resent, ETIMEDOUT a jiffy later (measured 1.036 s)
        (2, 500, [1], 1.004, "user timeout", [1.036]),
        # the default 6: about 131 s, not tcp(7)'s 127
        (6, 0, [1, 2, 3, 4, 5, 7, 11, 19, 35, 67], 131.0, "count", []),
    ],
)
def test_model_gives_the_measured_schedule(retries, user_timeout, resent, fails, reason, measured):
    m = model(retries, user_timeout=user_timeout)
    n, at, why = m.outcome()
    assert (m.syn_times(), at, why) == ([float(t) for t in resent], pytest.approx(fails), reason)
    assert m.retransmission_counts() == [n]
    for value in measured:
        assert m.failure(n).holds(value), (value, m.failure(n))


def test_before_linear_timeouts_the_rto_doubles_as_the_textbook_says():
    """6.1 has no tcp_syn_linear_timeouts: 1, 3, 7, 15 ... s and the count and the time limit coincide."""
    m = model(6, linear=0)
    assert m.syn_times() == m.textbook() == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0]
    assert m.outcome()[1] == m.textbook_failure() == 127.0
    assert [m.interval(k).nominal for k in range(1, 7)] == [1, 2, 4, 8, 16, 32]


def test_intervals_allow_the_wheel_slack_and_never_early():
    w = model(2).interval(1)
    assert w.holds(1.024) and w.holds(1.036) and not w.holds(0.99) and not w.holds(1.05)
    assert model(3).interval(7).nominal == 4.0 and model(3).interval(7).holds(4.256)


def test_a_timer_late_enough_to_pass_the_limit_may_fail_one_expiry_early():
    """U=2020 ms: on time, SYNs are resent at 1 and 2 s and the clamped timer fails at 2.02 s; a first timer 20 ms
    late (the wheel allows 36) leaves less than the next 1 s RTO, so the clamp ends it at 2.02 s after one."""
    m = model(2, user_timeout=2020)
    assert m.outcome() == (2, 2.02, "user timeout")
    assert m.retransmission_counts() == [1, 2]
    assert m.failure(1).holds(2.03) and m.failure(2).holds(2.03) and not m.failure(1).holds(2.0)


# --- synthetic results folders ----------------------------------------------------------------------


def results(
    folder: Path,
    syns: list[float],
    failed: float | None,
    params: dict | None = None,
    error: str = "ETIMEDOUT",
    rst_after: float | None = 0.00005,
    rst_seq: int = 0,
    rst_ack_offset: int = 1,
    refused: str = "ECONNREFUSED",
    client_rst: float | None = None,
    linear: int | None = 4,
    log_linear: bool = True,
) -> Path:
    """A results folder as `invoke up syn-retries` leaves it: the closed port's SYN and RST at T0, then the
    silent port's first SYN at T0 + 0.01 and its resent SYNs `syns` seconds after that."""
    folder.mkdir(parents=True, exist_ok=True)
    params = {"syn_retries": 2, "syncnt": 0, "user_timeout": 0, "port": PORT, "closed_port": CLOSED_PORT, **(params or {})}
    pkts = []

    def add(t: float, pkt):
        pkt.time = T0 + t
        pkts.append(pkt)

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    add(0.0, eth / IP(src=CLIENT_IP, dst=SERVER_IP) / TCP(sport=CLOSED_LOCAL, dport=CLOSED_PORT, flags="S", seq=ISN, window=64240))
    if rst_after is not None:
        add(rst_after, eth / IP(src=SERVER_IP, dst=CLIENT_IP) / TCP(sport=CLOSED_PORT, dport=CLOSED_LOCAL, flags="RA", seq=rst_seq,
                                                                  ack=ISN + rst_ack_offset, window=0))
    start = 0.01
    for t in [0.0, *syns]:
        add(start + t, eth / IP(src=CLIENT_IP, dst=SERVER_IP) / TCP(sport=SILENT_LOCAL, dport=PORT, flags="S", seq=ISN + 7, window=64240))
    if client_rst is not None:
        add(start + client_rst, eth / IP(src=CLIENT_IP, dst=SERVER_IP) / TCP(sport=SILENT_LOCAL, dport=PORT, flags="R", seq=ISN + 8))
    wrpcap(str(folder / "source.pcap"), pkts)
    options = {"event": "options", "wall": T0 - 0.01, "mono": 0.0, "syncnt": params["syncnt"] or params["syn_retries"],
               "syncnt_set": params["syncnt"], "user_timeout": params["user_timeout"], "syn_retries": params["syn_retries"]}
    if log_linear:
        options["syn_linear_timeouts"] = linear
    events = [
        options,
        {"event": "connecting", "wall": T0 - 0.0001, "mono": 0.0, "target": "closed_port", "port": CLOSED_PORT, "local_port": CLOSED_LOCAL},
        {"event": "closed_port", "wall": T0 + 0.0002, "mono": 0.0, "port": CLOSED_PORT, "local_port": CLOSED_LOCAL,
         "elapsed": 0.0002, "error": refused, "errno": 111},
        {"event": "connecting", "wall": T0 + start - 0.0001, "mono": 0.0, "target": "silent_port", "port": PORT, "local_port": SILENT_LOCAL},
    ]
    if failed is not None:
        events.append({"event": "silent_port", "wall": T0 + start + failed, "mono": 0.0, "port": PORT, "local_port": SILENT_LOCAL,
                       "elapsed": failed, "error": error, "errno": 110})
    (folder / "client.log").write_text("".join(json.dumps(e) + "\n" for e in events))
    timer = {k: "{" + k + "}" for k in ("port", "syn_retries", "syncnt", "user_timeout")}
    specs = [{"check": "connection_refused", "capture": "source", "client": "client", "closed_port": "{closed_port}"},
             {"check": "syn_retransmissions", "capture": "source", "client": "client", **timer},
             {"check": "connect_timed_out", "capture": "source", "client": "client", **timer}]
    manifest = {"exercise": "syn-retries", "backend": "netns", "parameters": params, "kernel": {"hz": HZ, "release": "6.18.44"},
                "sysctls": {"source": {"net.ipv4.tcp_syn_retries": str(params["syn_retries"]),
                                       "net.ipv4.tcp_syn_linear_timeouts": None if linear is None else str(linear)}},
                "programs": {"client": {"host": "source"}}, "checks": specs,
                "measures": [{"measure": "syn_times", "capture": "source", "client": "client", **timer}]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def verdicts(folder: Path) -> dict:
    return {r.name: r for r in checks.run(folder)}


def test_measured_run_passes(tmp_path):
    v = verdicts(results(tmp_path, **MEASURED))
    assert set(v) == set(CHECKS) and all(r.passed for r in v.values()), {n: r.detail for n, r in v.items()}
    assert v["syn_retransmissions"].observed.startswith("5 resent SYNs at 1.024, 2.048")
    assert "the textbook (tcp(7)) says 2 resent SYNs, at 1.000, 3.000 s" in v["syn_retransmissions"].expected
    assert "RST,ACK 0.050 ms later, seq 0, ack ISN+1" in v["connection_refused"].observed


@pytest.mark.parametrize(
    "change, failing, words",
    [
        # one SYN fewer, the time limit not yet reached when connect() failed
        (dict(syns=[1.024, 2.048, 3.072, 4.096], failed=5.12), {"syn_retransmissions", "connect_timed_out"}, "4 SYNs resent where 5 were due"),
        # the textbook's doubling from the first retry, as a 6.1 kernel would: not this kernel's 4 linear ones
        (dict(syns=[1.02, 3.05], failed=7.1), {"syn_retransmissions"}, "SYN 3 came 2.030 s after the one before"),
        (dict(syns=MEASURED["syns"], failed=7.6), {"connect_timed_out"}, "ETIMEDOUT at 7.600 s, outside"),
        (dict(syns=MEASURED["syns"], failed=6.5), {"connect_timed_out"}, "ETIMEDOUT at 6.500 s, outside"),
        (dict(syns=MEASURED["syns"], failed=7.14, error="ECONNREFUSED"), {"connect_timed_out"}, "not ETIMEDOUT"),
        (dict(syns=MEASURED["syns"], failed=None), {"connect_timed_out"}, "never returned"),
        (dict(**MEASURED, client_rst=7.14), {"connect_timed_out"}, "(RST) after its last SYN"),
        (dict(**MEASURED, rst_after=None), {"connection_refused"}, "no RST from the server"),
        (dict(**MEASURED, rst_after=0.2), {"connection_refused"}, "beyond 10 ms"),
        (dict(**MEASURED, rst_ack_offset=0), {"connection_refused"}, "not ISN+1"),
        (dict(**MEASURED, rst_seq=99), {"connection_refused"}, "not 0"),
        (dict(**MEASURED, refused="ETIMEDOUT"), {"connection_refused"}, "not ECONNREFUSED"),
        # the same packets judged at other parameters
        (dict(**MEASURED, params={"syn_retries": 3}), {"syn_retransmissions", "connect_timed_out"}, "where 7 were due"),
        (dict(**MEASURED, params={"user_timeout": 2500}), {"syn_retransmissions", "connect_timed_out"}, "where 2 were due"),
    ],
)
def test_each_check_fails_off_schedule(tmp_path, change, failing, words):
    v = verdicts(results(tmp_path, **change))
    assert {n for n, r in v.items() if not r.passed} == failing, {n: r.detail for n, r in v.items()}
    assert any(words in v[n].detail for n in failing), {n: v[n].detail for n in failing}


def test_syncnt_replaces_tcp_syn_retries(tmp_path):
    # TCP_SYNCNT=2 on a host whose tcp_syn_retries is 6: the socket's own count decides (measured: 5 resent, 7.115 s).
    v = verdicts(results(tmp_path, syns=[1.003, 2.027, 3.055, 4.079, 5.099], failed=7.115, params={"syn_retries": 6, "syncnt": 2}))
    assert all(r.passed for r in v.values()), {n: r.detail for n, r in v.items()}
    assert "TCP_SYNCNT=2" in v["syn_retransmissions"].expected


def test_a_kernel_without_linear_timeouts_is_judged_by_its_own_schedule(tmp_path):
    """6.1: no tcp_syn_linear_timeouts (the client read none, the manifest recorded none): SYNs at 1 and 3 s."""
    v = verdicts(results(tmp_path / "a", syns=[1.02, 3.05], failed=7.2, linear=None))
    assert all(r.passed for r in v.values()), {n: r.detail for n, r in v.items()}
    assert "no linear timeouts (client.log: no such sysctl)" in v["syn_retransmissions"].expected
    # and this kernel's packets fail there
    v = verdicts(results(tmp_path / "b", **MEASURED, linear=None))
    assert not v["syn_retransmissions"].passed


def test_linear_timeouts_come_from_the_log_then_the_manifest_then_the_release(tmp_path):
    folder = results(tmp_path, **MEASURED, linear=2)
    assert linear_timeouts(Context(folder), "client") == (2, "client.log")
    folder = results(tmp_path / "m", **MEASURED, linear=3, log_linear=False)
    assert linear_timeouts(Context(folder), "client") == (3, "the manifest")
    m = json.loads((folder / "manifest.json").read_text())
    del m["sysctls"]
    for release, want in (("6.1.0-40-amd64", 0), ("6.12.57+deb13-amd64", 4)):
        m["kernel"]["release"] = release
        (folder / "manifest.json").write_text(json.dumps(m))
        assert linear_timeouts(Context(folder), "client")[0] == want


def test_syn_times_sets_each_syn_beside_the_model_and_the_textbook(tmp_path):
    figures, problems = measures.run(results(tmp_path, **MEASURED))
    assert problems == []
    resent = figures["resent SYNs"]
    assert resent["resent SYNs (count)"] == 5 and resent["model: resent SYNs (count)"] == 5
    assert resent["textbook: resent SYNs (count)"] == 2
    assert resent["SYN 3"] == pytest.approx(2048) and resent["model: SYN 3"] == 2000 and resent["textbook: SYN 3"] == 3000
    assert resent["SYN 6"] == pytest.approx(5120) and resent["textbook: SYN 6"] is None
    failed = figures["connect() fails"]
    assert failed["ETIMEDOUT"] == pytest.approx(7140) and failed["model: ETIMEDOUT"] == 7000 and failed["textbook: ETIMEDOUT"] == 7000
    assert figures["closed port"]["RST after the SYN"] == pytest.approx(0.05, abs=0.01)


def test_a_lower_rto_cap_caps_the_syn_backoff_and_the_time_limit():
    """6.15+: tcp_rto_max_ms per namespace (1 s at least). At 2 s: RTOs 1 x 5, then 2, 2, ...; the limit past ilog2(2) = 1
    doubling counts 2 s each: syn_retries=3 gives (2 << 1) - 1 + 2 x 2 = 7 s."""
    m = SynRetryModel(3, 4, 0, HZ, rto_max=2.0)
    assert [m.rto(k) for k in range(1, 9)] == [1, 1, 1, 1, 1, 2, 2, 2]
    assert m.time_boundary == 7.0 and m.outcome() == (5, 7.0, "time limit")
