"""Real VMs (`invoke vms`): Debian bookworm under QEMU, reached over SSH by the SSH backend. The
exercises pass on the VM's own kernel (6.1), a delay is netem inside the VMs, two kernels are set
side by side, and a SIGKILL of `vms up` followed by `vms down` leaves nothing on this machine."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lab.analysis import tcpflow as tf
from lab.naming import mirror_interface
from lab.vms import vmset

from .conftest import invoke, sigkill_when, start, up, verdicts

# The set --kernels uses for bookworm: booted here once, used by every test of this file.
SET = "bookworm"
BOOT_TIMEOUT = 900  # a fresh machine builds the image first (debootstrap: a few minutes)


@pytest.fixture(scope="module")
def vm_set():
    r = invoke("vms", "up", "--name", SET, "--kernel", "bookworm", timeout=BOOT_TIMEOUT)
    out = " ".join((r.stdout + r.stderr).split())
    ours = "is up already" not in out  # a set someone else booted is used, and left up
    assert r.returncode == 0 or not ours, out
    record = vmset.load(SET)
    assert record is not None and record.state == "up", out
    yield record, out
    if ours:
        r = invoke("vms", "down", "--name", SET)
        assert r.returncode == 0, r.stdout + r.stderr
        assert_set_gone(SET, record)


def on_vm(record: vmset.SetRecord, role: str, command: str) -> str:
    r = subprocess.run(["ssh", "-F", str(record.path("ssh_config")), role, command], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def qemu_pids(name: str) -> list[int]:
    """PIDs whose command line names one of the set's VMs (read from /proc, never signalled here)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.startswith(f"tcplab-vm-{name}-".encode()) for a in argv):
                found.append(int(proc.name))
    return found


def assert_set_gone(name: str, record: vmset.SetRecord | None = None) -> None:
    assert qemu_pids(name) == [], "QEMU processes left"
    assert not Path(f"/run/netns/{vmset.namespace(name)}").exists(), "namespace left"
    assert not (vmset.ROOT / name).exists(), "folder left"
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert not re.search(r"\b(sou|des|obs)\d:", links), f"a tap in this machine's namespace: {links}"


def assert_vm_clean(record: vmset.SetRecord, lab: str) -> None:
    for role in record.roles:
        state = on_vm(record, role, f"ls -d /root/.tcplab/{lab} 2>/dev/null; tc qdisc show dev eth1 root; "
                                    f"tc qdisc show dev eth1 clsact 2>/dev/null; ip -o link show type dummy")
        assert f"/root/.tcplab/{lab}" not in state and "7c1a" not in state and "clsact" not in state and "tlm" not in state, f"{role}: {state}"


def test_the_set_is_debian_bookworm_with_its_own_keys(vm_set):
    record, out = vm_set
    assert record.kernel_release.startswith("6.1."), record
    assert f"inventory: {record.path('inventory.yml')}" in out or "is up already" in out
    accel = "KVM" if record.accel == "kvm" else "TCG"
    assert record.accel_why and (accel in out or "is up already" in out)
    assert on_vm(record, "source", "uname -r").strip() == record.kernel_release
    # Each VM's host key is its own, and the set's known_hosts holds exactly those.
    keys = (record.path("known_hosts")).read_text().split("\n")
    assert len({line.split()[-1] for line in keys if line}) == len(record.roles)
    # The data plane is the VMs' own: nothing of it is on this machine's interfaces.
    here = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    assert "192.168.56.11" not in here and "192.168.56.12" not in here
    status = invoke("vms", "status")
    assert f"{SET}: 2 Debian bookworm VMs, kernel {record.kernel_release}" in status.stdout, status.stdout


@pytest.fixture(scope="module")
def kernels_run(vm_set, tmp_path_factory):
    """exercise2 with its defaults, `--kernels host,bookworm`: on this machine's namespaces, then over
    SSH on the bookworm pair (the set above, which it finds up and uses)."""
    folder = tmp_path_factory.mktemp("vmkern") / "kernels"
    r = invoke("up", "exercise2", "--lab", "vmkern", "--kernels", "host,bookworm", "--results", str(folder), timeout=300)
    return folder, r.stdout + r.stderr, r.returncode


def test_exercise2_on_the_vms(vm_set, kernels_run):
    record, _ = vm_set
    folder, out, rc = kernels_run
    run = folder / "kernel-bookworm"
    assert rc == 0, out
    assert verdicts(run) and all(verdicts(run).values())
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["backend"] == "ssh" and manifest["kernel"]["release"] == record.kernel_release and manifest["kernel"]["hz"] == 250
    assert_vm_clean(record, "vmkern")


@pytest.fixture(scope="module")
def states_run(vm_set, tmp_path_factory):
    record, _ = vm_set
    folder = tmp_path_factory.mktemp("vmstates") / "run"
    r = up("tcp-states", "vmstates", ["latency=10"], folder, "--backend", "ssh", "--inventory", str(record.path("inventory.yml")))
    assert r.returncode == 0, r.stdout + r.stderr
    return record, folder


def test_tcp_states_with_latency_is_netem_inside_the_vms(states_run):
    record, folder = states_run
    assert all(verdicts(folder).values())
    manifest = json.loads((folder / "manifest.json").read_text())
    applied = manifest["impairments"][0]
    assert applied["method"] == "netem" and applied["where"] == ["source eth1 egress to 192.168.56.12", "dest eth1 egress to 192.168.56.11"]
    # About 20 ms on the wire: the capture's SYN to SYN+ACK, taken before the delay (the mirror).
    report = json.loads((folder / "report.json").read_text())
    rtt = next(c for c in report["checks"] if c["name"] == "handshake_rtt")["observed"]
    capture_ms = float(re.search(r"capture: ([\d.]+) ms", rtt).group(1))
    assert 20.0 <= capture_ms <= 20.0 + manifest["path_rtt"]["max_ms"] + 2, rtt
    assert [c["interface"] for c in manifest["captures"]] == [mirror_interface("vmstates")] * 2
    assert_vm_clean(record, "vmstates")


def test_a_check_fails_when_the_delay_is_not_what_the_exercise_says(states_run, tmp_path):
    # The same run judged as if 30 ms each way had been asked for: the handshake check must fail.
    _, run = states_run
    folder = shutil.copytree(run, tmp_path / "run")
    m = json.loads((folder / "manifest.json").read_text())
    for c in m["checks"]:
        if c.get("check") == "handshake_rtt":
            c["latency_ms"] = "30"
    (folder / "manifest.json").write_text(json.dumps(m))
    r = invoke("check", str(folder))
    assert r.returncode == 1 and "FAIL handshake_rtt" in r.stdout, r.stdout


def test_loss_and_rate_over_ssh_are_netem_too(vm_set, tmp_path):
    # tcp-states with its delay made a lossy, slow link: 2 % of source's segments lost, 16 Mbit/s.
    record, _ = vm_set
    ex = shutil.copytree(Path(__file__).resolve().parents[2] / "exercises" / "tcp-states", tmp_path / "lossy")
    yml = (ex / "exercise.yml").read_text()
    assert '  - impair: {from: source, to: dest, delay_ms: "{latency}"}' in yml
    (ex / "exercise.yml").write_text(yml.replace('  - impair: {from: source, to: dest, delay_ms: "{latency}"}',
                                                 '  - impair: {from: source, to: dest, delay_ms: 2, loss: 2, rate_mbit: 16, direction: one}'))
    folder = tmp_path / "run"
    r = up(str(ex), "vmlossy", ["total=2000000"], folder, "--backend", "ssh", "--inventory", str(record.path("inventory.yml")))
    assert r.returncode in (0, 1), r.stdout + r.stderr  # the state checks are not the point here
    manifest = json.loads((folder / "manifest.json").read_text())
    applied = manifest["impairments"][0]
    assert applied["method"] == "netem" and applied["where"] == ["source eth1 egress to 192.168.56.12"], applied
    flow = max(tf.analyze_file(folder / "source.pcap"), key=len)
    # The capture is the sender's own, where nothing is overtaken: a segment Wireshark's timing calls
    # out of order there is one resent within an RTT of new data (SACK recovery), so it counts too.
    retransmitted = len(flow.where(tf.RETRANSMISSION, tf.CLIENT)) + len(flow.where(tf.OUT_OF_ORDER, tf.CLIENT))
    assert retransmitted >= 3, f"{retransmitted} retransmissions: the loss did not happen"
    data = flow.where(tf.DATA, tf.CLIENT)
    seconds = float(flow.ts[data[-1]] - flow.ts[data[0]])
    assert seconds >= 2000000 * 8 / 16e6 * 0.9, f"2 MB in {seconds:.2f} s: faster than 16 Mbit/s"
    assert_vm_clean(record, "vmlossy")


# The timer exercises over SSH on bookworm's 6.1, each judged by the same model as on this machine's
# kernel (where 6.1 differs, as in syn-retries' linear timeouts, the model says so per version).
TIMER_EXERCISES = [
    ("retransmission-timeout", ["user_timeout=1000", "pause=0.5"]),
    ("syn-retries", []),
    ("nagle-delayed-ack", []),
    ("time-wait", ["linger0=1"]),
    ("half-open", ["keepidle=2"]),
]


@pytest.mark.parametrize("exercise, sets", TIMER_EXERCISES, ids=[e for e, _ in TIMER_EXERCISES])
def test_the_timer_exercises_pass_on_the_vms(vm_set, tmp_path, exercise, sets):
    record, _ = vm_set
    folder = tmp_path / "run"
    r = up(exercise, "vmtimer", sets, folder, "--backend", "ssh", "--inventory", str(record.path("inventory.yml")))
    assert r.returncode == 0, r.stdout + r.stderr
    v = verdicts(folder)
    assert v and all(v.values()), v
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kernel"]["release"] == record.kernel_release
    assert_vm_clean(record, "vmtimer")


def test_kernels_host_and_bookworm_side_by_side(vm_set, kernels_run):
    record, _ = vm_set
    folder, out, rc = kernels_run
    assert rc == 0, out
    assert f"using VM set {SET}" in out and "removing VM set" not in out
    sweep = json.loads((folder / "sweep.json").read_text())
    assert sweep["parameter"] == "kernel" and [x["folder"] for x in sweep["runs"]] == ["kernel-host", "kernel-bookworm"]
    comparison = json.loads((folder / "comparison.json").read_text())
    assert comparison["passed"] and [x["kernel"] for x in comparison["runs"]] == [os.uname().release, record.kernel_release]
    assert (folder / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for run in comparison["runs"]:
        probes = run["figures"]["keepalive probes"]
        assert probes["probes (count)"] == probes["model: probes (count)"] == 3.0, run
        assert probes["model: probe 1"] == 4000.0 and 4000.0 - 5 <= probes["probe 1"] <= 4000.0 + 300, run
    assert f"kernels: host {os.uname().release}, bookworm {record.kernel_release}" in " ".join(out.split()) and "2/2 runs passed" in out
    assert "Linux's keepalive code is the same in these kernels" in " ".join(out.split())
    assert record.vms["source"].pid in qemu_pids(SET)  # the set it did not boot stays up


def test_bad_vm_input_is_one_line():
    for args, says in ((["vms", "up", "--count", "5"], "--count 5: 2 (source and dest) or 3"),
                       (["vms", "up", "--kernel", "sid"], "--kernel 'sid': VM kernels are bookworm, trixie"),
                       (["vms", "up", "--name", "Bad-Name"], "--name 'Bad-Name': use 1-12 lower-case letters"),
                       (["vms", "reboot"], "`invoke vms reboot`: say up, down or status"),
                       (["vms", "down", "--name", "x", "--all"], "--name and --all: give one"),
                       (["up", "exercise2", "--kernels", "host,sid"], "'sid' is not a kernel here"),
                       (["up", "exercise2", "--kernels", "host,bookworm", "--backend", "docker"], "--kernels chooses the machines itself")):
        r = invoke(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert says in r.stdout + r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_sigkill_of_vms_up_then_down_leaves_nothing(vm_set):
    name = "cikill"
    proc = start("vms", "up", "--name", name, "--kernel", "bookworm")
    sigkill_when(proc, lambda: len(qemu_pids(name)) == 2, "both VMs' QEMU started", timeout=120)
    time.sleep(0.5)
    assert len(qemu_pids(name)) == 2 and Path(f"/run/netns/{vmset.namespace(name)}").exists()
    r = invoke("vms", "down", "--name", name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"VM set {name}: removed VM source" in " ".join(r.stdout.split())
    assert_set_gone(name)
    again = invoke("vms", "down", "--name", name)
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_a_build_folder_with_mounts_left_in_it_is_removed(tmp_path):
    """As debootstrap killed midway leaves its target: /proc and a tmpfs mounted inside."""
    from lab.backends.debian import remove_tree
    work = tmp_path / "bookworm-x.partial"
    (work / "root" / "proc").mkdir(parents=True)
    (work / "root" / "dev" / "pts").mkdir(parents=True)
    subprocess.run(["mount", "-t", "proc", "proc", str(work / "root" / "proc")], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(work / "root" / "dev")], check=True)
    (work / "root" / "dev" / "pts").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(work / "root" / "dev" / "pts")], check=True)
    remove_tree(work)
    assert not work.exists()
    assert str(work) not in Path("/proc/self/mounts").read_text()
