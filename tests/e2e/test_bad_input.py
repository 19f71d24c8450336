"""Bad input gets one clear line and exit status 2, no traceback, and nothing is built."""
from __future__ import annotations

import os
import shutil

import pytest

from .conftest import REPO, invoke, namespaces


def error_line(r) -> str:
    text = (r.stdout + r.stderr).strip()
    assert "Traceback" not in text, text
    assert r.returncode == 2, text
    lines = [l for l in text.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["up", "exercise9"], "known exercises: exercise1, exercise2"),
        (["up", "exercise1", "--set", "keepidel=3"], "no parameter 'keepidel'; its parameters: keepidle"),
        (["up", "exercise1", "--set", "keepcnt=many"], "keepcnt='many' is not an integer"),
        (["up", "exercise1", "--lab", "my-lab"], "--lab 'my-lab'"),
        (["up", "exercise1", "--backend", "vbox"], "available: netns"),
        (["check", "/nonexistent"], "no such results folder"),
        # Sweeps: every value is checked before anything is built.
        (["up", "tcp-states", "--set", "latency=0,10,fast"], "latency='fast' is not a float"),
        (["up", "tcp-states", "--set", "latency=0,2000"], "latency=2000.0 is above the maximum 1000"),
        (["up", "tcp-states", "--set", "latency=0,,10"], "an empty value in the list"),
        (["up", "tcp-states", "--set", "latency=10,10.0"], "10 is listed twice"),
        (["up", "tcp-states", "--set", "latency=0,10", "--set", "total=1000,2000"], "a sweep varies one parameter"),
        (["up", "tcp-states", "--set", "latency=0,10", "--keep"], "--keep leaves one lab up"),
        (["up", "tcp-states", "--set", "latncy=0,10"], "no parameter 'latncy'"),
        # exercise2 without a user timeout would be exercise1, and its user_timeout_decides check could only fail.
        (["up", "exercise2", "--set", "user_timeout=0"],
         "user_timeout=0 is below the minimum 1: exercise2 is about TCP_USER_TIMEOUT, so it needs one; exercise1 is the same scenario without it"),
    ],
)
def test_bad_arguments(args, words):
    assert words in error_line(invoke(*args))
    assert namespaces("tcplab") == []


def test_malformed_exercise_yaml_names_file_and_line(tmp_path):
    mine = tmp_path / "mine"
    shutil.copytree(REPO / "exercises" / "exercise1", mine)
    text = (mine / "exercise.yml").read_text().replace("  port: {type: int", "  port: {type: [int", 1)
    (mine / "exercise.yml").write_text(text)
    line = error_line(invoke("up", str(mine), "--lab", "e2ebad"))
    assert str(mine / "exercise.yml") in line and "malformed YAML at line" in line
    assert namespaces("e2ebad") == []


def test_missing_tools_are_named_with_the_fix(tmp_path):
    # /usr/sbin is searched anyway (ip, iptables); tcpdump lives in /usr/bin, which this PATH lacks.
    env = {**os.environ, "PATH": str(tmp_path)}
    line = error_line(invoke("up", "exercise1", "--lab", "e2etools", env=env))
    assert "missing tools: tcpdump" in line and "apt-get install -y tcpdump" in line
    assert namespaces("e2etools") == []
