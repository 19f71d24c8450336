"""The RTT check on synthetic logs: it passes at baseline + ways x delay, and fails late or early."""
import json

import pytest

from lab import checks


def folder_with(tmp_path, before: float, during: float, ways: int = 2):
    for name, ms in (("before", before), ("during", during)):
        (tmp_path / f"{name}.log").write_text(json.dumps({"event": "rtt", "connect_ms": [ms] * 5, "echo_ms": [ms] * 5}) + "\n")
    manifest = {"parameters": {"delay": 10}, "checks": [
        {"check": "rtt_follows_delay", "program": "during", "baseline": "before", "delay_ms": "{delay}", "ways": ways}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


@pytest.mark.parametrize(
    "during, ways, passed, words",
    [
        (20.4, 2, True, ""),
        (23.0, 2, False, "+2.980 ms off"),  # late by more than 2 ms
        (19.5, 2, False, "-0.520 ms off"),  # a delay is never shortened
        (10.3, 1, True, ""),
        (20.4, 1, False, "off"),
    ],
)
def test_rtt_follows_delay(tmp_path, during, ways, passed, words):
    (r,) = checks.run(folder_with(tmp_path, 0.02, during, ways))
    assert r.passed is passed, r
    assert words in r.detail


def test_missing_measurement_fails_with_a_reason(tmp_path):
    folder = folder_with(tmp_path, 0.02, 20.4)
    (folder / "during.log").write_text('{"event": "started"}\n')
    (r,) = checks.run(folder)
    assert not r.passed and "during.log has no 'rtt' event" in r.detail


def test_without_a_baseline_the_delay_alone_is_expected(tmp_path):
    folder = folder_with(tmp_path, 0.02, 20.4)
    m = json.loads((folder / "manifest.json").read_text())
    del m["checks"][0]["baseline"]
    (folder / "manifest.json").write_text(json.dumps(m))
    (r,) = checks.run(folder)
    assert r.passed and "handshake 20.000 ms" in r.expected
