"""syn-retries on real namespaces and containers: connect() to a closed port (RST, ECONNREFUSED) and to a
dropped one (SYNs resent on the kernel's SYN timer, ETIMEDOUT), with tcp_syn_retries 1 to 3, TCP_SYNCNT and
TCP_USER_TIMEOUT. Each check is shown failing on a real folder where it should (another parameter, an edited
capture, an edited log); the labels agree with Wireshark's; and the exercise done by hand, typed into tmux."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers import inet, l2  # noqa: F401  (registers Ethernet, IP and TCP, which rdpcap needs)
from scapy.layers.inet import TCP
from scapy.utils import rdpcap, wrpcap

from tests.wireshark import COMPARED, disagreements, tshark_flags

from .conftest import STATE_ROOT, check, copy_results, early_results, edit_manifest, invoke, namespaces, rejudged, report, run_ok, up, verdicts

CHECKS = {"connection_refused", "syn_retransmissions", "connect_timed_out"}
PORT, CLOSED_PORT = 9080, 9081


@pytest.fixture(scope="module")
def sweep() -> Path:
    """tcp_syn_retries 1, 2 and 3 in one sweep: about 3, 7 and 19 s of SYNs on 6.18, started with the
    session (tests/e2e/conftest.py's EARLY_RUNS)."""
    return early_results("test_syn_retries.py")["sweep"]


@pytest.fixture(scope="module")
def syncnt(tmp_path_factory) -> Path:
    """TCP_SYNCNT=2 on a host whose tcp_syn_retries is 3: the socket's own count decides."""
    return run_ok(tmp_path_factory, "syn-retries", "e2esync", ["syn_retries=3", "syncnt=2"])


@pytest.fixture(scope="module")
def user_timeout(tmp_path_factory) -> Path:
    return run_ok(tmp_path_factory, "syn-retries", "e2esynu", ["user_timeout=2500"])


def run_of(sweep: Path, retries: int) -> Path:
    return sweep / f"syn_retries-{retries}"


def events(folder: Path) -> list[dict]:
    return [json.loads(l) for l in (folder / "client.log").read_text().splitlines()]


def write_events(folder: Path, evs: list[dict]) -> None:
    (folder / "client.log").write_text("".join(json.dumps(e) + "\n" for e in evs))


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


# --- what the kernel does -----------------------------------------------------------------------------------


@pytest.mark.parametrize("retries, resent, seconds", [(1, 2, 3), (2, 5, 7), (3, 7, 19)])
def test_syn_retries_one_to_three_pass_with_the_linear_schedule(sweep, retries, resent, seconds):
    folder = run_of(sweep, retries)
    assert verdicts(folder) == dict.fromkeys(CHECKS, True)
    m = manifest(folder)
    assert m["sysctls"]["source"]["net.ipv4.tcp_syn_retries"] == str(retries)
    assert m["sysctls"]["source"]["net.ipv4.tcp_syn_linear_timeouts"] == "4"
    assert check(folder, "syn_retransmissions")["observed"].startswith(f"{resent} resent SYNs at 1.0")
    failed = next(e for e in events(folder) if e["event"] == "silent_port")
    assert failed["error"] == "ETIMEDOUT" and seconds <= failed["elapsed"] < seconds + 0.8
    refused = next(e for e in events(folder) if e["event"] == "closed_port")
    assert refused["error"] == "ECONNREFUSED" and refused["elapsed"] < 0.01


def test_the_sweep_compares_each_syn_with_the_model_and_the_textbook(sweep):
    comparison = json.loads((sweep / "comparison.json").read_text())
    assert (sweep / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = json.dumps(comparison)
    for name in ("resent SYNs (count)", "model: SYN 8", "textbook: SYN 4", "model: ETIMEDOUT", "textbook: ETIMEDOUT", "RST after the SYN"):
        assert name in text, name


def test_syncnt_replaces_tcp_syn_retries(syncnt):
    assert verdicts(syncnt) == dict.fromkeys(CHECKS, True)
    options = next(e for e in events(syncnt) if e["event"] == "options")
    assert (options["syncnt"], options["syn_retries"]) == (2, 3)  # getsockopt(TCP_SYNCNT) reads back the socket's own
    said = check(syncnt, "syn_retransmissions")
    assert "TCP_SYNCNT=2" in said["expected"] and said["observed"].startswith("5 resent SYNs")  # 3 would give 7


def test_user_timeout_ends_the_connect_in_syn_sent(user_timeout):
    assert verdicts(user_timeout) == dict.fromkeys(CHECKS, True)
    assert check(user_timeout, "syn_retransmissions")["observed"].startswith("2 resent SYNs")
    failed = next(e for e in events(user_timeout) if e["event"] == "silent_port")
    assert failed["error"] == "ETIMEDOUT" and 2.5 <= failed["elapsed"] < 2.6


def test_check_on_the_folder_gives_the_same_verdict(user_timeout):
    before = report(user_timeout)
    r = invoke("check", str(user_timeout))
    assert r.returncode == 0, r.stdout
    assert report(user_timeout) == before


def test_labels_agree_with_wireshark(sweep, user_timeout):
    """Frame by frame: the resent SYNs are Wireshark's retransmissions, the closed port's answer its reset."""
    seen: dict[str, int] = {}
    for folder in (run_of(sweep, 2), user_timeout):
        for pcap in sorted(folder.glob("*.pcap")):
            assert disagreements(pcap) == {name: [] for name in COMPARED}, pcap
            for flags in tshark_flags(pcap).values():
                for f in flags:
                    seen[f] = seen.get(f, 0) + 1
    assert seen.get("retransmission", 0) >= 2 * (5 + 2) and seen.get("reset", 0) >= 4, seen


# --- each check failing where it should -------------------------------------------------------------------


def test_timer_checks_fail_under_other_parameters(sweep, user_timeout, tmp_path):
    # The syn_retries=2 packets judged as if it had been 3: 7 resent SYNs and 19 s would be due.
    folder = edit_manifest(copy_results(run_of(sweep, 2), tmp_path / "a"), syn_retries=3)
    v = rejudged(folder)
    assert v == {"connection_refused": True, "syn_retransmissions": False, "connect_timed_out": False}
    assert "5 SYNs resent where 7 were due" in check(folder, "syn_retransmissions")["detail"]
    # The user timeout's packets judged without it: the time limit would allow 5 resent SYNs and 7 s.
    folder = edit_manifest(copy_results(user_timeout, tmp_path / "b"), user_timeout=0)
    v = rejudged(folder)
    assert v["syn_retransmissions"] is False and v["connect_timed_out"] is False
    assert "ETIMEDOUT at 2.5" in check(folder, "connect_timed_out")["detail"]
    # and judged as if TCP_SYNCNT had been 1 (the count 5, the time limit 3 s)
    folder = edit_manifest(copy_results(run_of(sweep, 2), tmp_path / "c"), syncnt=1)
    assert rejudged(folder)["syn_retransmissions"] is False


def test_syn_check_fails_on_a_kernel_without_linear_timeouts(sweep, tmp_path):
    """The same packets, with the client's reading as a 6.1 kernel gives it (no such sysctl): the RTO would double."""
    folder = copy_results(run_of(sweep, 2), tmp_path / "c")
    write_events(folder, [{**e, "syn_linear_timeouts": None} if e["event"] == "options" else e for e in events(folder)])
    v = rejudged(folder)
    assert v["syn_retransmissions"] is False
    said = check(folder, "syn_retransmissions")
    assert "no linear timeouts" in said["expected"] and "SYN 3 came 1.0" in said["detail"]


def test_timer_checks_fail_on_an_edited_capture(sweep, tmp_path):
    folder = copy_results(run_of(sweep, 2), tmp_path / "c")
    pcap = folder / "source.pcap"
    packets = list(rdpcap(str(pcap)))
    silent = [k for k, q in enumerate(packets) if q[TCP].dport == PORT]
    del packets[silent[3]]  # one resent SYN fewer: SYN 4 never left
    wrpcap(str(pcap), packets)
    v = rejudged(folder)
    assert v["syn_retransmissions"] is False
    assert "4 SYNs resent where 5 were due" in check(folder, "syn_retransmissions")["detail"]


def test_refused_check_fails_without_the_reset_or_with_a_late_one(sweep, tmp_path):
    folder = copy_results(run_of(sweep, 1), tmp_path / "a")
    pcap = folder / "source.pcap"
    packets = list(rdpcap(str(pcap)))
    rst = next(k for k, q in enumerate(packets) if q[TCP].sport == CLOSED_PORT)
    kept = packets[:rst] + packets[rst + 1:]
    wrpcap(str(pcap), kept)
    assert rejudged(folder) == {"connection_refused": False, "syn_retransmissions": True, "connect_timed_out": True}
    assert "no RST from the server" in check(folder, "connection_refused")["detail"]
    # The RST 50 ms after the SYN: not a kernel answering at once.
    folder = copy_results(run_of(sweep, 1), tmp_path / "b")
    packets = list(rdpcap(str(folder / "source.pcap")))
    packets[rst].time += 0.05
    wrpcap(str(folder / "source.pcap"), packets)
    assert rejudged(folder)["connection_refused"] is False
    assert "beyond 10 ms" in check(folder, "connection_refused")["detail"]


def test_checks_fail_on_an_edited_log(sweep, tmp_path):
    folder = copy_results(run_of(sweep, 1), tmp_path / "c")
    evs = events(folder)
    write_events(folder, [{**e, "error": "ECONNRESET"} if e["event"] in ("closed_port", "silent_port") else e for e in evs])
    v = rejudged(folder)
    assert v == {"connection_refused": False, "syn_retransmissions": True, "connect_timed_out": False}
    assert "not ECONNREFUSED" in check(folder, "connection_refused")["detail"]
    assert "not ETIMEDOUT" in check(folder, "connect_timed_out")["detail"]
    # ETIMEDOUT a second late: not when the kernel's timer gave up
    write_events(folder, [{**e, "wall": e["wall"] + 1.0} if e["event"] == "silent_port" else e for e in evs])
    assert rejudged(folder)["connect_timed_out"] is False


# --- containers ---------------------------------------------------------------------------------------------


def test_syn_retries_on_docker(tmp_path):
    r = up("syn-retries", "e2esynd", ["syncnt=1", "user_timeout=2500"], tmp_path / "r", "--backend", "docker")
    assert r.returncode == 0, r.stdout + r.stderr
    folder = tmp_path / "r"
    m = manifest(folder)
    assert m["backend"] == "docker" and m["sysctls"]["source"]["net.ipv4.tcp_syn_retries"] == "2"  # set at creation
    assert verdicts(folder) == dict.fromkeys(CHECKS, True)
    # TCP_SYNCNT=1 with linear timeouts: the count is 5, the time limit 3 s, the user timeout 2.5 s: U decides
    assert check(folder, "syn_retransmissions")["observed"].startswith("2 resent SYNs")


# --- by hand ------------------------------------------------------------------------------------------------


def test_syn_retries_by_hand(tmp_path):
    from .test_handson import Person, wait_step

    lab = "hosyn"
    p = Person(lab, "syn-retries", ["user_timeout=2500"])
    try:
        flat = " ".join(p.started.split())
        assert "iptables -A INPUT -p tcp --dport 9080 -j DROP" in flat and "--closed-port 9081 --syncnt 0 --user-timeout 2500" in flat
        p.type("capture", "source", p.commands[0])
        wait_step(lab, 1)
        p.type("firewall", "dest", p.commands[1])
        wait_step(lab, 2)
        p.type("client", "source", p.commands[2])
        p.tmux.wait_for(p.shells["client"], "ECONNREFUSED")
        wait_step(lab, 3)
        p.tmux.wait_for(p.shells["client"], "ETIMEDOUT", timeout=20)
        wait_step(lab, 4)
        screen = p.tmux.screen(p.shells["client"])
        assert "net.ipv4.tcp_syn_retries = 2" in screen and "net.ipv4.tcp_syn_linear_timeouts = 4" in screen
        r = p.finish(tmp_path / "r")
        assert r.returncode == 0, r.stdout + r.stderr
        folder = tmp_path / "r"
        assert verdicts(folder) == dict.fromkeys(CHECKS | {"student_capture"}, True)
        m = manifest(folder)
        assert m["mode"] == "hands-on" and m["hands_on"]["observed"]["user_timeout"] == "client.log, its 'options' event"
        assert m["parameters"]["user_timeout"] == 2500 and m["parameters"]["syn_retries"] == 2
        assert namespaces(lab) == [] and not (STATE_ROOT / lab).exists()
    finally:
        p.close()


def test_client_before_the_drop_fails_with_the_hint(tmp_path):
    """The usual mistake, typed: the client run before the drop rule. Nothing listens on the silent port either,
    so it is refused at once like the closed one: no SYN resent, no ETIMEDOUT, and the hint names the order."""
    from .test_handson import Person, wait_step

    lab = "hosynorder"
    p = Person(lab, "syn-retries", ["user_timeout=2500"])
    try:
        p.type("capture", "source", p.commands[0])
        wait_step(lab, 1)
        p.type("client", "source", p.commands[2])
        p.tmux.wait_for(p.shells["client"], "connect() failed after 0.0")
        wait_step(lab, 4)
        p.type("firewall", "dest", p.commands[1])
        wait_step(lab, 2)
        r = p.finish(tmp_path / "r")
        folder = tmp_path / "r"
        assert r.returncode == 1, r.stdout + r.stderr
        v = verdicts(folder)
        assert v["connection_refused"] is True and v["syn_retransmissions"] is False and v["connect_timed_out"] is False
        for name in ("syn_retransmissions", "connect_timed_out"):
            hint = check(folder, name).get("hint", "")
            assert "the connect to port 9080 was refused at once: step 2" in hint and "after the client had tried it" in hint, hint
    finally:
        p.close()


@pytest.mark.parametrize("mistake, words", [
    ("ctrl-c", "the client was stopped (Ctrl-C?) before its kernel gave up: leave it until connect() fails with ETIMEDOUT (step 4"),
    ("finish", "the kernel was due to give up at 7.0 s: wait for step 4"),
], ids=["client_interrupted", "finish_before_the_end"])
def test_stopping_before_the_kernel_gives_up_fails_with_the_hint(tmp_path, mistake, words):
    """syn_retries=2: the connect ends at 7 s. Stopped at about 2 s, by Ctrl-C or by `invoke finish`."""
    from .test_handson import Person, wait_step

    lab = "hosynstop"
    p = Person(lab, "syn-retries", [])
    try:
        for n, (shell, host) in enumerate((("capture", "source"), ("firewall", "dest"), ("client", "source")), 1):
            p.type(shell, host, p.commands[n - 1])
            wait_step(lab, n)
        p.tmux.wait_for(p.shells["client"], "(silent port)")
        if mistake == "ctrl-c":
            p.tmux.keys(p.shells["client"], "C-c")
            p.tmux.wait_for(p.shells["client"], "interrupted (Ctrl-C)")
        r = p.finish(tmp_path / "r")
        folder = tmp_path / "r"
        assert r.returncode == 1, r.stdout + r.stderr
        v = verdicts(folder)
        assert v["connection_refused"] is True and v["connect_timed_out"] is False, v
        hint = check(folder, "connect_timed_out").get("hint", "")
        assert words in hint, hint
    finally:
        p.close()
