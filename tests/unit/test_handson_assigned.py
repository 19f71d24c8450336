"""Hands-on folders judged at the values the lab assigned (a class's variant, `start --strict`): the
manifest `invoke finish` writes (collect), the hint a failed check gets when the person typed another
value, and the verdict's line. Folders are built as `invoke finish` leaves them: the lab's capture of
the person's run (scapy), the client's log with the options it set, and the manifest's hands-on part
made by collect itself from those options."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pytest

from lab.handson import collect, record
from lab.report import verdict
from lab.spec import exercise
from lab.spec.params import substitute
from tests.pcapbuild import keepalive_results

KEEPALIVE = ("keepidle", "keepintvl", "keepcnt", "user_timeout")
T0 = 1_000_000.0  # the captures' clock (pcapbuild's)


class Logged:
    """What the keeper's watcher read from the programs' logs: the client's 'options' event."""

    def __init__(self, options: dict):
        self.options = {"event": "options", "keepalive": 1, **options}
        self.facts: dict = {}
        self.runs: dict = {}

    def latest(self, program: str) -> list[dict]:
        return [self.options] if program == "client" else []


def filled_steps(ex: exercise.Exercise) -> list[dict]:
    """The exercise's steps as the keeper fills them for a lab, each seen done."""
    fill = {**ex.variables, "source.iface": "eth0", "dest.iface": "eth0", "observer.iface": "br0"}
    where = (ex.file, "hands_on.steps")
    return [{"do": str(substitute(s.do, fill, where)), "why": "", "host": s.host, "run": str(substitute(s.run, fill, where)),
             "kinds": [c.kind for c in s.done_when], "when": [[c.kind, substitute(c.args, fill, where)] for c in s.done_when],
             "done_at": T0 + n} for n, s in enumerate(ex.hands_on.steps)]


def finished(tmp_path: Path, name: str, lab: dict, typed: dict, assigned: tuple, probes: list[float], rst: Optional[float],
             own_capture: bool = False) -> Path:
    """The folder of a hands-on run of `name` whose lab has the values `lab`, where the client set `typed`
    (the wire shows `probes` and `rst`, seconds after the last received segment) and the parameters
    `assigned` are judged at the lab's values."""
    ex = exercise.load(name, [f"{k}={v}" for k, v in lab.items()])
    folder = keepalive_results(tmp_path / "r", probes, rst, params=dict(ex.values), checks=[c["check"] for c in ex.checks])
    options = {**{k: ex.values[k] for k in KEEPALIVE}, **typed}
    log = folder / "client.log"
    log.write_text(json.dumps({"event": "options", "wall": T0 - 0.1, "mono": 0.9, **options}) + "\n" + log.read_text())
    manifest = {**json.loads((folder / "manifest.json").read_text()), "exercise": name, "timeline": [], "captures": []}
    rec = record.Record(lab="t", exercise=name, sets=[], backend="netns", assigned={p: ex.values[p] for p in assigned},
                        steps=filled_steps(ex))
    logs = {"client": {"host": "source", "runs": 1, "file": "client.log"}, "server": {"host": "dest", "runs": 1, "file": None}}
    collect._judged_as_done(ex, rec, Logged(options), manifest, [], logs, {})
    if not own_capture:  # the check of the person's own capture is another test's (test_student_capture.py)
        manifest["checks"] = [c for c in manifest["checks"] if c["check"] != "student_capture"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def judged(folder: Path, capsys) -> tuple[bool, dict, str]:
    """check_folder's verdict, report.json's checks by name, and what it printed (on one line)."""
    passed = verdict.check_folder(folder)
    checks = {c["name"]: c for c in json.loads((folder / "report.json").read_text())["checks"]}
    return passed, checks, " ".join(capsys.readouterr().out.split())


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


EX2 = {"keepidle": 4, "keepintvl": 2, "keepcnt": 9, "user_timeout": 9000}
# What exercise2 with the values above shows: 3 probes (U=9000 ms over T=4 s, I=2 s), then the abort.
EX2_WIRE = ([4.02, 6.04, 8.06], 10.08)


def test_a_value_other_than_the_assigned_one_is_judged_at_the_assigned_one_and_the_hint_names_both(tmp_path, capsys):
    # The lab gave keepidle=7; the client was started with a neighbour's 4, and the wire shows it.
    folder = finished(tmp_path, "exercise2", {**EX2, "keepidle": 7}, {"keepidle": 4}, KEEPALIVE, *EX2_WIRE, own_capture=True)
    passed, checks, out = judged(folder, capsys)
    assert not passed
    m = manifest_of(folder)
    assert m["parameters"]["keepidle"] == 7 and m["hands_on"]["typed"]["keepidle"] == 4
    assert m["hands_on"]["assigned"] == {"keepidle": 7, "keepintvl": 2, "keepcnt": 9, "user_timeout": 9000}
    probes = checks["keepalive_probes"]
    assert not probes["passed"] and probes["observed"].startswith("3 probes at 4.020")
    assert probes["hint"] == ("your exercise asked for TCP_KEEPIDLE 7 s (keepidle=7, your lab's value) and the client set 4: "
                              "the wire shows the first probe 4.02 s after the last received segment; "
                              "run the client with --keepidle 7 (step 3)")
    # Every failed check judged against keepidle says so, before any other mistake is looked for.
    for name in ("keepalive_abort", "user_timeout_decides"):
        assert not checks[name]["passed"] and checks[name]["hint"] == probes["hint"], checks[name]
    # A check that keepidle does not enter keeps its own hint.
    assert not checks["student_capture"]["passed"] and "keepidle" not in checks["student_capture"]["hint"]
    assert checks["connection_established"]["passed"]
    assert "judged at your exercise's values: keepidle=7, keepintvl=2, keepcnt=9, user_timeout=9000 (the programs set keepidle=4)" in out
    assert "the client set 4" in out


def test_the_assigned_values_typed_pass_and_no_hint_says_otherwise(tmp_path, capsys):
    folder = finished(tmp_path, "exercise2", EX2, dict(EX2), KEEPALIVE, *EX2_WIRE)
    passed, checks, out = judged(folder, capsys)
    assert passed and all(c["passed"] and "hint" not in c for c in checks.values()), checks
    m = manifest_of(folder)
    assert m["hands_on"]["typed"] == m["hands_on"]["assigned"] == EX2 and m["parameters"]["keepidle"] == 4
    assert "judged at your exercise's values: keepidle=4, keepintvl=2, keepcnt=9, user_timeout=9000" in out
    assert "the programs set" not in out


@pytest.mark.parametrize(
    "name, lab, typed, wire, words",
    [
        # The lab's keepintvl=3 gives 2 probes 3 s apart; the client's 2 gives 3 probes 2 s apart.
        ("exercise2", {**EX2, "keepintvl": 3}, {"keepintvl": 2}, EX2_WIRE,
         ["TCP_KEEPINTVL 3 s (keepintvl=3, your lab's value) and the client set 2",
          "the wire shows the probes 2.02, 2.02 s apart", "run the client with --keepintvl 3 (step 3)"]),
        # exercise1 (no user timeout): the lab's KEEPCNT=5 gives 5 probes, the client's 3 gives 3.
        ("exercise1", {"keepidle": 4, "keepintvl": 2, "keepcnt": 5}, {"keepcnt": 3}, EX2_WIRE,
         ["TCP_KEEPCNT 5 (keepcnt=5, your lab's value) and the client set 3",
          "the wire shows 3 probes, then the abort (RST) 10.08 s after the last received segment",
          "run the client with --keepcnt 5 (step 3)"]),
        # U=5000 ms gives 1 probe (max(1, ceil((5-4)/2))) and the abort at the first tick at or after U: T + 1*I = 6 s.
        ("exercise2", EX2, {"user_timeout": 5000}, ([4.02], 6.04),
         ["TCP_USER_TIMEOUT 9000 ms (user_timeout=9000, your lab's value) and the client set 5000",
          "the wire shows the abort (RST) 6.04 s after the last received segment, after 1 probe",
          "run the client with --user-timeout 9000 (step 3)"]),
    ],
    ids=["keepintvl", "keepcnt", "user_timeout"],
)
def test_each_keepalive_parameter_typed_otherwise_is_named_with_what_the_wire_shows_of_it(tmp_path, capsys, name, lab, typed, wire, words):
    folder = finished(tmp_path, name, lab, typed, KEEPALIVE, *wire)
    passed, checks, _ = judged(folder, capsys)
    assert not passed and not checks["keepalive_probes"]["passed"]
    hint = checks["keepalive_probes"]["hint"]
    assert hint.startswith("your exercise asked for ") and all(w in hint for w in words), hint


def test_two_values_typed_otherwise_are_each_named_and_fixed_in_one_command(tmp_path, capsys):
    folder = finished(tmp_path, "exercise2", {**EX2, "keepidle": 7, "keepintvl": 3}, {"keepidle": 4, "keepintvl": 2}, KEEPALIVE, *EX2_WIRE)
    _, checks, _ = judged(folder, capsys)
    hint = checks["keepalive_probes"]["hint"]
    assert "TCP_KEEPIDLE 7 s (keepidle=7, your lab's value) and the client set 4: the wire shows the first probe 4.02 s" in hint
    assert "TCP_KEEPINTVL 3 s (keepintvl=3, your lab's value) and the client set 2: the wire shows the probes 2.02, 2.02 s apart" in hint
    assert hint.endswith("run the client with --keepidle 7 --keepintvl 3 (step 3)"), hint


def test_only_the_assigned_parameters_keep_the_labs_values(tmp_path):
    """A variant of keepidle alone: keepidle is judged at the lab's value, the rest at what the client set."""
    folder = finished(tmp_path, "exercise2", {**EX2, "keepidle": 7}, {"keepidle": 4, "keepcnt": 5, "user_timeout": 8000},
                      ("keepidle",), *EX2_WIRE)
    m = manifest_of(folder)
    hands = m["hands_on"]
    assert (m["parameters"]["keepidle"], m["parameters"]["keepcnt"], m["parameters"]["user_timeout"]) == (7, 5, 8000)
    assert hands["assigned"] == {"keepidle": 7}
    assert hands["typed"] == {"keepidle": 4, "keepintvl": 2, "keepcnt": 5, "user_timeout": 8000}
    assert set(hands["observed"]) == {"keepintvl", "keepcnt", "user_timeout"} and hands["unknown"] == []
    assert hands["typed_in"]["keepidle"] == {"program": "client", "step": 3, "argument": "--keepidle {keepidle}"}


def test_an_assigned_parameter_no_log_reports_is_judged_at_the_labs_value_and_not_called_unknown(tmp_path):
    ex = exercise.load("exercise2", ["keepidle=7"])
    manifest = {"parameters": dict(ex.values), "timeline": [], "captures": [], "checks": []}
    rec = record.Record(lab="t", exercise="exercise2", sets=[], backend="netns", assigned={"keepidle": 7, "port": 8990},
                        steps=filled_steps(ex))
    nothing = Logged({})
    nothing.latest = lambda program: []  # the client's log is missing
    collect._judged_as_done(ex, rec, nothing, manifest, [], {}, {})
    assert manifest["parameters"]["keepidle"] == 7 and manifest["hands_on"]["typed"] == {}
    assert manifest["hands_on"]["unknown"] == ["keepintvl", "keepcnt", "user_timeout"]
    assert manifest["hands_on"]["assigned"] == {"keepidle": 7, "port": 8990}


def test_without_assigned_values_what_the_client_set_is_judged_as_before(tmp_path, capsys):
    folder = finished(tmp_path, "exercise2", {**EX2, "keepidle": 7}, {"keepidle": 4}, (), *EX2_WIRE)
    passed, checks, out = judged(folder, capsys)
    assert passed and manifest_of(folder)["parameters"]["keepidle"] == 4, checks
    assert "judged with what the programs set: keepidle=4" in out and "your exercise's values" not in out
