"""The SSH backend against real sshd: stand-in VMs (containers with sshd, see sshvms.py) reached over
veths of the test's own. The exercises pass as on namespaces; host keys are checked; each machine is
checked before anything starts; SIGKILL then `down` from the inventory alone leaves nothing behind."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import textwrap
from pathlib import Path

import pytest
import yaml

from lab.backends.ssh import PROGRESS_BYTES

from . import sshvms
from .test_impair import kernel_has_netem
from .conftest import EX1_FAST, EX2_FAST, STATE_ROOT, invoke, sigkill_when, start, up, verdicts, with_sets


@pytest.fixture(scope="module")
def vms(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sshvms")
    machines, backend, state = sshvms.start(folder)
    yield machines
    sshvms.stop(backend, state)


def assert_machines_clean(vms: sshvms.Vms, lab: str) -> None:
    for role in sshvms.ROLES:
        left = sshvms.remote_state(vms, role, lab)
        assert left == {"chain": False, "folders": [], "processes": []}, f"{role}: {left}"


def ssh_up(exercise: str, lab: str, sets: list[str], results: Path, inventory: Path, *extra: str):
    return up(exercise, lab, sets, results, "--backend", "ssh", "--inventory", str(inventory), *extra)


def test_exercise2_over_ssh_gives_the_netns_report(vms, tmp_path):
    r = ssh_up("exercise2", "sshex2", EX2_FAST, tmp_path / "ssh", vms.inventory())
    assert r.returncode == 0, r.stdout + r.stderr
    local = up("exercise2", "sshex2n", EX2_FAST, tmp_path / "netns")
    assert local.returncode == 0, local.stdout + local.stderr
    assert verdicts(tmp_path / "ssh") == verdicts(tmp_path / "netns")
    assert len(verdicts(tmp_path / "ssh")) == 4 and all(verdicts(tmp_path / "ssh").values())

    m = json.loads((tmp_path / "ssh" / "manifest.json").read_text())
    assert m["backend"] == "ssh"
    # The exercise used the inventory's data-plane addresses, not the SSH ones or the topology's.
    assert m["addresses"] == {"source": "10.0.2.1", "dest": "10.0.2.2"}
    assert m["programs"]["client"]["argv"][m["programs"]["client"]["argv"].index("--host") + 1] == "10.0.2.2"
    assert m["machines"]["source"]["ssh"] == f"lab@{vms.mgmt['source']}:22" and m["machines"]["source"]["sudo"] is True
    assert m["machines"]["source"]["interface"] == "eth1" and m["machines"]["observer"]["interface"] == "br0"
    assert m["kernel"]["hz"] == m["machines"]["source"]["kernel"]["hz"]
    captures = {c["name"]: c for c in m["captures"]}
    assert set(captures) == {"source", "observer"}
    assert captures["source"]["interface"] == "eth1" and captures["observer"]["interface"] == "br0"
    for name in captures:
        assert captures[name]["packets_captured"] >= 8 and (tmp_path / "ssh" / f"{name}.pcap").stat().st_size > 24
    # The client ran as root through sudo: the programs' logs came back.
    assert '"event": "waiting"' in (tmp_path / "ssh" / "client.log").read_text()
    assert_machines_clean(vms, "sshex2")


def test_exercise1_without_observer_captures_on_source_and_dest(vms, tmp_path):
    # dest by its alias in an ssh_config file written the way `vagrant ssh-config` writes one.
    inv = vms.inventory("no-observer.yml", with_observer=False, ssh_config=vms.ssh_config(),
                        dest={"host": "vm-dest", "user": None, "key": None})
    r = ssh_up("exercise1", "sshex1", EX1_FAST, tmp_path / "run", inv)
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(verdicts(tmp_path / "run").values()) and len(verdicts(tmp_path / "run")) == 3
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    captures = {c["name"]: c for c in m["captures"]}
    assert set(captures) == {"source", "dest"}
    # The observer's capture point is stood for by both, source first (the one checks naming it read).
    assert captures["source"]["stands_for"] == ["observer"] and captures["dest"]["stands_for"] == ["observer"]
    assert "observer" not in m["machines"]
    assert m["machines"]["dest"]["ssh"] == f"root@{vms.mgmt['dest']}:22"  # from the alias's HostName and User
    assert "capture on dest:eth1 (tcp port 8990), standing for observer" in " ".join(r.stdout.split())
    assert_machines_clean(vms, "sshex1")


def test_a_changed_host_key_is_refused(vms, tmp_path):
    lines = vms.known_hosts.read_text().splitlines()
    # dest's entry now carries source's key: what a machine in the middle would look like.
    wrong = [lines[0], f"{vms.mgmt['dest']} {vms.host_keys['source']}", lines[2]]
    kh = tmp_path / "known_hosts"
    kh.write_text("\n".join(wrong) + "\n")
    inv = vms.inventory("changed.yml")
    data = yaml.safe_load(inv.read_text())
    data["known_hosts"] = str(kh)
    inv.write_text(yaml.safe_dump(data))
    for extra in ([], ["--accept-new-host-keys"]):  # accepting new keys never accepts a changed one
        r = ssh_up("exercise1", "sshkey", EX1_FAST, tmp_path / "run", inv, *extra)
        out = " ".join((r.stdout + r.stderr).split())
        assert r.returncode == 2, out
        assert f"dest (root@{vms.mgmt['dest']} port 22): host key changed" in out and "ssh-keygen -R" in out
        assert kh.read_text() == "\n".join(wrong) + "\n"
    assert not (tmp_path / "run").exists()
    assert_machines_clean(vms, "sshkey")


def test_an_unknown_host_key_is_refused_unless_accepted(vms, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("".join(f"{vms.mgmt[r]} {vms.host_keys[r]}\n" for r in ("source", "observer")))
    inv = vms.inventory("unknown.yml")
    data = yaml.safe_load(inv.read_text())
    data["known_hosts"] = str(kh)
    inv.write_text(yaml.safe_dump(data))
    r = ssh_up("exercise1", "sshnew", EX1_FAST, tmp_path / "refused", inv)
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2 and "host key unknown" in out and "--accept-new-host-keys" in out, out
    assert vms.host_keys["dest"] not in kh.read_text()
    assert_machines_clean(vms, "sshnew")

    r = ssh_up("exercise1", "sshnew", EX1_FAST, tmp_path / "accepted", inv, "--accept-new-host-keys")
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 0, out
    assert f"accepted new host key {vms.host_keys['dest'].split()[0]}" in out and f"added it to {kh}" in out
    assert f"{vms.mgmt['dest']} {vms.host_keys['dest']}" in kh.read_text()


def test_every_machine_is_checked_before_anything_starts(vms, tmp_path):
    """A missing tool, sudo wanting a password and an unreachable machine, all named in one go."""
    inv = vms.inventory("problems.yml", source={"user": "pw"}, observer={"port": 2222})
    moved = vms.exec("dest", "mv", "/usr/bin/tcpdump", "/usr/bin/tcpdump.away")
    assert moved.returncode == 0, moved.stderr
    try:
        r = ssh_up("exercise2", "sshpre", EX2_FAST, tmp_path / "run", inv)
    finally:
        vms.exec("dest", "mv", "/usr/bin/tcpdump.away", "/usr/bin/tcpdump")
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2, out
    assert "Traceback" not in out
    assert f"source (pw@{vms.mgmt['source']} port 22): sudo needs a password" in out and "NOPASSWD" in out
    assert f"dest (root@{vms.mgmt['dest']} port 22): missing tcpdump: install with `sudo apt-get install -y tcpdump`" in out
    assert f"observer (root@{vms.mgmt['observer']} port 2222): unreachable: Connection refused" in out
    assert not (tmp_path / "run").exists()
    assert_machines_clean(vms, "sshpre")


def test_a_refused_key_is_named(vms, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    other = tmp_path / "id_other"
    other.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    other.chmod(0o600)
    r = ssh_up("exercise1", "sshauth", EX1_FAST, tmp_path / "run", vms.inventory("auth.yml", dest={"key": str(other)}))
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2, out
    assert f"dest (root@{vms.mgmt['dest']} port 22): authentication refused" in out and f"offered {other}" in out
    assert_machines_clean(vms, "sshauth")


def test_sigkill_then_down_from_the_inventory_alone(vms, tmp_path):
    lab = "sshkill"
    inv = vms.inventory()
    # Long keepalive: the client, the server and both captures are still running when `up` dies.
    proc = start(*with_sets("exercise2", lab, ["keepidle=60"], "--backend", "ssh", "--inventory", str(inv)))
    running: dict = {}

    def firewalled() -> bool:
        if vms.exec("dest", "iptables", "-w", "-n", "-L", f"TL_{lab}").returncode != 0:
            return False
        running.update({role: sshvms.remote_state(vms, role, lab) for role in sshvms.ROLES})
        return True

    sigkill_when(proc, firewalled, "the firewall rule on dest")
    assert running["dest"]["chain"] and "python3" in running["source"]["processes"] and "tcpdump" in running["observer"]["processes"]
    # This machine forgets the lab, as if `up` had run elsewhere: the inventory is all `down` has.
    shutil.rmtree(STATE_ROOT / lab)
    (STATE_ROOT / f"{lab}.lock").unlink(missing_ok=True)
    r = invoke("down", "--lab", lab, "--inventory", str(inv))
    out = " ".join(r.stdout.split())
    assert r.returncode == 0, out + r.stderr
    for what in ("process client on source", "process tcpdump-source on source", f"iptables chain TL_{lab} on dest",
                 "process server on dest", "process tcpdump-observer on observer", f"folder /home/lab/.tcplab/{lab} on source"):
        assert what in out
    assert_machines_clean(vms, lab)
    r = invoke("down", "--lab", lab, "--inventory", str(inv))
    assert r.returncode == 0 and "nothing left to remove" in r.stdout


def test_another_runs_lab_on_the_machines_is_refused_and_left_alone(vms, tmp_path):
    lab = "sshother"
    # What another orchestrator's run of the same lab name leaves on the machines while it runs.
    assert vms.exec("source", "sh", "-c", f"mkdir -p /home/lab/.tcplab/{lab} && touch /home/lab/.tcplab/{lab}/theirs && chown -R lab:lab /home/lab/.tcplab").returncode == 0
    assert vms.exec("dest", "iptables", "-w", "-N", f"TL_{lab}").returncode == 0
    r = ssh_up("exercise1", lab, EX1_FAST, tmp_path / "run", vms.inventory())
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2 and f"already holds lab {lab}" in out and "Traceback" not in out, out
    assert vms.exec("source", "test", "-f", f"/home/lab/.tcplab/{lab}/theirs").returncode == 0
    assert sshvms.remote_state(vms, "dest", lab)["chain"]
    # `down` with the inventory alone is how its owner (or anyone) removes it.
    assert invoke("down", "--lab", lab, "--inventory", str(vms.inventory())).returncode == 0
    assert_machines_clean(vms, lab)


def test_keep_then_down_finds_the_machines_from_the_record(vms, tmp_path):
    lab = "sshkeep"
    r = ssh_up("exercise1", lab, EX1_FAST, tmp_path / "run", vms.inventory(), "--keep")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sshvms.remote_state(vms, "source", lab)["folders"] == [f"/home/lab/.tcplab/{lab}"]
    assert f"{lab}: ssh, kept up" in " ".join(invoke("status").stdout.split())
    r = invoke("down", "--lab", lab)  # no --inventory: the lab's record names it
    assert r.returncode == 0, r.stdout + r.stderr
    assert_machines_clean(vms, lab)
    assert not (STATE_ROOT / lab).exists()


def one_program_exercise(folder: Path, script: str, code: str, yml: str) -> Path:
    """An exercise folder of one's own: one Python program and its exercise.yml."""
    folder.mkdir()
    (folder / script).write_text(code)
    (folder / "exercise.yml").write_text(textwrap.dedent(yml))
    return folder


def test_values_reach_programs_as_they_are(vms, tmp_path):
    """A --set value full of shell syntax arrives as one argument and runs nothing."""
    ex = one_program_exercise(tmp_path / "echo", "echo.py",
                              "import json, sys\nprint(json.dumps({'event': 'args', 'args': sys.argv[1:]}), flush=True)\n", """
        title: Echo
        description: prints its arguments
        parameters:
          msg: {type: str, default: hello, help: a message}
        programs:
          echo: {host: source, script: echo.py, args: [--msg, "{msg}", "{dest.ip}"]}
        timeline:
          - start: echo
          - wait_exit: {program: echo, timeout: 10}
          - collect:
    """)
    nasty = "$(touch /tmp/pwned); `touch /tmp/pwned2` && echo 'q' \"d\" \\ * > /tmp/pwned3"
    r = invoke("up", str(ex), "--lab", "sshecho", "--results", str(tmp_path / "run"), "--set", f"msg={nasty}",
               "--backend", "ssh", "--inventory", str(vms.inventory()))
    # The exercise has no checks of its own (this test is its check), which `up` reports as a failure.
    assert r.returncode == 1 and "lists no checks" in r.stdout, r.stdout + r.stderr
    event = json.loads((tmp_path / "run" / "echo.log").read_text().splitlines()[0])
    assert event["args"] == ["--msg", nasty, "10.0.2.2"]
    for role in ("source", "dest"):
        assert vms.exec(role, "sh", "-c", "ls /tmp/pwned* /home/lab/pwned* /root/pwned* 2>/dev/null").stdout == ""
    assert_machines_clean(vms, "sshecho")


def test_sysctls_are_set_and_put_back(vms, tmp_path):
    ex = one_program_exercise(tmp_path / "sysctl", "show.py",
                              "import json\nprint(json.dumps({'event': 'value', 'value': open('/proc/sys/net/ipv4/tcp_keepalive_time').read().strip()}))\n", """
        title: Sysctl
        description: shows a sysctl the exercise sets
        sysctls:
          source: {net.ipv4.tcp_keepalive_time: 77}
        programs:
          show: {host: source, script: show.py}
        timeline:
          - start: show
          - wait_exit: {program: show, timeout: 10}
          - collect:
    """)
    before = vms.exec("source", "cat", "/proc/sys/net/ipv4/tcp_keepalive_time").stdout.strip()
    assert before != "77"
    r = invoke("up", str(ex), "--lab", "sshctl", "--results", str(tmp_path / "run"), "--backend", "ssh", "--inventory", str(vms.inventory()))
    assert r.returncode == 1 and "lists no checks" in r.stdout, r.stdout + r.stderr
    assert json.loads((tmp_path / "run" / "show.log").read_text())["value"] == "77"
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["sysctls"]["source"]["net.ipv4.tcp_keepalive_time"] == "77"
    assert vms.exec("source", "cat", "/proc/sys/net/ipv4/tcp_keepalive_time").stdout.strip() == before
    assert_machines_clean(vms, "sshctl")


def test_status_and_bad_inventories_say_what_to_fix(vms, tmp_path):
    r = invoke("up", "exercise1", "--backend", "ssh")
    assert r.returncode == 2 and "--backend ssh needs --inventory FILE" in r.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("machines:\n  source: {host: 10.0.0.1}\n")
    r = invoke("up", "exercise1", "--backend", "ssh", "--inventory", str(bad))
    assert r.returncode == 2 and f"{bad}: machines.dest: required" in r.stderr, r.stderr
    # zero-window-probe drops frames on the observer's bridge: without an observer machine it cannot run.
    r = invoke("up", "zero-window-probe", "--backend", "ssh", "--inventory", str(vms.inventory("noobs.yml", with_observer=False)))
    assert r.returncode == 2 and "(bridge_drop) needs an observer machine" in r.stderr, r.stderr


def test_zero_window_probe_drops_on_the_observer_machines_bridge(vms, tmp_path):
    """On-path loss needs the observer's bridge: the nftables table of the lab's own goes there and away again."""
    r = ssh_up("zero-window-probe", "sshzw", ["stall=2", "loss=1", "duration=3.2"], tmp_path / "run", vms.inventory())
    out = " ".join(r.stdout.split())
    assert r.returncode == 0, out + r.stderr
    assert all(verdicts(tmp_path / "run").values())
    assert "on observer's bridge: drop segments advertising an open window" in out
    assert vms.exec("observer", "nft", "list", "table", "bridge", "tcplab_sshzw").returncode != 0
    assert_machines_clean(vms, "sshzw")


def test_persist_timer_bulk_captures_come_back_with_progress(vms, tmp_path):
    r = ssh_up("persist-timer", "sshpt", ["stall=3", "duration=4"], tmp_path / "run", vms.inventory("pt.yml", with_observer=False))
    out = " ".join(r.stdout.split())
    assert r.returncode == 0, out + r.stderr
    assert all(verdicts(tmp_path / "run").values())
    for name in ("source", "dest"):
        size = (tmp_path / "run" / f"{name}.pcap").stat().st_size
        assert size > PROGRESS_BYTES and f"fetch {name}:{name}.pcap ({size / 1e6:.1f} MB)" in out
    assert_machines_clean(vms, "sshpt")


# --- tcp-states: the state trace on each machine -------------------------------------------------

STATE_CHECKS = {"state_transitions (client)", "state_transitions (server)", "handshake_rtt", "trace_agrees_with_pcap"}


def tracefs_left(vms: sshvms.Vms, lab: str) -> list[str]:
    """tracefs mounts left in the VMs, and instances of the lab left in the kernel they share."""
    mounts = [f"{role}: {line}" for role in sshvms.ROLES for line in vms.exec(role, "cat", "/proc/mounts").stdout.splitlines()
              if line.startswith("nodev") and "tracefs" in line]
    look = vms.exec("observer", "sh", "-c", "mkdir -p /tmp/tf && mount -t tracefs nodev /tmp/tf && ls /tmp/tf/instances; umount /tmp/tf")
    assert look.returncode == 0, look.stderr
    return mounts + [name for name in look.stdout.split() if name.startswith(f"tcplab_{lab}")]


def test_tcp_states_traces_each_machine(vms, tmp_path):
    lab = "sshst"
    # latency=0: the impair step applies nothing, which the SSH backend allows.
    r = ssh_up("tcp-states", lab, ["latency=0", "total=200000"], tmp_path / "run", vms.inventory())
    assert r.returncode == 0, r.stdout + r.stderr
    assert verdicts(tmp_path / "run") == dict.fromkeys(STATE_CHECKS, True)
    info = json.loads((tmp_path / "run" / "manifest.json").read_text())["state_trace"]
    assert [(t["host"], t["file"], len(t["clock"])) for t in info["traces"]] == [
        ("source", "states-source.trace", 2), ("dest", "states-dest.trace", 2)]
    assert info["unavailable"] == {}
    # Each machine's trace has its own instance (the stand-ins share one kernel, so both see both sides).
    assert "inet_sock_set_state" in (tmp_path / "run" / "states-dest.trace").read_text()
    out = " ".join(r.stdout.split())
    assert f"tracefs instance tcplab_{lab}_source" in out and f"tracefs instance tcplab_{lab}_dest" in out
    assert tracefs_left(vms, lab) == []
    assert_machines_clean(vms, lab)


def test_a_machine_without_tracefs_is_reported_and_its_checks_fail(vms, tmp_path):
    lab = "sshnotf"
    # dest's mount(8) is refused, as in a container without CAP_SYS_ADMIN: no tracefs there.
    fake = "printf '#!/bin/sh\\necho \"mount: permission denied\" >&2\\nexit 32\\n' > /usr/local/bin/mount && chmod +x /usr/local/bin/mount"
    assert vms.exec("dest", "sh", "-c", fake).returncode == 0
    try:
        r = ssh_up("tcp-states", lab, ["latency=0", "total=200000"], tmp_path / "run", vms.inventory())
    finally:
        vms.exec("dest", "rm", "-f", "/usr/local/bin/mount")
    out = " ".join(r.stdout.split())
    assert r.returncode == 1, out
    assert "tracefs is not mounted and cannot be (mount: permission denied)" in out and "the checks that read its transitions will fail" in out
    info = json.loads((tmp_path / "run" / "manifest.json").read_text())["state_trace"]
    assert [t["host"] for t in info["traces"]] == ["source"] and list(info["unavailable"]) == ["dest"]
    # The client's side is judged from source's trace; the server's cannot be, and says why.
    assert verdicts(tmp_path / "run") == {"state_transitions (client)": True, "handshake_rtt": True,
                                          "state_transitions (server)": False, "trace_agrees_with_pcap": False}
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    server = next(c for c in report["checks"] if c["name"] == "state_transitions (server)")
    assert "no state trace of the server's machine dest: state tracing was unavailable there (tracefs is not mounted" in server["detail"]
    assert tracefs_left(vms, lab) == []
    assert_machines_clean(vms, lab)


def test_a_delay_over_ssh_needs_netem_on_the_sending_machines(vms, tmp_path):
    # The stand-ins share this machine's kernel: netem is detected there, never assumed.
    r = ssh_up("tcp-states", "sshdelay", ["latency=10"], tmp_path / "run", vms.inventory())
    out = " ".join((r.stdout + r.stderr).split())
    if kernel_has_netem():
        assert r.returncode == 0, out
        assert json.loads((tmp_path / "run" / "manifest.json").read_text())["impairments"][0]["method"] == "netem"
    else:
        assert r.returncode == 2, out
        assert "its kernel has no netem (sch_netem), which the exercise's delay or loss needs" in out
        assert "source (lab@10.254.0.2 port 22)" in out and "bring up" not in out
    assert_machines_clean(vms, "sshdelay")


def test_sigkill_while_tracing_then_down_removes_the_instances(vms, tmp_path):
    lab = "sshstkill"
    inv = vms.inventory()
    proc = start(*with_sets("tcp-states", lab, ["latency=0", "total=1073741824"], "--backend", "ssh", "--inventory", str(inv)))

    def tracing() -> bool:
        record = vms.exec("dest", "cat", f"/root/.tcplab/{lab}/tracefs.json")
        return record.returncode == 0 and "instances" in record.stdout and f"tcplab_{lab}_dest" in record.stdout \
            and vms.exec("source", "test", "-s", f"/home/lab/.tcplab/{lab}/writer.log").returncode == 0

    sigkill_when(proc, tracing, "tracing on dest and the writer running")
    assert tracefs_left(vms, lab) != []
    r = invoke("down", "--lab", lab, "--inventory", str(inv))
    out = " ".join(r.stdout.split())
    assert r.returncode == 0, out + r.stderr
    assert f"tracefs instance tcplab_{lab}_source on source" in out and f"tracefs instance tcplab_{lab}_dest on dest" in out
    assert tracefs_left(vms, lab) == []
    assert_machines_clean(vms, lab)


def test_a_sweep_over_ssh_checks_every_value_first(vms, tmp_path):
    """The second value's delay needs netem on the machines, which is asked before the first run. The
    stand-ins share this machine's kernel: without netem (as on the project's build machines) the sweep
    is refused before anything runs; with it, the second run delays with netem."""
    r = ssh_up("tcp-states", "sshsweep", ["latency=0,10"], tmp_path / "run", vms.inventory())
    out = " ".join((r.stdout + r.stderr).split())
    if kernel_has_netem():
        assert r.returncode == 0 and "run 2 of 2" in out, out
        assert json.loads((tmp_path / "run" / "latency-10" / "manifest.json").read_text())["impairments"][0]["method"] == "netem"
        assert_machines_clean(vms, "sshsweep")
        return
    assert r.returncode == 2, out
    assert "has no netem (sch_netem)" in out and "run 1 of 2" not in out
    assert not (tmp_path / "run").exists()
    assert_machines_clean(vms, "sshsweep")


# --- hands-on mode over SSH: a person's shells on the machines ------------------------------------
@contextlib.contextmanager
def person_on(vms, lab: str, exercise: str, values: list[str], inventory: Path | None = None):
    """Someone doing an exercise by hand on the stand-in VMs, with shells over SSH."""
    from .test_handson import Person

    p = Person(lab, exercise, values, "--backend", "ssh", "--inventory", str(inventory or vms.inventory()))
    try:
        yield p
    finally:
        p.close()


def test_exercise2_by_hand_over_ssh(vms, tmp_path):
    from .test_handson import KEEPALIVE, keepalive_by_hand

    lab = "sshhands"
    with person_on(vms, lab, "exercise2", EX2_FAST) as p:
        # The capture's interface is the machine's own data-plane one.
        assert "tcpdump -i eth1 -nnvvX --print -w source.pcap" in " ".join(p.started.split())
        keepalive_by_hand(p)
        r = p.finish(tmp_path / "r")
        assert r.returncode == 0, r.stdout + r.stderr
        assert verdicts(tmp_path / "r") == dict.fromkeys(KEEPALIVE, True)
        m = json.loads((tmp_path / "r" / "manifest.json").read_text())
        assert m["backend"] == "ssh" and m["parameters"]["user_timeout"] == 2500
        # The person's rule on dest, their programs and shells: gone with the lab, as the lab's own files.
        assert "DROP" not in vms.exec("dest", "iptables", "-w", "-S").stdout
        assert_machines_clean(vms, lab)


def test_sigkill_of_a_hands_on_keeper_then_down_undoes_the_persons_rule(vms, tmp_path):
    from .test_handson import handson_record, seed_steps

    lab = "sshhandskill"
    with person_on(vms, lab, "exercise2", EX2_FAST) as p:
        seed_steps(p, 2, 4)
        assert "DROP" in vms.exec("dest", "iptables", "-w", "-S").stdout
        os.kill(handson_record(lab)["keeper"], signal.SIGKILL)
        r = invoke("down", "--lab", lab)
        assert r.returncode == 0, r.stdout + r.stderr
        out = " ".join(r.stdout.split())
        assert "iptables rule -A INPUT -p tcp -m tcp --dport 8990 -j DROP on dest" in out and "process python3" in out
        assert "DROP" not in vms.exec("dest", "iptables", "-w", "-S").stdout
        assert_machines_clean(vms, lab)


def test_persist_timer_by_hand_over_ssh(vms, tmp_path):
    from .test_handson import persist_by_hand

    lab = "sshhandspt"
    with person_on(vms, lab, "persist-timer", ["stall=3", "duration=4"]) as p:
        persist_by_hand(p)
        r = p.finish(tmp_path / "r")
        assert r.returncode == 0, r.stdout + r.stderr
        assert all(verdicts(tmp_path / "r").values()) and "window_probes" in verdicts(tmp_path / "r")
        assert_machines_clean(vms, lab)
