"""Persist-timer and lost-update checks on synthetic results folders: each passes on the kernel's
schedule and fails where it should."""
import pytest

from lab import checks
from lab.analysis.kernel_model import PersistModel, textbook_persist_schedule
from tests.pcapbuild import lost_update_results, persist_results


def verdicts(folder):
    return {r.name: r for r in checks.run(folder)}


def failing(folder):
    return {n for n, r in verdicts(folder).items() if not r.passed}


def test_persist_model_matches_the_reference_measurement():
    # Reference (veth): intervals 0.21, 0.44, 0.86, 1.70, 3.52, 6.91, 13.6 s; the RTO in force was ~212 ms.
    m = PersistModel(0.212, 250)
    assert all(m.interval(k).holds(iv) for k, iv in enumerate([0.212, 0.44, 0.86, 1.70, 3.52, 6.91, 13.6]))
    assert not m.interval(1).holds(0.212)  # no doubling: wrong
    assert PersistModel(0.05, 250).base == 0.2  # the 200 ms floor
    assert PersistModel(100, 250).nominal_interval(3) == 120.0  # the 120 s cap
    assert textbook_persist_schedule(40) == [5.0, 15.0, 35.0]


def test_probe_count_near_the_reopening_allows_both():
    m = PersistModel(0.208, 250)
    assert m.probe_counts(4.0) == [4]
    assert m.probe_counts(3.13) == [3, 4]  # probe 4 is due at 3.120 and may run late past 3.13


def test_kernel_schedule_passes(tmp_path):
    v = verdicts(persist_results(tmp_path))
    assert all(r.passed for r in v.values()), {n: r.detail for n, r in v.items()}
    assert "0.208, 0.624, 1.456, 3.120" in v["window_probes"].expected
    assert "would not have started" in v["window_probes"].expected  # the textbook's first probe is at 5 s


@pytest.mark.parametrize(
    "change, fails, words",
    [
        # The textbook's schedule: 5 s, then 10 s.
        (dict(probes=[5.0, 15.0], reopen=16.0), {"window_probes"}, "outside"),
        # Constant intervals: no doubling.
        (dict(probes=[0.208, 0.416, 0.624, 0.832], reopen=1.0), {"window_probes"}, "outside"),
        # The right times, but under another RTO (1 s), as a run with other parameters would have it.
        (dict(rto_us=1_000_000), {"window_probes"}, "were due"),
        # BSD's keep-alive form (one old byte) and the RFC form (one new byte): not what Linux sends.
        (dict(probe_kind="garbage"), {"window_probes"}, "not in Linux's form"),
        (dict(probe_kind="rfc"), {"window_probes"}, "not in Linux's form"),
        # The window never reopens.
        (dict(reopen=None), {"window_reopened"}, "never reopened"),
        # The sender waits longer than the next probe interval (0.208 * 16 = 3.3 s) after the reopening.
        (dict(resume_gap=4.0), {"window_reopened"}, "over one probe interval"),
        (dict(received_sha="other"), {"stream_intact"}, "SHA-256"),
        # Both logs agree with each other, but not with what the wire carried.
        (dict(logged_bytes=3000), {"stream_intact"}, "bytes acknowledged"),
    ],
)
def test_each_persist_check_fails_off_the_kernel(tmp_path, change, fails, words):
    folder = persist_results(tmp_path, **change)
    v = verdicts(folder)
    assert {n for n, r in v.items() if not r.passed} == fails, {n: r.detail for n, r in v.items()}
    assert any(words in v[n].detail for n in fails), {n: v[n].detail for n in fails}


def test_no_zero_window_fails_the_stall_checks(tmp_path):
    folder = persist_results(tmp_path)
    import json
    m = json.loads((folder / "manifest.json").read_text())
    (folder / "source.pcap").rename(folder / "other.pcap")
    # A capture of a connection that never stalled: a keepalive exchange.
    from tests.pcapbuild import keepalive_results
    keepalive_results(tmp_path / "k", params={"keepidle": 1, "keepintvl": 1, "keepcnt": 1, "user_timeout": 0}, probes=[], rst=None)
    (tmp_path / "k" / "source.pcap").rename(folder / "source.pcap")
    (folder / "manifest.json").write_text(json.dumps(m))
    v = verdicts(folder)
    for name in ("zero_window_advertised", "window_probes", "window_reopened"):
        assert not v[name].passed and "no zero window" in v[name].detail


def test_lost_update_passes(tmp_path):
    v = verdicts(lost_update_results(tmp_path))
    assert all(r.passed for r in v.values()), {n: r.detail for n, r in v.items()}
    assert v["no_data_while_lost"].observed.startswith("2 probes and 0 data segments")


@pytest.mark.parametrize(
    "change, fails",
    [
        (dict(leak_update=True), {"window_update_lost", "no_data_while_lost", "probe_reopens"}),
        # Sent before the path began dropping: nothing was lost, so nothing had to be recovered by a probe.
        (dict(update_at=0.5), {"window_update_lost", "no_data_while_lost", "probe_reopens"}),
        (dict(data_during_loss=True), {"no_data_while_lost"}),
        (dict(resume_gap=0.5), {"data_resumes"}),
        # The loss "ended" at 5 s, yet the probe at 6.448 s went unanswered: not the first probe after the loss.
        (dict(drop=(1.0, 7.0), probes=[0.208, 0.624, 1.456, 3.12, 6.448, 13.104], claimed_restore=5.0), {"probe_reopens"}),
    ],
)
def test_each_lost_update_check_fails_where_it_should(tmp_path, change, fails):
    assert failing(lost_update_results(tmp_path, **change)) == fails
