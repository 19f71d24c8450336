"""The keepalive checks on synthetic results folders: each passes on the kernel's schedule and fails off it."""
import json

import pytest

from lab import checks
from lab.errors import LabError
from tests.pcapbuild import MACS, keepalive_results

EX1 = {"keepidle": 2, "keepintvl": 1, "keepcnt": 3, "user_timeout": 0}
# The reference's measurement: probes 2.007, 3.032, 4.055; RST at 5.08.
MEASURED = dict(probes=[2.007, 3.032, 4.055], rst=5.08)


def verdicts(folder):
    return {r.name: r for r in checks.run(folder)}


def test_measured_run_passes(tmp_path):
    v = verdicts(keepalive_results(tmp_path, params=EX1, **MEASURED))
    assert all(r.passed for r in v.values()), v
    assert "3 probes at 2.007, 3.032, 4.055" in v["keepalive_probes"].observed


@pytest.mark.parametrize(
    "change, failing, words",
    [
        (dict(probes=[2.007, 3.032], rst=4.06), {"keepalive_probes", "keepalive_abort"}, "2 probes where 3 were due"),
        (dict(probes=[2.007, 4.032, 6.055], rst=7.08), {"keepalive_probes", "keepalive_abort"}, "outside"),
        (dict(probes=[1.5, 2.5, 3.5], rst=4.5), {"keepalive_probes", "keepalive_abort"}, "first probe at 1.500"),
        (dict(probes=[2.007, 3.032, 4.055], rst=None), {"keepalive_abort"}, "no RST"),
        (dict(probes=[2.007, 3.032, 4.055], rst=5.08, error="ECONNRESET"), {"keepalive_abort"}, "not ETIMEDOUT"),
        (dict(probes=[2.007, 3.032, 4.055], rst=5.5), {"keepalive_abort"}, "RST at 5.500"),
    ],
)
def test_each_keepalive_check_fails_off_schedule(tmp_path, change, failing, words):
    v = verdicts(keepalive_results(tmp_path, params=EX1, **change))
    assert {n for n, r in v.items() if not r.passed} == failing
    assert any(words in v[n].detail for n in failing), {n: v[n].detail for n in failing}


def test_connection_established_fails_without_handshake_or_reply(tmp_path):
    folder = keepalive_results(tmp_path, params=EX1, **MEASURED)
    log = folder / "client.log"
    log.write_text("".join(l + "\n" for l in log.read_text().splitlines() if '"reply"' not in l))
    v = verdicts(folder)
    assert not v["connection_established"].passed
    assert "lacks the 'sent' or 'reply' event" in v["connection_established"].detail


def test_missing_capture_fails_every_check_with_a_reason(tmp_path):
    folder = keepalive_results(tmp_path, params=EX1, **MEASURED)
    (folder / "source.pcap").unlink()
    v = verdicts(folder)
    assert not any(r.passed for r in v.values())
    assert all("source.pcap is missing" in r.detail for r in v.values())


UT = ["connection_established", "keepalive_probes", "keepalive_abort", "user_timeout_decides"]


def test_user_timeout_decides(tmp_path):
    # Reference: T=2 I=1 U=2500 gives one probe at 2.02 and the abort at 3.05 whatever KEEPCNT says.
    params = {"keepidle": 2, "keepintvl": 1, "keepcnt": 3, "user_timeout": 2500}
    v = verdicts(keepalive_results(tmp_path / "a", params=params, probes=[2.02], rst=3.05, checks=UT))
    assert all(r.passed for r in v.values()), v
    # The same packets re-checked as if U had been 0: KEEPCNT would have decided, so probes and abort fail.
    v = verdicts(keepalive_results(tmp_path / "b", params={**params, "user_timeout": 0}, probes=[2.02], rst=3.05, checks=UT))
    assert not v["keepalive_probes"].passed and not v["user_timeout_decides"].passed
    # A capture where KEEPCNT decided although U was set.
    v = verdicts(keepalive_results(tmp_path / "c", params=params, probes=[2.0, 3.03, 4.06], rst=5.09, checks=UT))
    assert not v["user_timeout_decides"].passed
    assert "3 probes is KEEPCNT" in v["user_timeout_decides"].detail


def test_user_timeout_check_refuses_parameters_that_cannot_show_it(tmp_path):
    params = {"keepidle": 1, "keepintvl": 1, "keepcnt": 2, "user_timeout": 3000}
    v = verdicts(keepalive_results(tmp_path, params=params, probes=[1.0, 2.03], rst=3.06, checks=UT))
    assert v["keepalive_probes"].passed and not v["user_timeout_decides"].passed
    assert "cannot show which decided" in v["user_timeout_decides"].detail


def test_hz_from_manifest_sets_tolerance(tmp_path):
    # 1.060 s between probes is outside HZ=250's allowance (1.037) but inside HZ=100's (1.091).
    sched = dict(probes=[2.007, 3.067, 4.127], rst=5.15)
    assert not verdicts(keepalive_results(tmp_path / "a", params=EX1, hz=250, **sched))["keepalive_probes"].passed
    assert verdicts(keepalive_results(tmp_path / "b", params=EX1, hz=100, **sched))["keepalive_probes"].passed


def test_recheck_reads_parameters_from_the_manifest(tmp_path):
    folder = keepalive_results(tmp_path, params=EX1, **MEASURED)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["parameters"]["keepcnt"] = 4
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert not verdicts(folder)["keepalive_probes"].passed


@pytest.mark.parametrize("offset", [-1, 1, 1000])
def test_abort_check_fails_when_the_rst_is_not_at_snd_nxt(tmp_path, offset):
    v = verdicts(keepalive_results(tmp_path, params=EX1, rst_seq_offset=offset, **MEASURED))
    assert not v["keepalive_abort"].passed
    assert "is not SND.NXT" in v["keepalive_abort"].detail


def test_unknown_hz_takes_the_widest_tolerance(tmp_path):
    # At HZ=250 a 4 s timer sits in the 256 ms wheel level; at HZ=100 it would be 80 ms. Unknown must allow 250's.
    params = {"keepidle": 4, "keepintvl": 2, "keepcnt": 3, "user_timeout": 0}
    v = verdicts(keepalive_results(tmp_path, params=params, probes=[4.167, 6.183, 8.199], rst=10.215, hz=None))
    assert v["keepalive_probes"].passed and v["keepalive_abort"].passed
    assert "HZ unknown" in v["keepalive_probes"].expected


def test_malformed_manifest_fails_checks_without_a_traceback(tmp_path):
    folder = keepalive_results(tmp_path, params=EX1, **MEASURED)
    m = json.loads((folder / "manifest.json").read_text())
    for spec in m["checks"]:
        spec.pop("keepcnt", None)
    (folder / "manifest.json").write_text(json.dumps(m))
    v = verdicts(folder)
    assert v["connection_established"].passed
    assert not v["keepalive_probes"].passed and "cannot evaluate keepalive_probes" in v["keepalive_probes"].detail
    (folder / "manifest.json").write_text("[1, 2]")
    with pytest.raises(LabError, match="not a tcplab manifest"):
        checks.run(folder)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda m: m.update(kernel="6.18"), "'kernel' is a mapping"),
        (lambda m: m.update(timeline=["bridge_drop"]), "'timeline' is a list of mappings"),
        (lambda m: m["checks"].append("keepalive_probes"), "each entry of 'checks'"),
        (lambda m: m["checks"].append({"capture": "source"}), "each entry of 'checks'"),
    ],
)
def test_hand_edited_manifests_are_refused_in_one_line(tmp_path, edit, words):
    folder = keepalive_results(tmp_path, params=EX1, **MEASURED)
    m = json.loads((folder / "manifest.json").read_text())
    edit(m)
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(LabError, match=words):
        checks.run(folder)


def test_a_capture_point_the_backend_lacked_is_read_from_the_one_standing_for_it(tmp_path):
    """An SSH inventory without an observer: checks naming the observer's capture read source.pcap,
    which the manifest lists as standing for it; without that entry they fail as missing."""
    folder = keepalive_results(tmp_path, params=EX1, **MEASURED)
    m = json.loads((folder / "manifest.json").read_text())
    for c in m["checks"]:
        c["capture"] = "observer"
    (folder / "manifest.json").write_text(json.dumps(m))
    assert not any(r.passed for r in verdicts(folder).values())
    m["captures"] = [{"name": "source", "file": "source.pcap", "stands_for": ["observer"]}]
    (folder / "manifest.json").write_text(json.dumps(m))
    assert all(r.passed for r in verdicts(folder).values())


def test_one_probe_reads_as_one_probe(tmp_path):
    # T=2 I=1 U=2500: one probe, then the abort (the reference's measurement), and no interval to show.
    params = {"keepidle": 2, "keepintvl": 1, "keepcnt": 3, "user_timeout": 2500}
    v = verdicts(keepalive_results(tmp_path, params=params, probes=[2.02], rst=3.05, checks=UT))
    assert all(r.passed for r in v.values()), v
    probes = v["keepalive_probes"]
    assert probes.observed == "1 probe at 2.020 s"
    assert probes.expected.startswith("1 probe (the user timeout decides")
    assert v["keepalive_abort"].expected.startswith("after 1 probe: RST")
    assert v["user_timeout_decides"].observed == "1 probe, abort at 3.050 s"
    for r in v.values():
        assert "1 probes" not in r.expected + r.observed and "none s" not in r.expected + r.observed


def test_no_probe_at_all_says_so(tmp_path):
    v = verdicts(keepalive_results(tmp_path, params=EX1, probes=[], rst=None))
    assert v["keepalive_probes"].observed == "0 probes" and not v["keepalive_probes"].passed
    assert "0 probes where 3 were due" in v["keepalive_probes"].detail


def test_user_timeout_check_without_a_user_timeout_says_what_it_needs(tmp_path):
    params = {**EX1, "user_timeout": 0}
    v = verdicts(keepalive_results(tmp_path, params=params, **MEASURED, checks=UT))
    check = v["user_timeout_decides"]
    assert not check.passed and "?" not in check.expected
    assert check.expected.startswith("a user timeout (U > 0)") and "set user_timeout > 0" in check.detail


def test_what_finish_made_after_a_run_by_hand_is_not_judged(tmp_path):
    """A person's run: the client gave up as it should; then `invoke finish` stopped the server, whose
    FIN (sent again once finish had taken the drop rule away) met the client's RST. Cut where finish
    began on the capturing machine, by its own clock, the run passes; judged whole, it would not."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap, wrpcap

    from tests.pcapbuild import CLIENT, SERVER
    folder = keepalive_results(tmp_path / "run", params=EX1, **MEASURED)
    packets = list(rdpcap(str(folder / "source.pcap")))
    t0, last = float(packets[0].time), packets[-1]
    fin = Ether(**MACS) / IP(src=SERVER[0], dst=CLIENT[0]) / TCP(sport=SERVER[1], dport=CLIENT[1], flags="FPA",
                                                           seq=last[TCP].ack, ack=last[TCP].seq)
    rst = Ether(**MACS) / IP(src=CLIENT[0], dst=SERVER[0]) / TCP(sport=CLIENT[1], dport=SERVER[1], flags="R", seq=last[TCP].seq)
    fin.time, rst.time = t0 + 20.0, t0 + 20.001
    wrpcap(str(folder / "source.pcap"), packets + [fin, rst])
    assert not all(r.passed for r in verdicts(folder).values())
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["hands_on"] = {"finish_began": t0 + 99.0, "finish_began_on": {"source": t0 + 15.0}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    v = verdicts(folder)
    assert all(r.passed for r in v.values()), v
