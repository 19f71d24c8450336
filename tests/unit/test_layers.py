"""The package's layers (pyproject.toml's import-linter contracts): kept by the code as it is, and
broken, as they should be, by an upward import or a cycle, even one inside a function."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([*LINT, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_code_keeps_every_contract():
    r = lint(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 kept, 0 broken" in r.stdout


@pytest.mark.parametrize(
    "module, line, broken",
    [
        # spec would import the commands: upward, from inside a function
        ("lab/spec/params.py", "def _later():\n    from ..cli import up  # noqa\n", "Layers follow the data flow BROKEN"),
        # a check reaching for the lab's hosts instead of the results folder
        ("lab/checks/latency.py", "from ..backends import netns  # noqa\n", "read only the results folder BROKEN"),
        # params and exercise importing each other
        ("lab/spec/params.py", "def _cycle():\n    from . import exercise  # noqa\n", "No import cycles inside a package BROKEN"),
    ],
)
def test_an_upward_import_or_a_cycle_breaks_a_contract(tmp_path, module, line, broken):
    shutil.copytree(REPO / "lab", tmp_path / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with open(tmp_path / module, "a") as f:
        f.write("\n\n" + line)
    r = lint(tmp_path)
    assert r.returncode != 0 and broken in r.stdout, r.stdout + r.stderr


def modules_after(code: str) -> set[str]:
    r = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    import json

    return set(json.loads(r.stdout.splitlines()[-1]))


def test_loading_an_exercise_draws_nothing():
    """matplotlib (half a second to import) loads only when a picture is drawn, even for an exercise that has plots."""
    loaded = modules_after("import lab.session.catalog\nfrom lab.spec import exercise\nexercise.load('persist-timer')")
    assert "matplotlib" not in loaded and "graphviz" not in loaded


def test_commands_that_analyse_nothing_import_no_numpy_docker_or_paramiko():
    loaded = modules_after("import tasks, lab.cli.down, lab.cli.status")
    assert not {"numpy", "matplotlib", "docker", "paramiko"} & loaded
