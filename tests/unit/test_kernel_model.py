"""The kernel model against the timer wheel and the measurements in shared/reference/linux-tcp-timers.md."""
import pytest

from lab.analysis.kernel_model import KeepaliveModel, RetransmitModel, SynRetryModel, backoff_boundary, timer_lateness, timer_slot


@pytest.mark.parametrize(
    "delay, slot",
    [(0.004, 0.004), (0.2, 0.004), (0.25, 0.032), (1.0, 0.032), (2.0, 0.032), (2.02, 0.256), (10.0, 0.256), (16.2, 2.048), (60.0, 2.048)],
)
def test_timer_slot_at_hz_250(delay, slot):
    assert timer_slot(delay, 250) == pytest.approx(slot)


def test_timer_slot_scales_with_hz():
    # At HZ=1000 a jiffy is 1 ms; 1 s is 1000 jiffies, level 2 (64 ms slots).
    assert timer_slot(1.0, 1000) == pytest.approx(0.064)
    assert timer_lateness(0.05, 1000) == pytest.approx(0.002)


def test_measured_keepalive_without_user_timeout_fits():
    # Reference: T=2 I=1 CNT=3: probes 2.007, 3.032, 4.055; RST and ETIMEDOUT at 5.08.
    m = KeepaliveModel(2, 1, 3, 0, 250)
    assert m.probe_counts() == [3]
    assert m.first_probe().holds(2.007)
    assert all(m.interval().holds(iv) for iv in (1.025, 1.023))
    assert m.abort(3).holds(5.08)


@pytest.mark.parametrize("u, probes, abort", [(2500, 1, 3.05), (10000, 8, 10.20)])
def test_measured_keepalive_with_user_timeout_fits(u, probes, abort):
    m = KeepaliveModel(2, 1, 3, u, 250)
    assert m.probe_counts() == [probes]
    assert m.abort(probes).holds(abort)


def test_user_timeout_ignores_keepcnt_both_ways():
    assert KeepaliveModel(4, 2, 9, 9000, 250).probe_counts() == [3]  # fewer than KEEPCNT
    assert KeepaliveModel(1, 1, 2, 4000, 250).probe_counts() == [3]  # more than KEEPCNT


def test_at_least_one_probe_before_a_user_timeout_abort():
    assert KeepaliveModel(5, 1, 9, 100, 250).probe_counts() == [1]


def test_user_timeout_within_slack_of_a_tick_allows_both_neighbours():
    # Tick 3 is nominally at 5.000 s but may run up to ~0.14 s late, past U = 5.05 s.
    assert KeepaliveModel(2, 1, 9, 5050, 250).probe_counts() == [3, 4]
    assert KeepaliveModel(2, 1, 9, 5500, 250).probe_counts() == [4]


def test_windows_reject_the_wrong_schedule():
    m = KeepaliveModel(2, 1, 3, 0, 250)
    assert not m.interval().holds(2.0)
    assert not m.first_probe().holds(1.5)
    assert not m.abort(3).holds(4.0)
    assert not m.abort(3).holds(5.3)


def test_kernel_changes_are_named_between_the_kernels_that_differ():
    from lab.analysis.kernel_model import changes_between, release_version

    assert release_version("6.12.117+deb13-amd64") == (6, 12)
    assert release_version("6.1.0-50-amd64") == (6, 1)
    assert release_version("unknown") is None
    window = changes_between(["6.1.0-50-amd64", "6.12.117+deb13-amd64"], {"window"})
    assert window and all(before == ["6.1.0-50-amd64"] and after == ["6.12.117+deb13-amd64"] for _, before, after in window)
    # Keepalive did not change from 6.1 to 6.18: nothing to name, one model for all.
    assert changes_between(["6.1.0-50-amd64", "6.12.117+deb13-amd64", "6.18.44"], {"keepalive"}) == []
    # Kernels on the same side of every change: nothing either.
    assert changes_between(["6.12.1", "6.13.2"], {"window", "persist"}) == []


# Retransmission with data in flight (the reference's measurements on 6.18, HZ=250, RTO 204 ms).


def test_tcp_retries2_is_a_time_from_the_first_rto_retransmission():
    assert backoff_boundary(15, 0.2) == pytest.approx(924.6)  # the linear part at 120 s past retries2=9
    assert backoff_boundary(5, 0.2) == pytest.approx(12.6)
    m = RetransmitModel(rto=0.204, srtt=0.00005, retries2=5, user_timeout_ms=0, hz=250)
    assert m.retransmission_counts() == [5]
    # measured: ETIMEDOUT 13.29-13.40 s after the send, the first RTO retransmission at about 0.414
    w = m.abort(5, 0.414)
    assert w.holds(13.30) and w.holds(13.40) and not w.holds(12.9)


def test_a_user_timeout_ends_it_at_the_first_rto_retransmission_plus_u():
    m = RetransmitModel(rto=0.204, srtt=0.00005, retries2=15, user_timeout_ms=3000, hz=250)
    assert m.retransmission_counts() == [4]
    w = m.abort(4, 0.414)
    assert w.holds(3.419) and w.holds(3.422) and not w.holds(3.40)


def test_a_boundary_within_timer_slack_of_an_expiry_allows_either_count():
    assert RetransmitModel(0.204, 0.00005, 4, 0, 250).retransmission_counts() == [4, 5]
    assert RetransmitModel(0.204, 0.00005, 3, 0, 250).retransmission_counts() == [4]


def test_the_probe_comes_after_the_pto_never_later_than_the_rto():
    assert RetransmitModel(0.204, 0.00005, 15, 0, 250).pto == pytest.approx(0.204)
    assert RetransmitModel(0.300, 0.020, 15, 0, 250).pto == pytest.approx(0.240)  # 2 x 20 ms + 200 ms
    assert RetransmitModel(0.204, 0.00005, 15, 0, 250, tlp=False).intervals(2) == [0.204, 0.408]


def test_syn_retries_on_6_18_are_linear_first_and_end_on_a_count_or_a_time():
    assert SynRetryModel(3, 4, 0, 250).outcome()[:2] == (7, 19.0)  # measured 19.45-19.47 s
    assert SynRetryModel(2, 4, 0, 250).outcome()[:2] == (5, 7.0)  # the time limit first; measured 7.13
    assert SynRetryModel(6, 4, 0, 250).outcome()[:2] == (10, 131.0)
    assert SynRetryModel(6, 4, 0, 250).textbook() == [1, 3, 7, 15, 31, 63]
    assert SynRetryModel(6, 4, 2500, 250).failure().holds(2.53)  # measured 2.524-2.531


def test_an_expiry_due_just_before_u_may_fire_past_it_and_abort_there():
    # The 4th RTO expiry is due 2.856 s after the first; its timers may run 0.108 s late, past U=2.9 s.
    assert RetransmitModel(0.204, 0.00005, 15, 2900, 250).retransmission_counts() == [3, 4]


def test_a_vcpu_stall_widens_only_the_late_side():
    plain, stalled = RetransmitModel(0.204, 0.00005, 3, 0, 250), RetransmitModel(0.204, 0.00005, 3, 0, 250, stall=0.004)
    assert stalled.probe().low == plain.probe().low and stalled.probe().high == pytest.approx(plain.probe().high + 0.004)
    assert stalled.interval(0.408).low == plain.interval(0.408).low
