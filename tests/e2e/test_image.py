"""tcplab as an image (images/tcplab): built offline as a plain Dockerfile would build it, labs run
inside the container on the netns backend, results handed to the caller, hands-on at a real
terminal (tmux) with `docker run -it` and `docker exec -it`, and one line without the capabilities."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import docker
import pytest

from lab.backends.docker import images

from .conftest import EX2_FAST, REPO, invoke, registry_base
from .tmuxing import Tmux

CAPS = ["--cap-add", "NET_ADMIN", "--cap-add", "SYS_ADMIN"]
CALLER = (1234, 2345)  # the host user who runs the container: not root
LABEL = "tcplab.lab=e2eimage"


@pytest.fixture(scope="module")
def image() -> str:
    r = invoke("images", "--image", "tcplab", timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    tag = images.tcplab_tag()
    assert f"image: {tag}" in r.stdout
    return tag


@pytest.fixture
def results(tmp_path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    os.chown(folder, *CALLER)
    return folder


def docker_run(image: str, results: Path, *args: str, caps: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    argv = ["docker", "run", "--rm", "--label", LABEL, *(CAPS if caps else []), "-v", f"{results}:/results", image, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def gone(container: str, when: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["docker", "inspect", container], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, f"the container did not end {when}"
        time.sleep(0.5)


def owners(folder: Path) -> set[tuple[int, int]]:
    return {(p.lstat().st_uid, p.lstat().st_gid) for p in folder.rglob("*")}


def test_the_image_builds_offline_and_the_plain_dockerfile_builds_the_same(image):
    client = docker.from_env()
    built = client.images.get(image)
    assert built.labels.get(images.LABEL) == "tcplab"
    with registry_base(client, images.TRIXIE_REGISTRY_BASE, images.TRIXIE_OFFLINE_BASE):
        # What a user with a registry types, from the repository's root.
        r = subprocess.run(["docker", "build", "--network", "host", "-q", "-f", "images/tcplab/Dockerfile", "-t", "tcplab-test/plain", "."],
                           cwd=REPO, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr
        plain = client.images.get("tcplab-test/plain")
        assert plain.attrs["RootFS"]["Layers"] == built.attrs["RootFS"]["Layers"]  # the same file systems, layer by layer
        out = client.containers.run("tcplab-test/plain", ["list"], remove=True, network_mode="none").decode()
        assert "exercise2" in out and "keepidle" in out


def test_up_in_the_image_passes_and_the_results_are_the_callers(image, results):
    r = docker_run(image, results, "up", "exercise2", *[a for s in EX2_FAST for a in ("--set", s)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASSED 4/4 checks" in r.stdout
    [folder] = results.iterdir()
    m = json.loads((folder / "manifest.json").read_text())
    assert m["backend"] == "netns" and m["engine"] == {"name": "local"}
    assert owners(results) == {CALLER}  # every file and folder, not only the top
    # The folder judged again, and its capture read, by the image without any capability.
    again = docker_run(image, results, "check", f"results/{folder.name}", caps=False)
    assert again.returncode == 0 and "PASSED 4/4 checks" in again.stdout, again.stdout + again.stderr
    read = docker_run(image, results, "analyze", f"results/{folder.name}/source.pcap", "--json", f"results/{folder.name}/reading.json", caps=False)
    assert read.returncode == 0 and "keepalive" in read.stdout, read.stdout + read.stderr
    assert (folder / "reading.json").stat().st_uid == CALLER[0]


def test_plots_and_state_tracing_work_inside_the_container(image, results):
    """persist-timer draws its window charts (matplotlib), tcp-states traces the kernel's states (tracefs)."""
    for exercise, sets in (("persist-timer", ["stall=3", "duration=4"]), ("tcp-states", [])):
        r = docker_run(image, results, "up", exercise, *[a for s in sets for a in ("--set", s)])
        assert r.returncode == 0 and "PASSED" in r.stdout, r.stdout + r.stderr
    folders = {f.name.split("-20")[0]: f for f in results.iterdir()}
    assert (folders["tcplab-persist-timer"] / "window.png").stat().st_size > 10_000
    assert json.loads((folders["tcplab-tcp-states"] / "manifest.json").read_text())["state_trace"]
    assert (folders["tcplab-tcp-states"] / "state_diagram.png").exists()


def test_without_the_capabilities_one_line_says_which_to_add(image, results):
    r = docker_run(image, results, "up", "exercise2", caps=False)
    assert r.returncode == 2
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert lines == ["error: tcplab needs the capabilities NET_ADMIN and SYS_ADMIN to make network namespaces, and lacks "
                     "NET_ADMIN and SYS_ADMIN: run the container with --cap-add NET_ADMIN --cap-add SYS_ADMIN"], lines
    half = subprocess.run(["docker", "run", "--rm", "--label", LABEL, "--cap-add", "NET_ADMIN", image, "start", "exercise2"],
                          capture_output=True, text=True, timeout=60)
    assert half.returncode == 2 and (half.stdout + half.stderr).strip().endswith("lacks SYS_ADMIN: run the container with --cap-add SYS_ADMIN")
    assert list(results.iterdir()) == []


def test_exercise2_by_hand_in_the_container_finished_from_another_terminal(image, results):
    """`docker run -it … start` holds the lab; shells come from `docker exec -it … tcplab shell`; `docker exec … finish` judges."""
    name = f"tcplab-e2eimage-{os.getpid()}"
    tmux = Tmux()
    try:
        held = tmux.window()
        tmux.type(held, f"docker run -it --rm --name {name} --label {LABEL} {' '.join(CAPS)} -v {results}:/results {image} "
                        f"start exercise2 {' '.join(a for s in EX2_FAST for a in ('--set', s))}")
        tmux.wait_for(held, "This container holds lab tcplab", timeout=60)
        steps = docker.from_env().containers.get(name).exec_run(["sh", "-c", "cat /run/tcplab/tcplab/handson.json"]).output
        commands = [s["run"] for s in json.loads(steps)["steps"]]
        # The seed's four steps, each in a shell of its own, as a person opens them.
        shells = {}
        for step, host in (("capture", "source"), ("server", "dest"), ("client", "source"), ("firewall", "dest")):
            shells[step] = tmux.window()
            tmux.type(shells[step], f"docker exec -it {name} tcplab shell {host}")
            tmux.wait_for(shells[step], f"[tcplab {host}]")
        tmux.type(shells["capture"], commands[0])
        tmux.wait_for(shells["capture"], "listening on eth0")
        tmux.type(shells["server"], commands[1])
        tmux.wait_for(shells["server"], "listening")
        tmux.type(shells["client"], commands[2])
        tmux.wait_for(shells["client"], "blocked in recv()")
        tmux.type(shells["firewall"], commands[3])
        tmux.wait_for(shells["client"], "ETIMEDOUT", timeout=30)
        finish = tmux.window()
        tmux.type(finish, f"docker exec {name} tcplab finish")
        screen = tmux.wait_for(finish, "checks", timeout=60)
        assert "PASSED 5/5 checks" in screen, screen
        # The container waited for that finish to judge and hand the folder over before it ended.
        tmux.wait_for(held, "lab tcplab is finished; the container ends", timeout=60)
        gone(name, "after the lab was judged")
    finally:
        tmux.kill()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    [folder] = results.iterdir()
    report = json.loads((folder / "report.json").read_text())
    assert report["passed"] and {c["name"] for c in report["checks"]} >= {"keepalive_probes", "student_capture"}
    assert owners(results) == {CALLER}


def test_ctrl_c_on_the_container_holding_a_lab_finishes_and_judges_it(image, results):
    name = f"tcplab-e2eimage-c-{os.getpid()}"
    tmux = Tmux()
    try:
        held = tmux.window()
        tmux.type(held, f"docker run -it --rm --name {name} --label {LABEL} {' '.join(CAPS)} -v {results}:/results {image} start exercise2")
        tmux.wait_for(held, "This container holds lab tcplab", timeout=60)
        tmux.keys(held, "C-c")
        screen = tmux.wait_for(held, "checks", timeout=60)
        assert "FAILED" in screen and "results: " in screen, screen  # nothing was done by hand: judged, and failed
        gone(name, "after Ctrl-C")
    finally:
        tmux.kill()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    [folder] = results.iterdir()
    assert (folder / "report.json").exists() and owners(results) == {CALLER}
