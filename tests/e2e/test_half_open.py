"""half-open on real namespaces and containers: dest forgets the connection (its socket destroyed with
`ss -K` under a drop of its outgoing packets), and the idle client learns it from the RST that answers
its keepalive probe, or, without keepalive, its next write. Each check is shown failing on a real
folder where it should (another parameter, an edited capture, an edited log); the labels agree with
Wireshark's; and the exercise done by hand, typed into tmux."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.layers import inet, l2  # noqa: F401  (registers Ethernet, IP and TCP, which rdpcap needs)
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap

from tests.wireshark import disagreements, tshark_flags

from .conftest import STATE_ROOT, check, copy_results, edit_manifest, namespaces, rejudged, report, run_ok, up, verdicts

CHECKS = {"connection_established", "forgotten_quietly", "probe_draws_reset", "reset_reported"}
# Short timers: the probe 2 s after the reply (the forget takes a few commands on dest, which a loaded
# machine may stretch towards a second); without keepalive, the write 2 s into the idle time.
KEEPALIVE = ["keepidle=2"]
NO_KEEPALIVE = ["keepalive=0", "keepidle=2", "send_after=2"]  # keepidle is not used without keepalive


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> Path:
    return run_ok(tmp_path_factory, "half-open", "e2ehalfk", KEEPALIVE)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    return run_ok(tmp_path_factory, "half-open", "e2ehalfw", NO_KEEPALIVE)


def events(folder: Path, program: str) -> list[dict]:
    return [json.loads(l) for l in (folder / f"{program}.log").read_text().splitlines()]


def write_events(folder: Path, program: str, evs: list[dict]) -> None:
    (folder / f"{program}.log").write_text("".join(json.dumps(e) + "\n" for e in evs))


def edit_capture(folder: Path, capture: str, edit) -> None:
    """Rewrites a capture: edit(packets) returns the new list (scapy packets, timestamps kept)."""
    pkts = list(rdpcap(str(folder / f"{capture}.pcap")))
    wrpcap(str(folder / f"{capture}.pcap"), edit(pkts))


def is_rst(p) -> bool:
    return "R" in str(p[TCP].flags)


# --- both variants pass, on what the kernel really did ------------------------------------------------


def test_keepalive_probe_draws_the_reset(probed):
    assert report(probed)["passed"] is True
    assert verdicts(probed) == dict.fromkeys(CHECKS, True)
    assert check(probed, "probe_draws_reset")["observed"].startswith("a keepalive probe at 2.0")
    assert '"error": "ECONNRESET"' in (probed / "client.log").read_text()
    lost = next(e for e in events(probed, "server") if e["event"] == "lost")
    assert lost["error"] == "ECONNABORTED"
    forget = next(e for e in json.loads((probed / "manifest.json").read_text())["timeline"] if e["step"] == "forget")
    assert forget["destroyed"] == 1 and forget["commands"][0][:3] == ["iptables", "-w", "-I"]
    # dest's capture: the exchange, then nothing from dest until the RST that answers the probe.
    dest = [p for p in rdpcap(str(probed / "dest.pcap")) if p[IP].src == "10.0.1.2"]
    assert is_rst(dest[-1]) and not any(is_rst(p) for p in dest[:-1]) and not any("F" in str(p[TCP].flags) for p in dest)


def test_without_keepalive_the_write_draws_the_reset(written):
    assert verdicts(written) == dict.fromkeys(CHECKS, True)
    observed = check(written, "probe_draws_reset")["observed"]
    assert observed.startswith("data at 2.0"), observed
    assert any(e["event"] == "sent_again" for e in events(written, "client"))


def test_a_write_due_before_the_probe_draws_the_reset(tmp_path):
    """Keepalive on, but the write (1 s) comes before the probe (3 s): the model says the data draws it."""
    r = up("half-open", "e2ehalfe", ["keepidle=3", "send_after=1"], tmp_path / "r")
    assert r.returncode == 0, r.stdout
    assert check(tmp_path / "r", "probe_draws_reset")["observed"].startswith("data at 1.0")


def test_measure_sets_each_time_beside_the_model(probed, written):
    from lab.report import measures
    import lab.session.catalog  # noqa: F401  (registers the measures)

    figures, problems = measures.run(probed)
    half = figures["half-open"]
    assert problems == [] and half["probes (count)"] == 1 == half["model: probes (count)"]
    assert 2000 <= half["segment that drew the RST"] <= 2040 and half["model: segment that drew the RST"] == 2000
    assert 0 <= half["RST after it"] < 10 and 0 <= half["ECONNRESET after the RST"] < 250
    figures, _ = measures.run(written)
    assert figures["half-open"]["probes (count)"] == 0 and 2000 <= figures["half-open"]["segment that drew the RST"] <= 2050


def test_labels_agree_with_wireshark(probed, written):
    for folder in (probed, written):
        for capture in ("source", "dest", "observer"):
            assert disagreements(folder / f"{capture}.pcap") == {k: [] for k in disagreements(folder / f"{capture}.pcap")}
    flags = tshark_flags(probed / "source.pcap")
    assert [f for f in flags.values() if "keep_alive" in f] and list(flags.values())[-1] == {"reset"}


# --- each check fails where it should ------------------------------------------------------------------


def test_probe_check_fails_under_another_keepidle_or_without_keepalive(probed, tmp_path):
    folder = edit_manifest(copy_results(probed, tmp_path / "a"), keepidle=3)
    v = rejudged(folder)
    assert v["probe_draws_reset"] is False and v["forgotten_quietly"] is True and v["reset_reported"] is True
    # keepidle 3 with the write at 10 s: the probe is still due first, at 3 s, not 2.
    assert "outside 2.995..3.26" in check(folder, "probe_draws_reset")["detail"]
    folder = edit_manifest(copy_results(probed, tmp_path / "b"), keepalive=0)
    assert rejudged(folder)["probe_draws_reset"] is False
    assert "with keepalive off" in check(folder, "probe_draws_reset")["detail"]


def test_write_check_fails_under_another_send_after(written, tmp_path):
    folder = edit_manifest(copy_results(written, tmp_path / "a"), send_after=3)
    assert rejudged(folder)["probe_draws_reset"] is False
    assert "data at 2.0" in check(folder, "probe_draws_reset")["detail"]


def test_checks_fail_without_the_reset(probed, tmp_path):
    folder = copy_results(probed, tmp_path / "c")
    edit_capture(folder, "source", lambda pkts: [p for p in pkts if not is_rst(p)])
    v = rejudged(folder)
    assert v["probe_draws_reset"] is False and v["reset_reported"] is False and v["forgotten_quietly"] is True
    assert "no RST from dest" in check(folder, "probe_draws_reset")["detail"]


def test_probe_check_fails_on_a_reset_out_of_place(probed, tmp_path):
    """An RST with another seq, one with an ACK, and one 50 ms late: none is the bare RST a host without the socket sends at once."""
    def edited(name: str, change) -> Path:
        folder = copy_results(probed, tmp_path / name)

        def edit(pkts):
            for p in pkts:
                if is_rst(p):
                    change(p)
            return pkts
        edit_capture(folder, "source", edit)
        assert rejudged(folder)["probe_draws_reset"] is False
        return folder

    def seq(p):
        p[TCP].seq = (p[TCP].seq + 1000) % (1 << 32)
        del p[TCP].chksum

    def with_ack(p):
        p[TCP].flags = "RA"
        del p[TCP].chksum

    def late(p):
        p.time = p.time + 0.05

    assert "is not the probe's ack" in check(edited("seq", seq), "probe_draws_reset")["detail"]
    assert "carries an ACK" in check(edited("ack", with_ack), "probe_draws_reset")["detail"]
    assert "beyond" in check(edited("late", late), "probe_draws_reset")["detail"]


def test_reset_check_fails_on_another_errno_or_a_late_one(probed, tmp_path):
    folder = copy_results(probed, tmp_path / "e")
    log = folder / "client.log"
    log.write_text(log.read_text().replace('"ECONNRESET"', '"ETIMEDOUT"'))
    v = rejudged(folder)
    assert v["reset_reported"] is False and v["probe_draws_reset"] is True
    assert "not ECONNRESET" in check(folder, "reset_reported")["detail"]

    folder = copy_results(probed, tmp_path / "l")
    evs = events(folder, "client")
    for e in evs:
        if e["event"] == "error":
            e["wall"] += 1.0
    write_events(folder, "client", evs)
    assert rejudged(folder)["reset_reported"] is False


def test_quiet_check_fails_when_dest_announced_it(probed, tmp_path):
    """dest's capture with the RST that `ss -K` alone sends (tcp_abort), right after the forget."""
    folder = copy_results(probed, tmp_path / "q")
    lost = next(e for e in events(folder, "server") if e["event"] == "lost")

    def add_rst(pkts):
        reply = [p for p in pkts if p[IP].src == "10.0.1.2" and len(p[TCP].payload)][-1]
        rst = Ether(src=reply[Ether].src, dst=reply[Ether].dst) / IP(src="10.0.1.2", dst="10.0.1.1") / TCP(
            sport=reply[TCP].sport, dport=reply[TCP].dport, flags="RA", seq=reply[TCP].seq + len(reply[TCP].payload),
            ack=reply[TCP].ack)
        rst.time = lost["wall"] + 0.0001
        return sorted([*pkts, rst], key=lambda p: float(p.time))

    edit_capture(folder, "dest", add_rst)
    v = rejudged(folder)
    assert v["forgotten_quietly"] is False and v["probe_draws_reset"] is True
    assert "dest sent an RST 0.000 s after it forgot" in check(folder, "forgotten_quietly")["detail"]

    folder = copy_results(probed, tmp_path / "n")
    write_events(folder, "server", [e for e in events(folder, "server") if e["event"] != "lost"])
    assert rejudged(folder)["forgotten_quietly"] is False
    assert "no 'lost' event" in check(folder, "forgotten_quietly")["detail"]


# --- the same on Docker -----------------------------------------------------------------------------------


def test_half_open_on_docker(tmp_path):
    r = up("half-open", "e2ehalfd", KEEPALIVE, tmp_path / "r", "--backend", "docker")
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["backend"] == "docker" and verdicts(tmp_path / "r") == dict.fromkeys(CHECKS, True)


# --- by hand: the reboot typed on dest ----------------------------------------------------------------------


def test_half_open_by_hand(tmp_path):
    from .test_handson import Person, wait_step

    lab = "hohalf"
    p = Person(lab, "half-open", ["keepidle=3", "send_after=20"])
    try:
        flat = " ".join(p.started.split())
        assert "ss -K state established '( sport = :8990 )'" in flat and "--keepalive 1 --keepidle 3" in flat
        for n, (shell, host) in enumerate((("capture", "source"), ("server", "dest"), ("client", "source")), 1):
            p.type(shell, host, p.commands[n - 1])
            wait_step(lab, n)
        p.tmux.wait_for(p.shells["client"], "now idle")
        p.type("forget", "dest", p.commands[3])  # the drop, `ss -K`, the drop lifted: typed on dest
        wait_step(lab, 4)
        p.tmux.wait_for(p.shells["client"], "ECONNRESET")
        wait_step(lab, 5)
        r = p.finish(tmp_path / "r")
        assert r.returncode == 0, r.stdout + r.stderr
        folder = tmp_path / "r"
        assert verdicts(folder) == dict.fromkeys(CHECKS | {"student_capture"}, True)
        assert check(folder, "probe_draws_reset")["observed"].startswith("a keepalive probe at 3.")
        m = json.loads((folder / "manifest.json").read_text())
        assert m["mode"] == "hands-on" and m["parameters"]["keepidle"] == 3
        assert namespaces(lab) == [] and not (STATE_ROOT / lab).exists()
    finally:
        p.close()


def test_ss_k_alone_tells_the_client_and_the_verdict_says_why(tmp_path):
    """The usual mistake, typed: `ss -K` without the drop. The kernel's tcp_abort sends an RST itself, so the
    client learns at once, before any probe: forgotten_quietly and probe_draws_reset fail, with the hint."""
    from .test_handson import Person, wait_step

    lab = "hohalfk"
    p = Person(lab, "half-open", ["keepidle=3", "send_after=20"])
    try:
        for n, (shell, host) in enumerate((("capture", "source"), ("server", "dest"), ("client", "source")), 1):
            p.type(shell, host, p.commands[n - 1])
            wait_step(lab, n)
        p.tmux.wait_for(p.shells["client"], "now idle")
        p.type("forget", "dest", "ss -K state established '( sport = :8990 )'")
        wait_step(lab, 4)
        p.tmux.wait_for(p.shells["client"], "ECONNRESET")
        r = p.finish(tmp_path / "r")
        folder = tmp_path / "r"
        assert r.returncode == 1, r.stdout + r.stderr
        v = verdicts(folder)
        assert v["forgotten_quietly"] is False and v["probe_draws_reset"] is False and v["reset_reported"] is True
        assert "dest sent an RST" in check(folder, "forgotten_quietly")["detail"]
        for name in ("forgotten_quietly", "probe_draws_reset"):
            assert "`ss -K` alone sends an RST (the kernel's tcp_abort)" in check(folder, name).get("hint", ""), check(folder, name)
        # On the wire: RST,ACK at SND.NXT from dest, no probe before it.
        dest = [q for q in rdpcap(str(folder / "source.pcap")) if q[IP].src == "10.0.1.2" and is_rst(q)]
        assert [str(q[TCP].flags) for q in dest] == ["RA"]
    finally:
        p.close()
