import shutil
import textwrap
from pathlib import Path

import pytest

from lab.spec import exercise, params
from lab.errors import ConfigError, LabError


def test_bundled_exercises_load_with_defaults():
    ex1, ex2 = exercise.load("exercise1"), exercise.load("exercise2")
    assert ex1.values["keepcnt"] == 3 and ex1.values["user_timeout"] == 0
    assert ex2.values["keepcnt"] == 9 and ex2.values["user_timeout"] == 9000
    client = ex2.programs["client"]
    assert client.host == "source" and client.script.name == "client.py"
    assert client.args[:4] == ["--host", "10.0.1.2", "--port", "8990"]
    assert [s.kind for s in ex2.steps][:3] == ["capture", "capture", "start"]
    assert [c["check"] for c in ex2.checks][-1] == "user_timeout_decides"


def test_overrides_are_substituted_into_programs_and_timeouts():
    ex = exercise.load("exercise1", ["keepidle=7", "port=9000", "keepcnt=5"])
    args = ex.programs["client"].args
    assert args[args.index("--keepidle") + 1] == "7"
    assert args[args.index("--port") + 1] == "9000"
    capture = ex.steps[0]
    assert capture.args["filter"] == "tcp port 9000"
    wait_exit = next(s for s in ex.steps if s.kind == "wait_exit")
    assert wait_exit.args["timeout"] == 7 + 2 * 6 + 0 + 10
    firewall = next(s for s in ex.steps if s.kind == "firewall")
    assert firewall.args["drop"] == {"protocol": "tcp", "port": 9000}


@pytest.mark.parametrize(
    "sets, words",
    [
        (["nosuch=1"], "exercise1 has no parameter 'nosuch'; its parameters: keepidle"),
        (["keepidle=abc"], "is not an integer"),
        (["keepidle=0"], "below the minimum"),
        (["port=70000"], "above the maximum"),
        (["keepidle"], "expected name=value"),
    ],
)
def test_bad_overrides(sets, words):
    with pytest.raises(LabError, match=words):
        exercise.load("exercise1", sets)


def test_unknown_exercise_lists_known():
    with pytest.raises(LabError, match="known exercises: exercise1, exercise2"):
        exercise.load("exercise9")


def own_exercise(tmp_path, body):
    d = tmp_path / "mine"
    d.mkdir(parents=True)
    shutil.copy(exercise.EXERCISE_DIR / "exercise1" / "client.py", d)
    (d / "exercise.yml").write_text(textwrap.dedent(body))
    return str(d)


BASE = """
title: t
description: d
parameters: {port: {default: 1, help: p}}
programs: {client: {host: source, script: client.py, args: ["{port}"]}}
"""


@pytest.mark.parametrize(
    "timeline, field, words",
    [
        ("- jump: {}", "timeline[0]", "unknown step 'jump'"),
        ("- start: nobody", "timeline[0].start.program", "no program 'nobody'"),
        ("- wait: {program: client, timeout: 1}", "timeline[0].wait.event", "exactly one of event"),
        ("- wait: {program: client, event: x, timeout: 'port +'}", "timeline[0].wait.timeout", "cannot evaluate"),
        ("- wait: {program: client, event: x, timeout: 'nosuch * 2'}", "timeline[0].wait.timeout", "cannot evaluate"),
        ("- capture: {host: moon, interface: eth0}", "timeline[0].capture.host", "no host 'moon'"),
        ("- capture: {host: source}", "timeline[0].capture.interface", "required field is missing"),
        ("- capture: {host: source, interface: eth0, filter: '{nope}'}", "timeline[0].capture.filter", "unknown placeholder {nope}"),
        ("- firewall: {host: dest, drop: {protocol: icmp, port: 1}}", "timeline[0].firewall.drop.protocol", "allowed: tcp, udp"),
        ("- capture: {host: source, interface: eth0}\n- capture: {host: source, interface: eth0}", "timeline[1].capture.name", "already exists"),
        ("- capture: {host: source, interface: eth0, filter: 8990}", "timeline[0].capture.filter", "expected a string"),
        ("- wait: {program: client, line: '[', timeout: 1}", "timeline[0].wait.line", "not a regular expression"),
        ("- sleep: -1", "timeline[0].sleep.seconds", "must be 0 or more"),
        ("- wait_exit: {program: client, timeout: 'port - 5'}", "timeline[0].wait_exit.timeout", "must be 0 or more"),
        ("- capture: {host: source, interface: eth0, name: ../x}", "timeline[0].capture.name", "a capture name is a file name"),
        ("- impair: {from: source, to: moon}", "timeline[0].impair.to", "no host 'moon'"),
        ("- impair: {from: source, to: source}", "timeline[0].impair.to", "two different hosts"),
        ("- impair: {from: source, to: observer}", "timeline[0].impair.to", "no bridge joins source and observer"),
        ("- impair: {from: source, to: dest, delay_ms: -1}", "timeline[0].impair.delay_ms", "must be 0 or more"),
        ("- impair: {from: source, to: dest, loss: 101}", "timeline[0].impair.loss", "a percentage"),
        ("- impair: {from: source, to: dest, direction: up}", "timeline[0].impair.direction", "allowed: both"),
    ],
)
def test_timeline_errors_name_file_and_field(tmp_path, timeline, field, words):
    path = own_exercise(tmp_path, BASE + "timeline:\n" + textwrap.indent(timeline, "  "))
    with pytest.raises(ConfigError) as e:
        exercise.load(path)
    assert e.value.field == field, e.value
    assert words in e.value.message
    assert e.value.file.endswith("mine/exercise.yml")


def test_check_without_a_required_field(tmp_path):
    path = own_exercise(tmp_path, BASE + "timeline: []\nchecks: [{check: keepalive_probes, capture: source, client: client}]\n")
    with pytest.raises(ConfigError, match="keepidle: required by check keepalive_probes"):
        exercise.load(path)


def test_user_timeout_beyond_the_kernel_int_is_refused_before_anything_runs():
    with pytest.raises(LabError, match="above the maximum"):
        exercise.load("exercise2", ["user_timeout=3000000000"])


def test_unknown_check_and_check_fields(tmp_path):
    path = own_exercise(tmp_path, BASE + "timeline: []\nchecks: [{check: magic}]\n")
    with pytest.raises(ConfigError, match="unknown check 'magic'"):
        exercise.load(path)
    path = own_exercise(tmp_path / "b", BASE + "timeline: []\nchecks: [{check: connection_established, colour: red}]\n")
    with pytest.raises(ConfigError, match="colour: unknown field; allowed: check, capture, client"):
        exercise.load(path)


def test_substitution_keeps_type_for_whole_placeholders():
    where = (None, "f")
    assert params.substitute("{n}", {"n": 5}, where) == 5
    assert params.substitute("a{n}b", {"n": 5}, where) == "a5b"
    assert params.substitute(["{dest.ip}"], {"dest.ip": "10.0.1.2"}, where) == ["10.0.1.2"]
    assert params.evaluate("max(a, b / 1000) + 1", {"a": 2, "b": 5000}, where) == 6.0


def test_tools_an_exercise_needs_beyond_the_backend():
    assert exercise.required_tools(exercise.load("exercise1")) == {}
    assert exercise.required_tools(exercise.load("zero-window-probe")) == {"nft": "nftables"}


def test_image_tag_follows_the_dockerfile(tmp_path, monkeypatch):
    from lab.backends.docker import images

    shutil.copytree(images.IMAGE_DIR, tmp_path / "host")
    monkeypatch.setattr(images, "IMAGE_DIR", tmp_path / "host")
    first = images.tag()
    (tmp_path / "host" / "Dockerfile").write_text((tmp_path / "host" / "Dockerfile").read_text() + "\n# edited\n")
    assert images.tag() != first and images.tag().startswith("tcplab/host:")


@pytest.mark.parametrize(
    "sysctls, field, words",
    [
        ("{moon: {net.ipv4.tcp_keepalive_time: 1}}", "sysctls.moon", "no host 'moon'"),
        ("{source: {kernel.hostname: 1}}", "sysctls.source.kernel.hostname", "only per-network-namespace"),
        ("{source: {net.ipv4.tcp_keepalive_time: 'x; reboot'}}", "sysctls.source.net.ipv4.tcp_keepalive_time", "are numbers"),
    ],
)
def test_sysctl_errors(tmp_path, sysctls, field, words):
    path = own_exercise(tmp_path, BASE + f"sysctls: {sysctls}\ntimeline: []\n")
    with pytest.raises(ConfigError) as e:
        exercise.load(path)
    assert e.value.field == field and words in e.value.message


# --- extends: an exercise built on another -----------------------------------------------------------


def test_exercise2_extends_exercise1_without_copying_it():
    ex1, ex2 = exercise.load("exercise1"), exercise.load("exercise2")
    assert "extends: exercise1" in (exercise.EXERCISE_DIR / "exercise2" / "exercise.yml").read_text()
    # The same programs, from exercise1's folder, with exercise2's values.
    assert {n: (p.host, p.script) for n, p in ex2.programs.items()} == {n: (p.host, p.script) for n, p in ex1.programs.items()}
    assert ex2.programs["client"].args[-4:] == ["--keepcnt", "9", "--user-timeout", "9000"]
    assert ex2.programs["client"].script == exercise.EXERCISE_DIR / "exercise1" / "client.py"
    assert [s.kind for s in ex2.steps] == [s.kind for s in ex1.steps]
    assert ex2.checks[:3] == ex1.checks and ex2.checks[3]["check"] == "user_timeout_decides"
    # A parameter's fields merge one by one: the default changes, the help stays exercise1's.
    assert ex2.parameters["keepcnt"].default == 9 and ex2.parameters["keepcnt"].help == ex1.parameters["keepcnt"].help
    assert ex2.dirs == [exercise.EXERCISE_DIR / "exercise2", exercise.EXERCISE_DIR / "exercise1"]


def test_exercise2_refuses_no_user_timeout_and_says_where_to_go():
    with pytest.raises(LabError, match="user_timeout=0 is below the minimum 1: exercise2 is about TCP_USER_TIMEOUT.*exercise1 is the same scenario without it"):
        exercise.load("exercise2", ["user_timeout=0"])


def extending(tmp_path, body, name="mine"):
    d = tmp_path / name
    d.mkdir(parents=True)
    (d / "exercise.yml").write_text(textwrap.dedent(body))
    return str(d)


def test_an_exercise_of_ones_own_extends_a_bundled_one_and_replaces_or_appends_lists(tmp_path):
    path = extending(tmp_path, """
        extends: exercise1
        title: Mine
        parameters:
          keepidle: {default: 7}
          extra: {default: 3, help: an extra parameter}
        timeline:
          append:
            - sleep: "{extra}"
        checks:
          - {check: connection_established, capture: source, client: client}
    """)
    ex = exercise.load(path)
    assert ex.title == "Mine" and ex.description == exercise.load("exercise1").description
    assert ex.values["keepidle"] == 7 and ex.values["extra"] == 3
    assert ex.steps[-1].kind == "sleep" and ex.steps[-1].args == {"seconds": 3.0}
    assert [c["check"] for c in ex.checks] == ["connection_established"]


def test_an_extending_exercises_own_script_is_relative_to_its_own_file(tmp_path):
    path = extending(tmp_path, """
        extends: exercise1
        programs:
          client: {host: source, script: client.py, args: ["{port}"]}
    """)
    shutil.copy(exercise.EXERCISE_DIR / "exercise1" / "client.py", tmp_path / "mine")
    ex = exercise.load(path)
    assert ex.programs["client"].script == (tmp_path / "mine" / "client.py").resolve()
    assert ex.programs["server"].script == exercise.EXERCISE_DIR / "exercise1" / "server.py"


@pytest.mark.parametrize(
    "body, field, words",
    [
        ("extends: exercise9\n", "extends", "unknown exercise 'exercise9'"),
        ("extends: ../nowhere\n", "extends", "no exercise.yml there"),
        ("extends: .\n", "extends", "leads back to an exercise already in the chain"),
        ("extends: exercise1\nchecks: {add: []}\n", "checks.add", "unknown field; allowed: append"),
        ("title: t\ndescription: d\ntimeline: {append: []}\n", "timeline", "this one extends none"),
        ("extends: exercise1\nparameters: {keepcnt: {default: many}}\n", "parameters.keepcnt.default", "is not an integer"),
    ],
)
def test_extends_errors_name_the_file_and_the_field(tmp_path, body, field, words):
    path = extending(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        exercise.load(path)
    assert e.value.field == field and words in e.value.message, e.value
    assert e.value.file == str(Path(path) / "exercise.yml")


def test_a_cycle_of_extends_is_named(tmp_path):
    a = extending(tmp_path, "extends: ../b\n", "a")
    extending(tmp_path, "extends: ../a\n", "b")
    with pytest.raises(ConfigError, match=r"leads back to an exercise already in the chain \(.*a/exercise.yml -> .*b/exercise.yml -> .*a/exercise.yml\)"):
        exercise.load(a)


def test_a_broken_parent_is_named_in_its_own_file(tmp_path):
    extending(tmp_path, "title: t\ndescription: d\ntimeline: [{jump: {}}]\n", "parent")
    child = extending(tmp_path, "extends: ../parent\n", "child")
    with pytest.raises(ConfigError) as e:
        exercise.load(child)
    assert e.value.file.endswith("parent/exercise.yml") and "unknown step 'jump'" in e.value.message


def test_impair_steps_take_the_fields_of_a_topologys_impairments():
    from lab.spec.steps import KINDS
    from lab.spec.topology import IMPAIRMENT_FIELDS

    assert set(KINDS["impair"].fields) == set(IMPAIRMENT_FIELDS)


def test_the_format_document_names_every_step_kind_and_function():
    from lab.spec.functions import FUNCTIONS, SECTIONS
    from lab.spec.steps import KINDS

    doc = (exercise.EXERCISE_DIR.parent / "docs" / "exercise-format.md").read_text()
    names = list(KINDS) + [n for kind in SECTIONS for n in FUNCTIONS.names(kind)]
    assert [n for n in names if f"| `{n}` |" not in doc] == []
