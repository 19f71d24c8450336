"""`agent.py serve`, the SSH machines' agent answering a whole run's commands over one channel: run here
as the real program with pipes for the channel. Its answers match what the one-shot commands print, a
command's failure is its answer and the next is served, and a program it spawned never holds the
channel open (the server ends when its stdin does, whatever it started)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.backends.ssh import agent
from lab.onhost import procs


@pytest.fixture
def uploaded(tmp_path) -> Path:
    """The agent's folder as the SSH backend uploads it: the agent and its modules side by side."""
    folder = tmp_path / "agent"
    folder.mkdir()
    for path in agent.FILES:
        shutil.copy(path, folder / path.name)
    return folder / "agent.py"


@pytest.fixture
def server(uploaded):
    p = subprocess.Popen([sys.executable, str(uploaded), "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ask(*args: str) -> dict:
        p.stdin.write(json.dumps({"args": list(args)}) + "\n")
        p.stdin.flush()
        return json.loads(p.stdout.readline())

    yield p, ask
    if p.poll() is None:
        p.kill()
        p.wait()


def test_answers_are_the_one_shot_commands_output(server, uploaded, tmp_path):
    _, ask = server
    facts = ask("facts")
    one_shot = subprocess.run([sys.executable, str(uploaded), "facts"], capture_output=True, text=True)
    assert facts["code"] == 0 and json.loads(facts["out"])["kernel"] == json.loads(one_shot.stdout)["kernel"]
    bad = ask("no-such-command")
    assert bad["code"] == 1 and "agent.py spawn DIR NAME" in bad["err"]  # the usage, as the one-shot prints it
    assert ask("stop-all", str(tmp_path))["out"].strip() == "[]"  # and the next command is served
    # A program that cannot start says why (its wrapper's own stderr is nobody's under serve).
    lost = ask("spawn", str(tmp_path / "no-such-folder"), "prog", "sleep", "1")
    assert lost["code"] == 1 and "prog cannot start" in lost["err"] and "No such file or directory" in lost["err"], lost


def test_a_spawned_program_is_recorded_signalled_and_never_holds_the_channel(server, uploaded, tmp_path):
    p, ask = server
    started = ask("spawn", str(tmp_path), "sleeper", "sleep", "30")
    assert started["code"] == 0, started
    pid = int(started["out"].split()[0])
    assert procs.same_process(pid, None) and json.loads((tmp_path / "sleeper.pid").read_text())["pid"] == pid
    again = ask("spawn", str(tmp_path), "sleeper", "sleep", "30")
    assert again["code"] == 1 and "already started" in again["err"]
    # The server ends with its stdin; its stdout reaches EOF although the program runs on.
    p.stdin.close()
    assert p.stdout.read() == "" and p.wait(timeout=10) == 0
    assert procs.same_process(pid, None)
    # A new server stops it, and its wrapper writes the status.
    q = subprocess.run([sys.executable, str(uploaded), "stop-all", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert json.loads(q.stdout) == ["sleeper"]
    deadline = time.monotonic() + 10
    while not (tmp_path / "sleeper.status").exists():
        assert time.monotonic() < deadline, "the wrapper wrote no status"
        time.sleep(0.05)
    assert (tmp_path / "sleeper.status").read_text() == str(-15)
    assert not os.path.exists(f"/proc/{pid}") or not procs.same_process(pid, None)
