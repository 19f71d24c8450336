"""The lab server's pure parts: class files, per-student variants, tokens, results files by name, the
class's CSV and JUnit XML. (The server itself runs for real in tests/e2e/test_serve_*.py.)"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from lab.errors import ConfigError, LabError
from lab.serve import classfile, variants, views
from lab.serve.store import Store
from lab.serve.tokens import Users, digest, issue
from lab.spec import exercise as exercise_mod

EX2 = exercise_mod.load("exercise2")


def test_a_students_values_are_theirs_alone_stable_and_within_the_range():
    ranges = {"keepidle": (3, 9), "keepintvl": (1, 4), "user_timeout": (6000, 15000)}
    ann = variants.values("secret-of-the-class", "ann", EX2, ranges)
    assert ann == variants.values("secret-of-the-class", "ann", EX2, ranges)
    assert 3 <= ann["keepidle"] <= 9 and 1 <= ann["keepintvl"] <= 4 and 6000 <= ann["user_timeout"] <= 15000
    everyone = [variants.values("secret-of-the-class", f"s{i}", EX2, ranges) for i in range(40)]
    assert len({v["user_timeout"] for v in everyone}) > 30  # spread over the range, not one value for all
    assert {v["keepidle"] for v in everyone} == set(range(3, 10))  # every value of a small range is drawn
    assert variants.values("another-secret-entirely", "ann", EX2, ranges) != ann  # the secret decides
    assert variants.values("x" * 20, "ann", EX2, {"keepidle": (5, 5)}) == {"keepidle": 5}


def test_a_variant_outside_what_the_parameter_allows_is_refused_as_set_would_be():
    with pytest.raises(LabError, match="keepidle=0 is below the minimum 1"):
        variants.values("secret-of-the-class", "ann", EX2, {"keepidle": (0, 0)})


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "class.yml"
    p.write_text(text)
    return p


def test_a_class_file_read_with_its_variants(tmp_path):
    c = classfile.load(write(tmp_path, "class: tcp\nstudents: [ann, bob.b]\nexercises:\n  exercise2:\n"
                                       "    variants: {keepidle: [3, 9]}\n  persist-timer: {}\n"))
    assert (c.name, c.students, c.exercises) == ("tcp", ["ann", "bob.b"], ["exercise2", "persist-timer"])
    assert c.variants == {"exercise2": {"keepidle": (3, 9)}}
    assert classfile.load(write(tmp_path, "students: [ann]\n")).exercises == exercise_mod.known()


@pytest.mark.parametrize("text, field, said", [
    ("students: []\n", "students", "name at least one student"),
    ("students: [ann, ann]\n", "students[1]", "named twice"),
    ("students: [instructor]\n", "students[0]", "instructor"),
    ("students: [Ann]\n", "students[0]", "use 1-32 of a-z"),
    ("students: [ann]\nteachers: [x]\n", "teachers", "unknown field"),
    ("students: [ann]\nexercises: {nope: {}}\n", "exercises.nope", "unknown exercise"),
    ("students: [ann]\nexercises: {exercise2: {variants: {nope: [1, 2]}}}\n", "exercises.exercise2.variants.nope", "no parameter"),
    ("students: [ann]\nexercises: {exercise2: {variants: {keepidle: [5]}}}\n", "exercises.exercise2.variants.keepidle", "write [low, high]"),
    ("students: [ann]\nexercises: {exercise2: {variants: {keepidle: [0, 5]}}}\n", "exercises.exercise2.variants.keepidle", "below the minimum"),
    ("students: [ann]\nsecret: short\n", "secret", "at least 16"),
])
def test_a_bad_class_file_names_the_file_and_the_field(tmp_path, text, field, said):
    with pytest.raises(ConfigError) as e:
        classfile.load(write(tmp_path, text))
    assert e.value.field == field and said in str(e.value) and str(tmp_path) in str(e.value)


def test_tokens_kept_across_restarts_stored_hashed_and_private(tmp_path):
    store = Store(tmp_path / "serve.db")
    klass = classfile.ClassFile("c", ["ann", "bob"], ["exercise2"])
    first = issue(store, klass, tmp_path)
    assert set(first) == {"ann", "bob", "instructor"} and len(set(first.values())) == 3
    assert stat.S_IMODE(os.stat(tmp_path / "tokens.json").st_mode) == 0o600
    assert json.loads((tmp_path / "tokens.json").read_text()) == first
    assert all(first[u["name"]] not in json.dumps(dict(u)) and u["token_hash"] == digest(first[u["name"]]) for u in store.users())
    again = issue(store, classfile.ClassFile("c", ["ann", "cat"], ["exercise2"]), tmp_path)
    assert again["ann"] == first["ann"] and again["instructor"] == first["instructor"] and "bob" not in again
    users = Users(store, b"csrf-secret")
    assert users.find(again["ann"]).name == "ann" and users.find(first["bob"]) is None and users.find("") is None
    assert users.find(again["instructor"]).instructor
    ann = users.find(again["ann"])
    assert users.csrf_ok(ann, users.csrf(ann)) and not users.csrf_ok(ann, "0" * 32) and not users.csrf_ok(ann, None)


def test_a_results_file_is_found_by_name_never_by_path_nor_through_a_symlink(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "report.json").write_text("{}")
    (folder / "events").mkdir()
    (folder / "events" / "x.log").write_text("x")
    (tmp_path / "secret").write_text("not yours")
    (folder / "evil").symlink_to(tmp_path / "secret")
    lab = {"folder": str(folder)}
    assert views.result_files(lab) == ["report.json"]
    fd, size = views.open_result(lab, "report.json")
    os.close(fd)
    assert size == 2
    for name in ("evil", "../secret", "events/x.log", str(tmp_path / "secret"), "events", "", "."):
        assert views.open_result(lab, name) is None, name


def lab_row(student, exercise, passed=None, state="done", error=None):
    verdict = None if passed is None else {"passed": passed, "checks": [{"name": "a", "passed": True}, {"name": "b", "passed": passed, "observed": "0 probes", "hint": "step 4"}]}
    return {"id": f"{student}{exercise}", "student": student, "exercise": exercise, "mode": "auto", "state": state, "created": 1.0,
            "ended": 2.0, "verdict": verdict, "error": error, "sets": {}, "variant": {}}


def test_the_class_results_as_csv_and_junit():
    labs = [lab_row("ann", "exercise2", True), lab_row("bob", "exercise2", False), lab_row("bob", "exercise1", state="failed", error="no")]
    rows = views.class_csv(labs).splitlines()
    assert rows[0].startswith("student,exercise,lab,mode,state,passed,checks_passed,checks")
    assert len(rows) == 4 and rows[1].startswith("ann,exercise2,annexercise2,auto,done,yes,2,2,")
    assert {r.split(",1970")[0] for r in rows[2:]} == {"bob,exercise1,bobexercise1,auto,failed,,0,0", "bob,exercise2,bobexercise2,auto,done,no,1,2"}
    root = ET.fromstring(views.class_junit("c", ["ann", "bob", "cat"], labs))
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"ann", "bob", "cat"}
    assert (suites["ann"].get("tests"), suites["ann"].get("failures")) == ("2", "0")
    assert (suites["bob"].get("tests"), suites["bob"].get("failures"), suites["bob"].get("errors")) == ("3", "1", "1")
    failure = suites["bob"].find("testcase[@name='b']/failure")
    assert failure.get("message") == "0 probes" and "hint: step 4" in failure.text
    assert suites["cat"].get("tests") == "0"


def test_the_address_to_listen_on():
    from lab.serve.main import _loopback, parse_listen

    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen(":8080") == ("127.0.0.1", 8080)
    for bad in ("8080", "localhost", "1.2.3.4:0", "1.2.3.4:70000", "example.org:80", "1.2.3.4:http"):
        with pytest.raises(LabError, match="--listen"):
            parse_listen(bad)
    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("localhost")
    assert not _loopback("0.0.0.0") and not _loopback("192.0.2.7")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_a_value_that_is_not_a_finite_number_is_refused(value):
    # No bound holds for NaN (every comparison with it is false): refused as what it is, on the command line too.
    with pytest.raises(LabError, match="not a finite number"):
        exercise_mod.load("persist-timer", [f"duration={value}"])


def test_a_spare_worker_ends_when_its_server_went_before_it_looked(tmp_path):
    """A spare worker started just before its server was SIGKILLed imports for a while; when it first looks,
    its parent is already another process. It ends then (the server's PID is passed to it), and also when
    its folder is removed; while both are there, it waits."""
    import subprocess
    import sys
    import time

    def spare(server_pid: int, folder):
        folder.mkdir()
        return subprocess.Popen([sys.executable, "-m", "lab.serve.worker", "--spare", str(folder), str(server_pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    orphan = spare(1, tmp_path / "a")  # pid 1 is not its parent: the server it names is gone
    assert orphan.wait(timeout=30) == 0
    waiting = spare(os.getpid(), tmp_path / "b")  # this test is its parent, the server it names
    time.sleep(3)
    assert waiting.poll() is None, "a spare whose server lives must wait"
    (tmp_path / "b").rmdir()
    assert waiting.wait(timeout=30) == 0
