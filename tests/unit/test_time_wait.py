"""The time-wait exercise's pure logic: reading `ss -tan -o` lines and their timers (its traps), and the
kernel model's TIME_WAIT window against what was measured here (gone at 60.9-61.05 s)."""
import pytest

from lab.analysis.kernel_model import TCP_TIMEWAIT_LEN, time_wait
from lab.checks.time_wait import SsTime, parse_ss_line, ss_duration


@pytest.mark.parametrize(
    "text, seconds, resolution",
    [
        ("59sec", 59.0, 1.0),  # from 10 s up ss drops the milliseconds
        ("10sec", 10.0, 1.0),
        ("8.908ms", 8.908, 0.001),  # the trap: 8 s and 908 ms, not 8.9 ms
        ("9.720sec", 9.720, 0.001),  # the same from Debian 13's ss, which names the unit right
        ("1.005ms", 1.005, 0.001),
        ("908ms", 0.908, 0.001),
        ("5ms", 0.005, 0.001),
        ("1min", 60.0, 1.0),  # a fresh TIME_WAIT, 60 s left, read in the same jiffy
        ("1min5sec", 65.0, 1.0),
        ("12min", 720.0, 60.0),  # from 10 min up the seconds go too
        ("", 0.0, 0.001),  # expired and not reaped yet: timer:(timewait,,0)
    ],
)
def test_ss_timer_values_read_as_ss_prints_them(text, seconds, resolution):
    assert ss_duration(text) == SsTime(pytest.approx(seconds), resolution)


@pytest.mark.parametrize("text", ["59", "sec", "8.", "1.2.3ms", "59s", "-1sec"])
def test_what_is_not_an_ss_timer_is_refused(text):
    with pytest.raises(ValueError):
        ss_duration(text)


def test_a_time_wait_line_with_the_state_column():
    e = parse_ss_line("TIME-WAIT 0      0           10.0.1.1:40812     10.0.1.2:9200 timer:(timewait,59sec,0)")
    assert (e.state, e.local, e.peer, e.timer) == ("TIME-WAIT", ("10.0.1.1", 40812), ("10.0.1.2", 9200), "timewait")
    assert e.left == SsTime(59.0, 1.0)


def test_expired_and_below_ten_seconds():
    e = parse_ss_line("TIME-WAIT 0 0 10.0.1.1:40812 10.0.1.2:9200 timer:(timewait,,0)")
    assert e.left == SsTime(0.0, 0.001)
    e = parse_ss_line("TIME-WAIT 0 0 10.0.1.1:40812 10.0.1.2:9200 timer:(timewait,8.908ms,0)")
    assert e.left.seconds == pytest.approx(8.908)


def test_one_state_filter_leaves_the_state_column_out():
    """`ss -tan -o state time-wait` prints no State column: the caller says which state it asked for."""
    line = "0      0      10.0.1.1:40812     10.0.1.2:9200 timer:(timewait,59sec,0)"
    assert parse_ss_line(line) is None
    e = parse_ss_line(line, state="TIME-WAIT")
    assert e.state == "TIME-WAIT" and e.local == ("10.0.1.1", 40812) and e.left.seconds == 59.0


def test_established_without_timer_and_ipv6():
    e = parse_ss_line("ESTAB 0 0 10.0.1.1:40812 10.0.1.2:9200")
    assert e.state == "ESTAB" and e.timer is None and e.left is None
    e = parse_ss_line("TIME-WAIT 0 0 [fd00::1]:40812 [fd00::2]:9200 timer:(timewait,30sec,0)")
    assert e.local == ("fd00::1", 40812) and e.peer == ("fd00::2", 9200)


def test_header_and_junk_are_not_sockets():
    assert parse_ss_line("State Recv-Q Send-Q Local Address:Port Peer Address:Port Process") is None
    assert parse_ss_line("") is None
    assert parse_ss_line("LISTEN 0 16 0.0.0.0:9200 0.0.0.0:*") is None


def test_time_wait_is_sixty_seconds_reaped_within_the_wheel_slot():
    # 60 s is 15000 jiffies at HZ=250: level 3 of the wheel, 512-jiffy (2.048 s) slots, plus a jiffy.
    w = time_wait(250, slack=0.0)
    assert TCP_TIMEWAIT_LEN == 60.0 and w.nominal == 60.0 and w.low == 60.0
    assert w.high == pytest.approx(62.052)
    for measured in (60.9, 61.05):  # linux-tcp-timers.md: gone at 60.9-61.05 s
        assert w.holds(measured)
    assert not w.holds(59.9)  # never early
    # HZ unknown: the widest slot of any HZ (at HZ=100, 6000 jiffies land on 5.12 s slots).
    assert time_wait(None, slack=0.0).high == pytest.approx(65.13)
