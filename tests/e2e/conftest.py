"""Helpers for end-to-end tests: they drive `invoke` as a user does, on real namespaces and real TCP."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STATE_ROOT = Path("/run/tcplab")

# Short timers keep the suite fast; the kernel does the same thing at any scale.
EX1_FAST = ["keepidle=1", "keepintvl=1", "keepcnt=2"]  # abort at 3 s after 2 probes
EX2_FAST = ["keepidle=1", "keepintvl=1", "keepcnt=5", "user_timeout=2500"]  # U gives 2 probes, KEEPCNT would give 5


@pytest.fixture(autouse=True)
def _root():
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (namespaces, iptables, tcpdump): run `sudo ./bootstrap test`")


def invoke_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", *args]


def invoke(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(invoke_argv(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(invoke_argv(*args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def up(exercise: str, lab: str, sets: list[str], results: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["up", exercise, "--lab", lab, "--results", str(results), *extra]
    for s in sets:
        args += ["--set", s]
    return invoke(*args)


def with_sets(exercise: str, lab: str, sets: list[str], *extra: str) -> list[str]:
    args = ["up", exercise, "--lab", lab, *extra]
    for s in sets:
        args += ["--set", s]
    return args


def report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def verdicts(folder: Path) -> dict[str, bool]:
    return {c["name"]: c["passed"] for c in report(folder)["checks"]}


def check(folder: Path, name: str) -> dict:
    """One check's result in the folder's report."""
    return next(c for c in report(folder)["checks"] if c["name"] == name)


def rejudged(folder: Path) -> dict[str, bool]:
    """`invoke check` on the folder (an edited one), and its verdicts."""
    r = invoke("check", str(folder))
    assert r.returncode in (0, 1), r.stdout + r.stderr
    return verdicts(folder)


def namespaces(lab: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [l.split()[0] for l in out.splitlines() if l.startswith(f"tcplab-{lab}-")]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def wait_for_event(lab: str, program: str, host: str, event: str, timeout: float = 20) -> dict:
    """Waits until the lab's program has logged `event`; returns the lab's state.json."""
    log = STATE_ROOT / lab / "hosts" / host / f"{program}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and f'"event": "{event}"' in log.read_text():
            return json.loads((STATE_ROOT / lab / "state.json").read_text())
        time.sleep(0.05)
    raise AssertionError(f"{program} on lab {lab} never logged {event}")


def copy_results(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_manifest(folder: Path, **params) -> Path:
    m = json.loads((folder / "manifest.json").read_text())
    m["parameters"].update(params)
    (folder / "manifest.json").write_text(json.dumps(m))
    return folder


def assert_lab_gone(lab: str, pids: list[int]) -> None:
    assert namespaces(lab) == [], f"namespaces left: {namespaces(lab)}"
    assert [p for p in pids if pid_alive(p)] == [], "processes left running"
    assert not (STATE_ROOT / lab).exists(), "state folder left"
    assert not (STATE_ROOT / f"{lab}.lock").exists(), "lock file left"


def run_ok(tmp_path_factory, exercise: str, lab: str, sets: list[str]) -> Path:
    """A run that must pass, in a folder of its own, for module-scoped fixtures."""
    folder = tmp_path_factory.mktemp(lab) / "run"
    r = up(exercise, lab, sets, folder)
    assert r.returncode == 0, r.stdout + r.stderr
    return folder


def sigkill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 30) -> None:
    """Waits until ready() holds while `up` (started with `start`) runs, then kills it with SIGKILL."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"`up` ended before {what}: {proc.stdout.read()}")
            assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


# Runs that spend their time waiting on kernel timers (TIME_WAIT's 60 s cannot be shortened; SYNs resent
# for 3, 7 and 19 s) start when the session does, beside the other tests, and their module's fixture
# waits for them: the suite pays for that time once, not in line. They are idle but for a capture and a
# reading of `ss` a second, so the tests beside them are not slowed. Only started when a test of theirs
# was selected. Module -> run name -> (exercise, lab, arguments after `up EXERCISE --lab LAB`).
EARLY_RUNS: dict[str, dict[str, tuple[str, str, list[str]]]] = {
    # Readings every 0.5 s: the expired entry not yet reaped (timewait,,0) lasts about 0.9 s, which
    # readings a second apart missed once on a busy machine.
    "test_time_wait.py": {"netns": ("time-wait", "e2etwn", ["--set", "interval=0.5"]),
                          "docker": ("time-wait", "e2etwd", ["--set", "interval=0.5", "--backend", "docker"])},
    "test_syn_retries.py": {"sweep": ("syn-retries", "e2esyns", ["--set", "syn_retries=1,2,3"])},
}
_early: dict[str, dict[str, tuple[subprocess.Popen, Path]]] = {}


@pytest.fixture(scope="session", autouse=True)
def _early_runs(request, tmp_path_factory):
    wanted = {Path(str(item.fspath)).name for item in request.session.items} & set(EARLY_RUNS)
    for module in sorted(wanted):
        base = tmp_path_factory.mktemp("early")
        _early[module] = {name: (start(*with_sets(exercise, lab, [], "--results", str(base / name), *extra)), base / name)
                          for name, (exercise, lab, extra) in EARLY_RUNS[module].items()}
    yield
    for runs in _early.values():
        for proc, _ in runs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # `up` tears its lab down on Ctrl-C
                proc.wait(60)


def early_results(module: str, timeout: float = 240) -> dict[str, Path]:
    """The module's early runs, waited for; each must have passed."""
    out = {}
    for name, (proc, folder) in _early[module].items():
        text, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"{name}: {text}"
        out[name] = folder
    return out


@contextlib.contextmanager
def registry_base(client, registry: str, offline: str):
    """`registry` (a Dockerfile's default base, which no registry gives here) stood in for by the base
    made offline, for the duration; and an image tcplab-test/plain removed afterwards."""
    import docker.errors

    tagged_here = False
    try:
        client.images.get(registry)
    except docker.errors.ImageNotFound:
        client.images.get(offline).tag(registry)  # stands in for the pull
        tagged_here = True
    try:
        yield
    finally:
        try:
            client.images.remove("tcplab-test/plain", force=True)
        except docker.errors.ImageNotFound:
            pass
        if tagged_here:
            client.images.remove(registry)
