"""The classroom in a real browser: Debian's Chromium, driven by playwright-core
(tests/browser/classroom.mjs), against a real `invoke serve --class ... --backend docker`. Two
students do exercise2 by hand in browser terminals, each with their own variant; the instructor
watches the first one's terminal read-only and downloads the class CSV. The screenshots are kept in
$TCPLAB_TEST_OUTPUT/browser/ (default /tmp/tcplab-test-output/browser/): look at them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import docker
import pytest

from .conftest import REPO
from .serving import start, write_class

BROWSER_DIR = REPO / "tests" / "browser"
CHROMIUM = "/usr/bin/chromium"
# A fixed secret for which ann's and bob's keepidle differ (asserted below, not assumed).
SECRET = "tcplab-browser-test-secret-4"
RANGES = {"keepidle": [1, 3], "keepintvl": [1, 2]}


def _output() -> Path:
    out = Path(os.environ.get("TCPLAB_TEST_OUTPUT", "/tmp/tcplab-test-output")) / "browser"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out


def _lab_containers() -> list[str]:
    return [c.name for c in docker.from_env().containers.list(all=True) if c.name.startswith("tcplab-sv")]


def _variant(student: str) -> dict:
    import lab.session.catalog  # noqa: F401  (registers the checks an exercise file names)
    from lab.serve import variants
    from lab.spec import exercise

    return variants.values(SECRET, student, exercise.load("exercise2"), {k: tuple(v) for k, v in RANGES.items()})


def test_two_students_and_the_instructor_in_a_real_browser(tmp_path: Path):
    node = shutil.which("node")
    if node is None or not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir() or not Path(CHROMIUM).exists():
        pytest.fail("the browser test needs node, Debian's chromium and playwright-core: run scripts/install-web-packages --browser")
    ann, bob = _variant("ann"), _variant("bob")
    assert ann["keepidle"] != bob["keepidle"], (ann, bob)
    # The steps use exercise2's own keepcnt 9 and user_timeout 9000 ms: the client's kernel gives up
    # about 9 s after the last reply, so each lab runs well under a minute.
    cls = write_class(tmp_path / "class.yml", ["ann", "bob"], {"exercise2": {"variants": RANGES}}, secret=SECRET)
    shots = _output()
    served = start(tmp_path, "--class", str(cls), "--backend", "docker")
    try:
        env = {**os.environ, "TCPLAB_BASE": served.base, "TCPLAB_SHOTS": str(shots),
               "TCPLAB_A_NAME": "ann", "TCPLAB_A_TOKEN": served.tokens["ann"], "TCPLAB_A_VARIANT": json.dumps(ann),
               "TCPLAB_B_NAME": "bob", "TCPLAB_B_TOKEN": served.tokens["bob"], "TCPLAB_B_VARIANT": json.dumps(bob),
               "TCPLAB_INSTRUCTOR_TOKEN": served.tokens["instructor"], "TCPLAB_CHROMIUM": CHROMIUM}
        t0 = time.monotonic()
        r = subprocess.run([node, "classroom.mjs"], cwd=BROWSER_DIR, env=env, capture_output=True, text=True, timeout=420)
        took = time.monotonic() - t0
        (shots / "classroom.log").write_text(r.stdout + r.stderr)
        print(r.stdout)
        print(f"classroom.mjs took {took:.1f} s (ann {ann}, bob {bob}); screenshots in {shots}")
        assert r.returncode == 0, f"{r.stderr[-4000:]}\n--- server log:\n{served.log_text()[-3000:]}"
    finally:
        code = served.stop()
        assert code == 0, served.log_text()[-2000:]
    assert _lab_containers() == []
