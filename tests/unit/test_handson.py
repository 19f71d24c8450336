"""Hands-on mode's pure logic: the `hands_on:` format and its errors, drop rules read from iptables,
and what `watch` tells and expects next, on synthetic captures."""
from __future__ import annotations

import textwrap

import pytest

from lab.analysis import tcpflow as tf
from lab.errors import ConfigError
from lab.handson import live
from lab.handson.conditions import Scene, drops, holds
from lab.spec import exercise
from tests.pcapbuild import Conversation


def test_every_exercise_has_hands_on_steps_with_a_condition_each():
    for name in exercise.known():
        ex = exercise.load(name)
        assert ex.hands_on is not None and ex.hands_on.steps, name
        assert all(s.done_when for s in ex.hands_on.steps), name


def test_exercise1_follows_the_seeds_five_steps_with_its_tcpdump_filter():
    steps = exercise.load("exercise1").hands_on.steps
    assert [s.host for s in steps] == ["source", "dest", "source", "dest", None]
    assert "'(dst port {port}) or (src port {port})'" in steps[0].run and steps[0].run.startswith("tcpdump -i {source.iface} -nnvvX")
    assert [c.kind for s in steps for c in s.done_when] == ["capturing", "listening", "exchange", "drop_rule", "reset"]


BASE = """
title: t
description: d
parameters: {port: {default: 1, help: p}}
programs: {client: {host: source, script: client.py, args: ["{port}"]}}
timeline: []
"""


def own(tmp_path, hands_on: str) -> str:
    d = tmp_path / "mine"
    d.mkdir()
    (d / "client.py").write_text("")
    (d / "exercise.yml").write_text(BASE + "hands_on:\n" + textwrap.indent(textwrap.dedent(hands_on), "  "))
    return str(d)


@pytest.mark.parametrize(
    "body, field, words",
    [
        ("steps: []\n", "hands_on.steps", "at least one step"),
        ("steps: [{do: x, done_when: {flying: source}}]\n", "hands_on.steps[0].done_when.flying", "unknown condition"),
        ("steps: [{do: x, done_when: {listening: {host: moon, port: 1}}}]\n", "hands_on.steps[0].done_when.listening.host", "no host 'moon'"),
        ("steps: [{do: x, done_when: {listening: {host: dest}}}]\n", "hands_on.steps[0].done_when.listening.port", "required field is missing"),
        ("steps: [{do: x, done_when: {running: {host: dest, program: nobody}}}]\n", "hands_on.steps[0].done_when.running.program", "no program"),
        ("steps: [{do: x, run: ls, done_when: {capturing: source}}]\n", "hands_on.steps[0].host", "says on which host"),
        ("steps: [{do: 'x {nope}', done_when: {capturing: source}}]\n", "hands_on.steps[0].do", "unknown placeholder {nope}"),
        ("steps: [{do: x, done_when: {connected: {port: 70000}}}]\n", "hands_on.steps[0].done_when.connected.port", "not a port number"),
        ("steps: [{do: x, done_when: {capturing: source}}]\nobserved: {port: client.options}\n", "hands_on.observed.port", "program.event.field"),
        ("steps: [{do: x, done_when: {capturing: source}}]\nfiles: {source: {../x: y}}\n", "hands_on.files.source.../x", "no '/'"),
        ("setup: [{jump: {}}]\nsteps: [{do: x, done_when: {capturing: source}}]\n", "hands_on.setup[0]", "unknown step 'jump'"),
        ("steps: [{do: x, done_when: {capturing: source}}]\ndefaults: {nope: 1}\n", "hands_on.defaults.nope", "no parameter 'nope'"),
        ("steps: [{do: x, done_when: {capturing: source}}]\ndefaults: {port: many}\n", "hands_on.defaults.port", "is not an integer"),
    ],
)
def test_hands_on_errors_name_the_file_and_the_field(tmp_path, body, field, words):
    with pytest.raises(ConfigError) as e:
        exercise.load(own(tmp_path, body))
    assert e.value.field == field and words in e.value.message, e.value


@pytest.mark.parametrize(
    "rule, port, dropped",
    [
        ("-A INPUT -p tcp -m tcp --dport 8990 -j DROP", 8990, True),
        ("-A OUTPUT -p tcp -m tcp --sport 8990 -j REJECT --reject-with tcp-reset", 8990, True),
        ("-A INPUT -p tcp -m tcp --dport 8991 -j DROP", 8990, False),
        ("-A INPUT -p tcp -m multiport --dports 22,8000:9000 -j DROP", 8990, True),
        ("-A INPUT -j DROP", 8990, True),  # everything, the port too
        ("-A INPUT -p tcp -m tcp --dport 8990 -j ACCEPT", 8990, False),
        ("-P INPUT DROP", 8990, False),  # a policy, not a rule the person added
    ],
)
def test_which_iptables_rules_drop_the_port(rule, port, dropped):
    assert drops(rule, port) is dropped


def keepalive_flow(tmp_path, probes: list[float]) -> tf.Flow:
    c = Conversation()
    c.handshake()
    c.client_data(0.001, b"hello")
    c.server_data(0.002, b"reply")
    c.client_ack(0.0021)
    for t in probes:
        c.client_probe(0.002 + t)
    return tf.analyze_file(c.write(tmp_path / "k.pcap"))[0]


OPTIONS = {"event": "options", "keepalive": 1, "keepidle": 4, "keepintvl": 2, "keepcnt": 9, "user_timeout": 9000}


def test_watch_tells_each_probe_and_expects_the_next_one_interval_after_the_last(tmp_path):
    flow = keepalive_flow(tmp_path, [4.167])
    told, expect = live.story([flow], OPTIONS, None, 250)
    texts = [t.text for t in told]
    assert texts[0].startswith("connection 10.0.1.1:40000 -> 10.0.1.2:8990: SYN, SYN-ACK")
    assert "first exchange: 5 bytes from the client, 5 back" in texts
    assert "keepalive probe 1 unanswered, at 4.167 s after the last received segment" in texts
    # The next probe's timer is armed by this one: 2 s after it, within the interval's allowance at HZ=250.
    assert expect == "next keepalive probe due at 6.17 s after the last received segment, window 6.166..6.204"


def test_watch_expects_the_abort_after_the_last_probe_the_user_timeout_allows(tmp_path):
    flow = keepalive_flow(tmp_path, [4.167, 6.183, 8.199])
    _, expect = live.story([flow], OPTIONS, None, 250)
    assert expect.startswith("abort (RST, ETIMEDOUT) due at 10.20 s after the last received segment")


def test_conditions_on_the_wire(tmp_path):
    flow = keepalive_flow(tmp_path, [4.0])
    scene = Scene(facts={}, flows=[flow])
    assert holds("connected", {"port": 8990}, scene) and holds("exchange", {"port": 8990}, scene)
    assert holds("probes", {"port": 8990}, scene) and not holds("reset", {"port": 8990}, scene)
    assert not holds("exchange", {"port": 9999}, scene)  # another port's connection it is not
    scene = Scene(facts={"dest": {"listening": [8990], "iptables": ["-A INPUT -p tcp -m tcp --dport 8990 -j DROP"],
                                  "processes": [{"pid": 1, "argv": ["tcpdump", "-i", "eth0"]}], "captures": []}})
    assert holds("listening", {"host": "dest", "port": 8990}, scene) and holds("drop_rule", {"host": "dest", "port": 8990}, scene)
    assert holds("capturing", {"host": "dest"}, scene) and not holds("capturing", {"host": "source"}, scene)


def test_the_format_document_names_every_condition():
    from lab.spec.handson import CONDITIONS

    doc = (exercise.EXERCISE_DIR.parent / "docs" / "exercise-format.md").read_text()
    assert [k for k in CONDITIONS if f"| `{k}` |" not in doc] == []


def test_rules_added_since_the_baseline_and_the_labs_own():
    from lab.onhost.handson import added, lab_own

    before = ["-P INPUT ACCEPT", "-A INPUT -j ACCEPT", "-A INPUT -j ACCEPT"]
    assert added(["-P INPUT ACCEPT", "-A INPUT -j ACCEPT", "-A INPUT -j ACCEPT", "-A INPUT -j ACCEPT"], before) == ["-A INPUT -j ACCEPT"]
    assert added(["-P INPUT ACCEPT"], before) == []
    assert lab_own("-A INPUT -j TL_lab1") and lab_own("-N TL_lab1") and lab_own("-A TL_lab1 -p tcp -j DROP")
    assert not lab_own("-A INPUT -p tcp --dport 8990 -j DROP")
