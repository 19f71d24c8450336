"""The Docker backend on a real daemon: images built offline, every exercise passing in containers with
the same results as on namespaces, parallel labs, and nothing left after SIGKILL and `down`."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from lab.backends.docker import images

from .conftest import EX1_FAST, EX2_FAST, REPO, STATE_ROOT, invoke, registry_base, report, start, up, verdicts, wait_for_event, with_sets

LABEL = "tcplab.lab"


@pytest.fixture(scope="module")
def client():
    c = docker.from_env()
    c.ping()  # the suite's bootstrap starts a daemon; without one this fails, never skips
    return c


def containers(client, lab: str) -> list[str]:
    return [c.name for c in client.containers.list(all=True, filters={"label": f"{LABEL}={lab}"})]


def links(lab: str) -> list[str]:
    d = Path("/run/netns")
    return [p.name for p in d.glob(f"tcplab-{lab}-*")] if d.exists() else []


def test_images_build_offline_from_nothing(client):
    """No registry answers here: the base comes from Debian's mirror, and the same Dockerfile builds on it."""
    for name in (images.tag(), images.OFFLINE_BASE):
        try:
            client.images.remove(name, force=True)
        except docker.errors.ImageNotFound:
            pass
    r = invoke("images", timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert f"cannot pull {images.REGISTRY_BASE}" in out and "debootstrap" in out
    assert client.images.get(images.tag()).labels.get(images.LABEL) == "host"
    again = invoke("images")
    assert again.returncode == 0 and "building" not in again.stdout  # up to date: nothing to do


def test_plain_dockerfile_builds_as_a_user_with_a_registry_would(client):
    """`docker build images/host` with its default base: what a user with registry access runs."""
    invoke("images", timeout=900)
    with registry_base(client, images.REGISTRY_BASE, images.OFFLINE_BASE):
        r = subprocess.run(["docker", "build", "--network", "host", "-q", "-t", "tcplab-test/plain", str(images.IMAGE_DIR)],
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr
        out = client.containers.run("tcplab-test/plain", ["sh", "-c", "python3 --version && tcpdump --version && nft --version"],
                                    remove=True, network_mode="none").decode()
        assert "Python 3" in out and "tcpdump version" in out and "nftables" in out


@pytest.mark.parametrize(
    "exercise, sets",
    [
        ("exercise1", EX1_FAST),
        ("exercise2", EX2_FAST),
        ("persist-timer", ["stall=3", "duration=4"]),
        ("zero-window-probe", ["stall=2", "loss=1", "duration=3.5"]),
    ],
)
def test_exercises_pass_in_containers_as_on_namespaces(client, tmp_path, exercise, sets):
    r = up(exercise, "e2edk", sets, tmp_path / "r", "--backend", "docker")
    assert r.returncode == 0, r.stdout + r.stderr
    folder = tmp_path / "r"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["backend"] == "docker"
    ex = json.loads(json.dumps(manifest["checks"]))
    assert {c["check"] for c in ex} == set(verdicts(folder))  # the same checks as the exercise lists for namespaces
    for capture in manifest["captures"]:
        assert (folder / capture["file"]).stat().st_size > 24
    assert containers(client, "e2edk") == [] and links("e2edk") == []


def test_two_docker_labs_side_by_side(client, tmp_path):
    a = start(*with_sets("exercise1", "e2edka", EX1_FAST, "--backend", "docker", "--results", str(tmp_path / "a")))
    b = start(*with_sets("exercise2", "e2edkb", EX2_FAST, "--backend", "docker", "--results", str(tmp_path / "b")))
    wait_for_event("e2edka", "client", "source", "waiting", timeout=60)
    wait_for_event("e2edkb", "client", "source", "waiting", timeout=60)
    assert len(containers(client, "e2edka")) == 3 and len(containers(client, "e2edkb")) == 3
    out_a, _ = a.communicate(timeout=120)
    out_b, _ = b.communicate(timeout=120)
    assert a.returncode == 0, out_a
    assert b.returncode == 0, out_b
    assert report(tmp_path / "a")["passed"] and report(tmp_path / "b")["passed"]


def test_down_after_sigkill_removes_every_container(client, tmp_path):
    lab = "e2edkk"
    p = start(*with_sets("exercise1", lab, ["keepidle=30"], "--backend", "docker", "--results", str(tmp_path / "r")))
    wait_for_event(lab, "client", "source", "waiting", timeout=60)
    p.kill()
    p.wait(timeout=10)
    assert len(containers(client, lab)) == 3 and len(links(lab)) == 3
    assert "running" not in invoke("status").stdout.split(lab)[1].split("\n")[0]
    r = invoke("down", "--lab", lab)
    assert r.returncode == 0, r.stdout + r.stderr
    assert containers(client, lab) == [] and links(lab) == []
    assert not (STATE_ROOT / lab).exists()
    assert invoke("down", "--lab", lab).returncode == 0


def test_sigkill_during_an_image_build_leaves_no_build_container(client):
    try:
        client.images.remove(images.tag(), force=True)
    except docker.errors.ImageNotFound:
        pass
    before = {c.id for c in client.containers.list(all=True)}
    p = subprocess.Popen([sys.executable, "-m", "invoke", "images"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    seen = ""
    while "Step 3" not in seen and time.monotonic() < deadline:
        seen += p.stdout.readline()
    time.sleep(1)  # the RUN step's container exists now
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    for _ in range(50):  # the daemon notices the lost client and cleans up
        if {c.id for c in client.containers.list(all=True)} <= before:
            break
        time.sleep(0.2)
    assert {c.id for c in client.containers.list(all=True)} <= before
    assert invoke("images", timeout=900).returncode == 0  # and the next build succeeds


def test_docker_absent_is_one_line(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"}
    r = invoke("up", "exercise1", "--backend", "docker", "--lab", "e2edkn", env=env)
    assert r.returncode == 2
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Docker is not running" in lines[0] and "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize("backend", ["netns", "docker"])
def test_exercise_sysctls_are_set_on_either_backend(tmp_path, backend):
    """/proc/sys is read-only in a container: the Docker backend sets them at creation, netns with sysctl -w."""
    mine = tmp_path / "mine"
    shutil.copytree(REPO / "exercises" / "exercise1", mine)
    text = (mine / "exercise.yml").read_text().replace(
        "programs:\n", "sysctls:\n  source: {net.ipv4.tcp_keepalive_time: \"{keepcnt}1\", net.ipv4.tcp_invalid_ratelimit: 1000}\n\nprograms:\n", 1)
    (mine / "exercise.yml").write_text(text)
    r = up(str(mine), f"e2esc{backend[:2]}", EX1_FAST, tmp_path / "r", "--backend", backend)
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["sysctls"]["source"]["net.ipv4.tcp_keepalive_time"] == "21"  # keepcnt=2, then "1"
    # Kept in jiffies by the kernel: 1000 ms is whole jiffies at any HZ, so it reads back unchanged.
    assert m["sysctls"]["source"]["net.ipv4.tcp_invalid_ratelimit"] == "1000"
    assert m["sysctls"]["dest"]["net.ipv4.tcp_keepalive_time"] == "7200"  # only the host that asked


def test_twenty_docker_labs_at_once_all_pass(client, tmp_path):
    """Twenty `up exercise2 --backend docker` started together: each lists, creates and removes its
    containers while the others do the same, and none may see another's removals as an error."""
    labs = [f"e2edc{i}" for i in range(20)]
    procs = [start(*with_sets("exercise2", lab, EX2_FAST, "--backend", "docker", "--results", str(tmp_path / lab))) for lab in labs]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for lab, p, out in zip(labs, procs, outs):
        assert "Traceback" not in out, f"{lab}:\n{out}"
        assert p.returncode == 0, f"{lab}:\n{out}"
        assert report(tmp_path / lab)["passed"]
        assert containers(client, lab) == [] and links(lab) == []
