"""Hands-on mode on real namespaces and containers: a person's shells driven with tmux, the seed's
commands typed, tcplab seeing each step done, and `finish` judging what was done, with a hint on
every failure the usual mistakes cause; nothing left after finish, down, or a SIGKILL of any command."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import EX1_FAST, EX2_FAST, STATE_ROOT, assert_lab_gone, invoke, namespaces, pid_alive, report, start, verdicts
from .tmuxing import Tmux

KEEPALIVE = {"connection_established", "keepalive_probes", "keepalive_abort", "user_timeout_decides", "student_capture"}


def sets(values: list[str]) -> list[str]:
    return [a for v in values for a in ("--set", v)]


def handson_record(lab: str) -> dict:
    return json.loads((STATE_ROOT / lab / "handson.json").read_text())


def wait_step(lab: str, n: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = handson_record(lab)
        if rec["steps"][n - 1].get("done_at"):
            return rec
        time.sleep(0.1)
    raise AssertionError(f"step {n} of lab {lab} never seen done: {handson_record(lab)['steps'][n - 1]}")


class Person:
    """Someone doing an exercise at shells of their own, one tmux window per shell."""

    def __init__(self, lab: str, exercise: str, values: list[str], *extra: str):
        self.lab = lab
        r = invoke("start", exercise, "--lab", lab, *sets(values), *extra, timeout=300)
        if r.returncode != 0:
            invoke("down", "--lab", lab)
            raise AssertionError(r.stdout + r.stderr)
        self.started = r.stdout
        self.shells: dict[str, str] = {}
        try:
            self.commands = [s["run"] for s in handson_record(lab)["steps"]]
            self.tmux = Tmux()
        except BaseException:
            invoke("down", "--lab", lab)
            raise

    def shell(self, name: str, host: str) -> str:
        if name not in self.shells:
            self.shells[name] = self.tmux.shell(host, self.lab)
        return self.shells[name]

    def type(self, name: str, host: str, line: str) -> None:
        self.tmux.type(self.shell(name, host), line)

    def finish(self, folder: Path, *extra: str) -> subprocess.CompletedProcess:
        return invoke("finish", "--lab", self.lab, "--results", str(folder), *extra, timeout=120)

    def close(self) -> None:
        self.tmux.kill()  # its shells end with it
        if (STATE_ROOT / self.lab).exists():
            invoke("down", "--lab", self.lab)


@pytest.fixture
def person(request):
    made: list[Person] = []

    def make(*args, **kw) -> Person:
        made.append(Person(*args, **kw))
        return made[-1]

    yield make
    for p in made:
        p.close()


# exercise1/2's steps as the seed has them: each typed in a shell of its own, and seen done before the next.
SEED = [("capture", "source"), ("server", "dest"), ("client", "source"), ("firewall", "dest")]


def seed_steps(p: Person, *numbers: int) -> None:
    for n in numbers:
        shell, host = SEED[n - 1]
        p.type(shell, host, p.commands[n - 1])
        wait_step(p.lab, n)


def keepalive_by_hand(p: Person, capture: bool = True) -> None:
    """The seed's five steps: capture, server, client, the drop after the first exchange, the end."""
    seed_steps(p, *([1] if capture else []), 2, 3, 4)
    p.tmux.wait_for(p.shells["client"], "ETIMEDOUT")
    wait_step(p.lab, 5)


def hint(folder: Path, check: str) -> str:
    return next(c for c in report(folder)["checks"] if c["name"] == check).get("hint", "")


@pytest.mark.parametrize("backend", ["netns", "docker"])
def test_exercise2_by_hand(person, tmp_path, backend):
    lab = f"ho{backend}"
    p = person(lab, "exercise2", EX2_FAST, "--backend", backend)
    flat = " ".join(p.started.split())
    # The seed's own tcpdump filter, and this lab's values in the commands.
    assert "tcpdump -i eth0 -nnvvX --print -w source.pcap '(dst port 8990) or (src port 8990)'" in flat
    assert "--keepidle 1 --keepintvl 1 --keepcnt 5 --user-timeout 2500" in flat and f"invoke shell HOST --lab {lab}" in flat
    keepalive_by_hand(p)
    steps = invoke("steps", "--lab", lab)
    assert steps.returncode == 0 and steps.stdout.count("done at") == 5, steps.stdout
    assert "hands-on exercise2" in invoke("status").stdout and "5 of 5 steps seen done" in " ".join(invoke("status").stdout.split())
    r = p.finish(tmp_path / "r")
    assert r.returncode == 0, r.stdout + r.stderr
    folder = tmp_path / "r"
    assert verdicts(folder) == dict.fromkeys(KEEPALIVE, True)
    probes = next(c for c in report(folder)["checks"] if c["name"] == "keepalive_probes")
    assert probes["observed"].startswith("2 probes")  # what the typed options give: U=2500 ms over T=1 s, I=1 s
    m = json.loads((folder / "manifest.json").read_text())
    assert m["mode"] == "hands-on" and m["hands_on"]["observed"]["user_timeout"] == "client.log, its 'options' event"
    assert m["parameters"]["keepcnt"] == 5 and m["student_captures"][0]["taken_as"] == "source.pcap"
    assert "iptables rule -A INPUT -p tcp -m tcp --dport 8990 -j DROP on dest" in " ".join(r.stdout.split())
    assert invoke("check", str(folder)).returncode == 0
    assert namespaces(lab) == [] and not (STATE_ROOT / lab).exists() and not (STATE_ROOT / f"{lab}.keeper.log").exists()


def test_the_options_the_client_really_set_are_judged_not_the_labs(person, tmp_path):
    """The person types other values than the lab's: the checks follow what the client logged it set."""
    lab = "hoother"
    p = person(lab, "exercise2", EX2_FAST)
    p.commands[2] = p.commands[2].replace("--keepcnt 5 --user-timeout 2500", "--keepcnt 2 --user-timeout 4000")
    keepalive_by_hand(p)
    r = p.finish(tmp_path / "r")
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert (m["parameters"]["keepcnt"], m["parameters"]["user_timeout"]) == (2, 4000)
    probes = next(c for c in report(tmp_path / "r")["checks"] if c["name"] == "keepalive_probes")
    assert probes["observed"].startswith("3 probes")  # U=4000 gives 3, more than KEEPCNT=2


def test_exercise1_by_hand(person, tmp_path):
    lab = "hoex1"
    p = person(lab, "exercise1", EX1_FAST)
    assert "--keepidle 1 --keepintvl 1 --keepcnt 2 --user-timeout 0" in " ".join(p.started.split())
    keepalive_by_hand(p)
    r = p.finish(tmp_path / "r")
    assert r.returncode == 0, r.stdout + r.stderr
    assert verdicts(tmp_path / "r") == dict.fromkeys(KEEPALIVE - {"user_timeout_decides"}, True)
    probes = next(c for c in report(tmp_path / "r")["checks"] if c["name"] == "keepalive_probes")
    assert probes["observed"].startswith("2 probes")  # KEEPCNT decides


@pytest.mark.parametrize("typed", ["1", None], ids=["another_keepidle", "the_labs_own"])
def test_strict_judges_the_labs_values_not_what_the_client_set(person, tmp_path, typed):
    """`start --strict`: the lab's keepidle (2) is judged, whatever the person types. A client started
    with keepidle 1 (a neighbour's answer) fails, with a hint naming both; the lab's own values pass."""
    lab = "hostrict"
    p = person(lab, "exercise2", [v if not v.startswith("keepidle=") else "keepidle=2" for v in EX2_FAST], "--strict")
    assert "--keepidle 2 --keepintvl 1" in p.commands[2]
    if typed is not None:
        p.commands[2] = p.commands[2].replace("--keepidle 2", f"--keepidle {typed}")
    keepalive_by_hand(p)
    r = p.finish(tmp_path / "r")
    out = " ".join((r.stdout + r.stderr).split())
    folder = tmp_path / "r"
    m = json.loads((folder / "manifest.json").read_text())
    assert m["parameters"]["keepidle"] == 2 and m["hands_on"]["assigned"]["keepidle"] == 2
    assert "judged at your exercise's values: keepidle=2, keepintvl=1, keepcnt=5, user_timeout=2500" in out
    if typed is None:
        assert r.returncode == 0, out
        assert verdicts(folder) == dict.fromkeys(KEEPALIVE, True) and m["hands_on"]["typed"]["keepidle"] == 2
        assert not any(c.get("hint") for c in report(folder)["checks"])
        return
    # keepidle 1 under U=2500 ms: 2 probes, the first about 1 s after the last received segment; the lab's 2 allows 1, at 2 s.
    assert r.returncode == 1 and "Traceback" not in out, out
    assert m["hands_on"]["typed"]["keepidle"] == 1
    probes = next(c for c in report(folder)["checks"] if c["name"] == "keepalive_probes")
    assert not probes["passed"] and probes["observed"].startswith("2 probes"), probes
    said = probes.get("hint", "")
    assert said.startswith("your exercise asked for TCP_KEEPIDLE 2 s (keepidle=2, your lab's value) and the client set 1: "
                           "the wire shows the first probe 1.0"), said
    assert said.endswith("run the client with --keepidle 2 (step 3)"), said
    assert said in out  # on screen too


def persist_by_hand(p: Person) -> None:
    for n, (shell, host) in enumerate((("capture", "source"), ("server", "dest"), ("client", "source")), 1):
        p.type(shell, host, p.commands[n - 1])
        if n < 3:
            wait_step(p.lab, n)
    for n in (3, 4, 5):
        wait_step(p.lab, n, timeout=40)
    p.tmux.wait_for(p.shells["client"], "[PASS] Data sent", timeout=40)


@pytest.mark.parametrize("backend", ["netns", "docker"])
def test_persist_timer_by_hand(person, tmp_path, backend):
    """The seed's manual run: the server with --stall in one namespace, the client in another."""
    lab = f"hopersist{backend[:2]}"
    p = person(lab, "persist-timer", ["stall=3", "duration=4"], "--backend", backend)
    assert "python3 server.py --port 9999" in p.started and "--stall 3" in " ".join(p.started.split())
    persist_by_hand(p)
    r = p.finish(tmp_path / "r")
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(verdicts(tmp_path / "r").values()) and "window_probes" in verdicts(tmp_path / "r")


def test_a_pcapng_capture_of_ones_own_is_collected_and_judged(person, tmp_path):
    """tshark -w writes pcapng, as Wireshark does: the analyzer reads it like tcpdump's pcap."""
    lab = "hopcapng"
    p = person(lab, "exercise2", EX2_FAST)
    p.commands[0] = "tshark -i eth0 -w mine.pcapng -f 'tcp port 8990'"
    keepalive_by_hand(p)
    r = p.finish(tmp_path / "r")
    assert r.returncode == 0, r.stdout + r.stderr
    mine = tmp_path / "r" / "student-source-mine.pcapng"
    assert mine.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    check = next(c for c in report(tmp_path / "r")["checks"] if c["name"] == "student_capture")
    assert check["passed"] and check["observed"].startswith("mine.pcapng: all ") and "segments of the connection" in check["observed"]


# --- the usual mistakes: each a failing check with the hint that names its step --------------------


def rule_on_the_wrong_host(p: Person) -> None:
    seed_steps(p, 1, 2, 3)
    p.type("firewall", "source", p.commands[3])  # source, not dest
    # Dropped in source's own OUTPUT, a probe counts as local congestion: the kernel retries it every
    # half second and never gives up, and nothing reaches the wire.
    time.sleep(4)


def rule_on_the_wrong_port(p: Person) -> None:
    seed_steps(p, 1, 2, 3)
    p.type("firewall", "dest", p.commands[3].replace("8990", "8991"))
    time.sleep(4)  # the probes are answered: nothing ends


def rule_before_the_first_exchange(p: Person) -> None:
    seed_steps(p, 1, 2, 4)
    p.type("client", "source", p.commands[2])
    time.sleep(3)  # the SYN goes unanswered


def client_before_server(p: Person) -> None:
    seed_steps(p, 1)
    p.type("client", "source", p.commands[2])
    p.tmux.wait_for(p.shells["client"], "connect to 10.0.1.2:8990 failed")
    seed_steps(p, 2)


def client_interrupted(p: Person) -> None:
    seed_steps(p, 1, 2, 3, 4)
    p.tmux.keys(p.shells["client"], "C-c")
    p.tmux.wait_for(p.shells["client"], "interrupted (Ctrl-C)")


def server_stopped_for_the_rule(p: Person) -> None:
    # The rule typed in the server's own shell, after a Ctrl-C that stopped the server.
    seed_steps(p, 1, 2, 3)
    p.tmux.keys(p.shells["server"], "C-c")
    p.tmux.wait_for(p.shells["client"], "the server closed the connection")
    p.type("server", "dest", p.commands[3])
    wait_step(p.lab, 4)


def finish_before_the_abort(p: Person) -> None:
    seed_steps(p, 1, 2, 3, 4)


def no_capture_of_ones_own(p: Person) -> None:
    keepalive_by_hand(p, capture=False)


def capture_on_the_wrong_interface(p: Person) -> None:
    p.commands[0] = p.commands[0].replace("-i eth0", "-i lo")
    keepalive_by_hand(p)


def capture_stopped_too_early(p: Person) -> None:
    seed_steps(p, 1, 2, 3, 4)
    p.tmux.keys(p.shells["capture"], "C-c")  # before the probes and the abort
    p.tmux.wait_for(p.shells["capture"], "packets captured")
    p.tmux.wait_for(p.shells["client"], "ETIMEDOUT")


@pytest.mark.parametrize(
    "mistake, values, failing, check, words",
    [
        (rule_on_the_wrong_host, EX2_FAST, {"keepalive_probes", "keepalive_abort", "user_timeout_decides"}, "keepalive_probes",
         "is on source; it belongs on dest"),
        (rule_on_the_wrong_port, EX2_FAST, None, "keepalive_abort", "drops port 8991, not 8990"),
        (rule_before_the_first_exchange, EX2_FAST, None, "connection_established", "the drop rule (step 4"),
        (client_before_server, EX2_FAST, None, "keepalive_probes", "the client was started before the server listened"),
        (client_interrupted, ["keepidle=4", "keepintvl=1", "keepcnt=5", "user_timeout=5500"], None, "keepalive_abort",
         "the client was stopped (Ctrl-C?)"),
        (server_stopped_for_the_rule, EX2_FAST, None, "keepalive_probes", "the server closed the connection (stopped with Ctrl-C?)"),
        (finish_before_the_abort, ["keepidle=4", "keepintvl=2", "keepcnt=5", "user_timeout=9000"], None, "keepalive_probes",
         "`invoke finish` came"),
        (no_capture_of_ones_own, EX2_FAST, {"student_capture"}, "student_capture", "step 1 (On source, start tcpdump"),
        (capture_on_the_wrong_interface, EX2_FAST, {"student_capture"}, "student_capture", "step 1 (On source, start tcpdump"),
        (capture_stopped_too_early, EX2_FAST, {"student_capture"}, "student_capture", "stop it only after the end"),
    ],
    ids=lambda v: v.__name__ if callable(v) else None,
)
def test_a_usual_mistake_gives_a_failing_check_and_its_hint(person, tmp_path, mistake, values, failing, check, words):
    lab = "homistake"
    p = person(lab, "exercise2", values)
    mistake(p)
    r = p.finish(tmp_path / "r")
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in out, out
    v = verdicts(tmp_path / "r")
    assert v[check] is False, v
    if failing is not None:
        assert {n for n, ok in v.items() if not ok} == failing, v
    assert words in hint(tmp_path / "r", check), report(tmp_path / "r")["checks"]
    if mistake is capture_on_the_wrong_interface:
        assert "source.pcap: none of the connection" in " ".join(r.stdout.split())
    if mistake is capture_stopped_too_early:
        assert "tcpdump was stopped too early" in " ".join(r.stdout.split())
    assert "hint" in " ".join(out.split())  # on screen too
    assert namespaces(lab) == []


# --- nothing left behind --------------------------------------------------------------------------


def test_sigkill_of_start_watch_and_finish_then_down_leaves_nothing(tmp_path):
    lab = "hokill"
    # start, killed while the keeper brings the lab up: the keeper goes on; down stops it and removes all.
    proc = start("start", "exercise2", "--lab", lab, *sets(EX2_FAST))
    deadline = time.monotonic() + 60
    while not (STATE_ROOT / lab / "state.json").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    deadline = time.monotonic() + 60
    while handson_record(lab)["status"] != "ready":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    keeper = handson_record(lab)["keeper"]
    # watch, killed: the lab is as it was.
    w = start("watch", "--lab", lab)
    time.sleep(2)
    w.send_signal(signal.SIGKILL)
    w.wait(10)
    w.stdout.close()
    assert pid_alive(keeper) and handson_record(lab)["status"] == "ready"
    # finish, killed while it waits: the keeper finishes and tears down on its own; down finds nothing more.
    f = start("finish", "--lab", lab, "--results", str(tmp_path / "r"))
    deadline = time.monotonic() + 30
    while not (tmp_path / "r" / "manifest.json").exists() and pid_alive(keeper):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    f.send_signal(signal.SIGKILL)
    f.wait(10)
    f.stdout.close()
    r = invoke("down", "--lab", lab)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_lab_gone(lab, [keeper])
    assert not (STATE_ROOT / f"{lab}.keeper.log").exists()


def test_sigkill_of_the_keeper_then_down_removes_the_persons_processes(person, tmp_path):
    lab = "hokeeper"
    p = person(lab, "exercise2", EX2_FAST)
    p.type("server", "dest", p.commands[1])
    wait_step(lab, 2)
    rec = handson_record(lab)
    ps = subprocess.run(["ip", "netns", "pids", f"tcplab-{lab}-dest"], capture_output=True, text=True).stdout.split()
    assert ps, "the person's shell and server run in dest"
    os.kill(rec["keeper"], signal.SIGKILL)
    time.sleep(0.5)
    assert f"{lab}: netns, left over" in " ".join(invoke("status").stdout.split())
    watched = invoke("watch", "--lab", lab)  # one line saying why, not a traceback
    assert watched.returncode == 2 and "keeper is gone" in watched.stderr and "Traceback" not in watched.stderr, watched.stderr
    r = invoke("down", "--lab", lab)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_lab_gone(lab, [rec["keeper"], *map(int, ps)])


def test_bad_input_for_start_is_one_line(tmp_path):
    for args, words in ((["start", "exercise9"], "known exercises"), (["start", "exercise2", "--set", "user_timeout=0"], "exercise2 is about"),
                        (["start", "tcp-states", "--set", "latency=0,10"], "sweeps are for `invoke up`"),
                        (["steps", "--lab", "nosuchlab"], "is not a hands-on lab"), (["finish", "--lab", "nosuchlab"], "is not a hands-on lab"),
                        (["shell", "moon", "--lab", "nosuchlab"], "is not a hands-on lab")):
        r = invoke(*args)
        out = r.stdout + r.stderr
        assert r.returncode == 2 and "Traceback" not in out and words in out, out
    assert namespaces("tcplab") == []


def test_tcp_states_by_hand_with_tcplab_adding_the_delay_and_the_trace(person, tmp_path):
    lab = "hostates"
    p = person(lab, "tcp-states", ["latency=10", "total=200000"])
    assert "10.0 ms of delay each way" in " ".join(p.started.split())
    p.type("reader", "dest", p.commands[0])
    screen = p.tmux.wait_for(p.shells["reader"], "mtu 1500")
    wait_step(lab, 1)
    p.type("writer", "source", p.commands[1])
    wait_step(lab, 3, timeout=30)
    r = p.finish(tmp_path / "r")
    assert r.returncode == 0, r.stdout + r.stderr
    assert verdicts(tmp_path / "r") == {"state_transitions (client)": True, "state_transitions (server)": True,
                                         "handshake_rtt": True, "trace_agrees_with_pcap": True}
    assert (tmp_path / "r" / "state_diagram.svg").exists() and "mtu 1500" in screen


def test_zero_window_probe_by_hand_with_the_bridge_scripts(person, tmp_path):
    """The person loses the window update with the observer's drop-update and restore-update scripts,
    which mark the timeline as the automated run's bridge_drop and bridge_restore steps do."""
    lab = "hozwp"
    p = person(lab, "zero-window-probe", ["stall=6", "loss=2", "duration=12"])
    p.type("server", "dest", p.commands[0])
    wait_step(lab, 1)
    p.type("client", "source", p.commands[1])
    wait_step(lab, 2)
    time.sleep(1)  # the window closes and probing begins before the drop, as in the automated run
    p.type("bridge", "observer", p.commands[2])
    wait_step(lab, 3)
    wait_step(lab, 4, timeout=20)
    time.sleep(2)
    p.type("bridge", "observer", p.commands[4])
    wait_step(lab, 5, timeout=40)
    r = p.finish(tmp_path / "r")
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(verdicts(tmp_path / "r").values()) and "window_update_lost" in verdicts(tmp_path / "r")
    steps = [e["step"] for e in json.loads((tmp_path / "r" / "manifest.json").read_text())["timeline"] if e.get("by") == "hands-on"]
    assert steps == ["bridge_drop", "bridge_restore"]


def test_a_client_without_its_log_is_judged_from_the_packets_alone(person, tmp_path):
    """The client run where its events do not reach the lab: the packets are judged against the lab's
    values, and the verdict says what could not be known."""
    lab = "honolog"
    p = person(lab, "exercise2", EX2_FAST)
    p.commands[2] = "env -u TCPLAB_EVENTS " + p.commands[2]
    seed_steps(p, 1, 2, 3, 4)
    p.tmux.wait_for(p.shells["client"], '"error": "ETIMEDOUT"')  # its JSON events land on its terminal instead
    r = p.finish(tmp_path / "r")
    out = " ".join(r.stdout.split())
    assert r.returncode == 0, out
    assert "could not be known (no log says)" in out and "keepidle=1" in out
    abort = next(c for c in report(tmp_path / "r")["checks"] if c["name"] == "keepalive_abort")
    assert abort["passed"] and "what recv() returned could not be known: client.log is missing" in abort["detail"]


def test_undo_puts_a_hosts_firewall_back_as_it_was(tmp_path):
    """What a person may do to a machine's firewall, and undo putting it back: their rules removed in every
    table, IPv4 and IPv6, policies and deleted rules restored, and another lab's chain left alone."""
    ns = "tcplab-houndo-x"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        def on(*argv: str) -> str:
            return subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, text=True).stdout

        helper = str(Path(__file__).resolve().parents[2] / "lab" / "onhost" / "handson.py")
        on("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
        before = {cmd: on(*cmd.split()) for cmd in ("iptables -S", "iptables -t nat -S", "ip6tables -S")}
        on("python3", helper, "baseline", str(tmp_path / "base.json"))
        on("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "8990", "-j", "DROP")
        on("iptables", "-D", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
        on("iptables", "-P", "FORWARD", "DROP")
        on("iptables", "-t", "nat", "-A", "POSTROUTING", "-j", "MASQUERADE")
        on("ip6tables", "-A", "INPUT", "-p", "tcp", "--dport", "8990", "-j", "DROP")
        on("iptables", "-N", "TL_otherlab")  # another lab's chain, made meanwhile: not the person's
        on("iptables", "-A", "INPUT", "-j", "TL_otherlab")
        assert abs(json.loads(on("python3", helper, "now")) - time.time()) < 60  # the machine's clock, which its captures are on
        undone = json.loads(on("python3", helper, "undo", str(tmp_path / "base.json"), "houndo/x", str(tmp_path)))["undone"]
        assert "iptables rule -A INPUT -p tcp -m tcp --dport 8990 -j DROP" in undone and "iptables policy FORWARD ACCEPT again" in undone
        assert "iptables nat rule -A POSTROUTING -j MASQUERADE" in undone and "ip6tables rule -A INPUT -p tcp -m tcp --dport 8990 -j DROP" in undone
        after = on("iptables", "-S")
        assert "--dport 22 -j ACCEPT" in after and "8990" not in after and "-P FORWARD ACCEPT" in after
        assert "-A INPUT -j TL_otherlab" in after
        assert on("iptables", "-t", "nat", "-S") == before["iptables -t nat -S"] and on("ip6tables", "-S") == before["ip6tables -S"]
    finally:
        subprocess.run(["ip", "netns", "del", ns])
