"""The half-open model: what draws the RST (the first keepalive probe or the client's write) and when,
from the last segment the client received, with the kernel's and the program's timer allowances."""
from __future__ import annotations

import pytest

from lab.analysis.kernel_model import timer_lateness
from lab.checks.half_open import DATA, MEASURE_SLACK, PROBE, WRITE_SLACK, HalfOpenModel


def model(keepalive=True, keepidle=4.0, send_after=10.0, hz=250) -> HalfOpenModel:
    return HalfOpenModel(keepalive, keepidle, 2.0, 3, send_after, hz)


def test_with_keepalive_the_first_probe_comes_at_keepidle_within_the_wheel_slack():
    m = model(keepidle=4.0)
    assert m.due() == [PROBE]
    w = m.probe()
    assert w.nominal == 4.0 and w.low < 4.0 < w.high
    assert w.high == pytest.approx(4.0 + timer_lateness(4.0, 250) + MEASURE_SLACK)  # 4.261 at HZ=250
    assert m.nominal() == 4.0


def test_without_keepalive_only_the_write_can_draw_it_however_long_the_idle():
    m = model(keepalive=False, keepidle=1.0, send_after=30.0)
    assert m.due() == [DATA]
    assert m.nominal() == 30.0


def test_a_write_due_before_the_probe_draws_it():
    assert model(keepidle=3.0, send_after=1.0).due() == [DATA]


def test_where_the_probe_and_the_write_overlap_either_may_draw_it():
    # The probe may come up to 0.26 s late at 4 s (HZ=250); a write at 4.1 s lies inside that.
    assert model(keepidle=4.0, send_after=4.1).due() == [PROBE, DATA]
    # ...and one just past the probe's window does not.
    assert model(keepidle=4.0, send_after=4.0 + timer_lateness(4.0, 250) + 2 * MEASURE_SLACK + 0.001).due() == [PROBE]


def test_the_write_counts_from_the_idle_start_and_is_never_early():
    w = model(keepalive=False, send_after=2.0).write(lead=0.0002)
    assert w.nominal == pytest.approx(2.0002)
    assert w.low == pytest.approx(2.0002 - MEASURE_SLACK) and w.high == pytest.approx(2.0002 + WRITE_SLACK)


def test_unknown_hz_takes_the_widest_probe_window():
    widest = model(hz=None).probe().high
    assert widest == max(model(hz=h).probe().high for h in (100, 250, 300, 1000)) > model(hz=1000).probe().high

