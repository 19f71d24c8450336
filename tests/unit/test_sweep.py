"""Which `--set` items make a sweep, and the values each run gets."""
from __future__ import annotations

import shutil

import pytest

from lab.spec import exercise, sweep
from lab.errors import LabError


def test_one_value_each_is_no_sweep():
    assert sweep.plan("tcp-states", ["latency=5", "total=1000"], "t", {}) is None


def test_a_list_makes_one_run_per_value_in_order():
    plan = sweep.plan("tcp-states", ["total=1000", "latency=0, 2.5,10"], "t", {})
    assert plan.parameter == "latency" and plan.values == [0.0, 2.5, 10.0]
    assert [plan.folder(i) for i in range(3)] == ["latency-0", "latency-2.5", "latency-10"]
    # Each run keeps the other overrides and gets its own value, substituted into its steps.
    assert [ex.values["latency"] for ex in plan.exercises] == [0.0, 2.5, 10.0]
    assert all(ex.values["total"] == 1000 for ex in plan.exercises)
    impair = [next(s for s in ex.steps if s.kind == "impair") for ex in plan.exercises]
    assert [s.args["delay_ms"] for s in impair] == [0.0, 2.5, 10.0]


def test_a_string_parameter_keeps_its_commas(tmp_path):
    mine = tmp_path / "mine"
    shutil.copytree(exercise.EXERCISE_DIR / "tcp-states", mine)
    text = (mine / "exercise.yml").read_text().replace(
        "parameters:\n", 'parameters:\n  note: {type: str, default: "", help: "a free text"}\n', 1)
    (mine / "exercise.yml").write_text(text)
    assert sweep.plan(str(mine), ["note=a,b,c"], "t", {}) is None
    plan = sweep.plan(str(mine), ["note=a,b", "port=9100,9200"], "t", {})
    assert plan.parameter == "port" and plan.values == [9100, 9200]
    assert {ex.values["note"] for ex in plan.exercises} == {"a,b"}


@pytest.mark.parametrize("sets, words", [
    (["latency=1,x"], "latency='x' is not a float"),
    (["port=9100,9100"], "9100 is listed twice"),
    (["latency=1,"], "an empty value"),
    (["latency=1,2", "port=1,2"], "a sweep varies one parameter, and latency and port"),
    (["latency=1,nan"], "latency='nan' is not a finite number"),
])
def test_bad_lists_are_refused_before_anything_runs(sets, words):
    with pytest.raises(LabError, match=words):
        sweep.plan("tcp-states", sets, "t", {})


def test_values_that_print_alike_get_folders_apart():
    plan = sweep.plan("tcp-states", ["latency=0.1234561,0.1234562"], "t", {})
    assert plan.folder(0) != plan.folder(1)


def test_runs_that_differ_by_kernel_are_named_figure_by_figure():
    from lab.report.comparison import _differences

    def run(value, figures):
        return {"value": value, "ran": True, "figures": {"g": figures}}

    groups = {"g": ["probes (count)", "model: probes (count)", "probe 1", "acknowledged (bytes)"]}
    same = [run("host", {"probes (count)": 3.0, "model: probes (count)": 3.0, "probe 1": 4003.0, "acknowledged (bytes)": 20000.0}),
            run("bookworm", {"probes (count)": 3.0, "model: probes (count)": 3.0, "probe 1": 4180.0, "acknowledged (bytes)": 19500.0})]
    assert _differences(same, groups) == []  # timer slack and a few bytes are not a difference of behaviour
    other = [same[0], run("bookworm", {"probes (count)": 4.0, "model: probes (count)": 3.0, "probe 1": 5100.0, "acknowledged (bytes)": 13032.0})]
    assert _differences(other, groups) == ["probes (count): host 3, bookworm 4", "probe 1: host 4003, bookworm 5100",
                                           "acknowledged (bytes): host 20000, bookworm 13032"]
