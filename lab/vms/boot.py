"""Bringing a VM set up: its image, keys and seeds, its namespace with the data bridges, one QEMU
per VM, then waiting until each VM's sshd takes the set's key.

    2 VMs:  source eth1 --- bridge "data" --- eth1 dest            (in namespace tcplabvm-<name>)
    3 VMs:  source eth1 --- "left" --- eth1 observer eth2 --- "right" --- eth1 dest
            (the observer joins its eth1 and eth2 in its own bridge br0, as the seed's middle box)

Each VM's eth0 is QEMU's user-mode network with `restrict=on`: the VM can send nothing beyond QEMU,
and QEMU forwards one port on this machine's 127.0.0.1 to the VM's sshd. That is the only way in,
and no packet of the set ever reaches this machine's interfaces or its default route.
"""
from __future__ import annotations

import base64
import logging
import os
import shlex
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import paramiko

from .. import ui
from ..errors import LabError
from ..onhost import procs
from . import accel as accel_mod, image as image_mod, seed, tap, teardown, vmset
from .recipe import recipe as recipe_for
from .vmset import DATA_ADDRESSES, ROLES_BY_COUNT, SetRecord, VmRecord

# paramiko's log for the readiness probes: a VM still booting is expected, not worth a traceback.
QUIET_LOG = "tcplab.vms.probe"
logging.getLogger(QUIET_LOG).setLevel(logging.CRITICAL + 1)
logging.getLogger(QUIET_LOG).propagate = False
MEMORY_MB = 512
BOOT_TIMEOUT = 240.0  # seconds to sshd: about 30 s under TCG on an idle machine, more on a busy one
CMDLINE = "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=-1 loglevel=6"
# What the console shows on the way, in order, for the progress line.
STAGES = (("Linux version", "kernel"), ("Welcome to", "systemd"), ("tcplab-seed:", "configured"), ("Started ssh", "sshd starting"))


def _links(count: int) -> dict[str, list[str]]:
    """role -> the namespace bridges its data NICs join, in NIC order."""
    if count == 2:
        return {"source": ["data"], "dest": ["data"]}
    return {"source": ["left"], "dest": ["right"], "observer": ["left", "right"]}


def _ip(*argv: str) -> None:
    r = subprocess.run(["ip", *argv], capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"`ip {' '.join(argv)}` failed: {r.stderr.strip()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require_tools() -> None:
    missing = [(t, p) for t, p in (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils"), ("ip", "iproute2"))
               if shutil.which(t) is None]
    if missing:
        raise LabError(f"missing {', '.join(t for t, _ in missing)}: `sudo apt-get install -y {' '.join(p for _, p in missing)}` or run ./bootstrap")


def up(name: str, count: int, kernel: str, accel_wanted: str = "auto", memory_mb: int = MEMORY_MB) -> SetRecord:
    """Boots the set; on any failure or interruption, removes what it made and raises."""
    vmset.check_name(name)
    if count not in ROLES_BY_COUNT:
        raise LabError(f"--count {count}: 2 (source and dest) or 3 (with an observer between them)")
    recipe = recipe_for(kernel)
    accel = accel_mod.choose(accel_wanted)
    _require_tools()
    with vmset.records_locked():  # the name claimed at once: a second `vms up --name` meets this one's record
        old = vmset.load(name)
        if old is not None:
            if old.state == "up" and teardown.alive(old):
                raise LabError(f"VM set {name} is up already ({old.count} {old.kernel} VMs): use it (inventory {old.path('inventory.yml')}), "
                               f"or `invoke vms down --name {name}` first")
            if teardown.being_booted(old):
                raise LabError(f"VM set {name} is being booted by `vms up` (PID {old.owner_pid}): wait for it, or choose another --name")
            ui.step(f"removing what an earlier `vms up --name {name}` left")
            teardown.down(old)
        record = SetRecord(name=name, kernel=kernel, count=count, accel=accel.name, accel_why=accel.why, created=time.time(),
                           owner_pid=os.getpid(), owner_started=procs.start_time(os.getpid()))
        record.folder.mkdir(parents=True, mode=0o700)
        record.save()
    try:
        img = image_mod.ensure(recipe)
        record.kernel_release, record.image = img.kernel_release, str(img.folder)
        record.save()
        _boot(record, img, accel, memory_mb, time.monotonic())
    except BaseException:
        ui.step(f"removing VM set {name}")
        teardown.down(record, quiet=True)
        raise
    return record


def _boot(record: SetRecord, img: image_mod.Image, accel: accel_mod.Accel, memory_mb: int, began: float) -> None:
    name = record.name
    links = _links(record.count)
    for i, role in enumerate(record.roles):
        interface = "br0" if role == "observer" else "eth1"
        macs = [f"52:54:00:7c:{i:02x}:{n:02x}" for n in range(1 + len(links[role]))]
        record.vms[role] = VmRecord(role=role, port=0, address=DATA_ADDRESSES.get(role), interface=interface, macs=macs)
    record.save()  # before the namespace and the first QEMU: `down` finds them from here on
    ui.step(f"VM set {name}: {record.count} VMs, Debian {record.kernel} (kernel {record.kernel_release}), "
            f"{accel.name.upper()}: {accel.why}")
    user_public = seed.keypair(record.path("id_ed25519"), f"tcplab VM set {name}")
    host_keys = {}
    for role in record.roles:
        host_keys[role] = seed.make(record.vms[role], f"{name}-{role}", user_public, record.path(f"{role}-seed.img"))
    _ip("netns", "add", record.namespace)
    for bridge in sorted({b for bs in links.values() for b in bs}):
        _ip("-n", record.namespace, "link", "add", bridge, "type", "bridge", "forward_delay", "0")
        _ip("-n", record.namespace, "link", "set", bridge, "up")
    for role in record.roles:
        _start_vm(record, role, links[role], img, accel, memory_mb)
    record.save()
    _wait_all(record, host_keys, began)
    record.write_access(host_keys)
    _warm_up(record)
    record.state, record.boot_seconds = "up", round(time.monotonic() - began, 1)
    record.save()


def _start_vm(record: SetRecord, role: str, bridges: list[str], img: image_mod.Image, accel: accel_mod.Accel, memory_mb: int) -> None:
    vm = record.vms[role]
    overlay = record.path(f"{role}.qcow2")
    r = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(img.disk), str(overlay)], capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"qemu-img create {overlay} failed: {r.stderr.strip()}")
    fds = []
    try:
        for n, bridge in enumerate(bridges):
            tap_name = f"{role[:3]}{n}"
            fds.append(tap.open_tap(record.namespace, tap_name))
            _ip("-n", record.namespace, "link", "set", tap_name, "master", bridge, "up")
        for attempt in range(3):
            vm.port = _free_port()
            argv = _qemu_argv(record, role, img, accel, memory_mb, fds)
            log = open(record.path(f"{role}.qemu.log"), "w")
            # Its own session: a Ctrl-C at the terminal reaches `vms up`, which then stops QEMU itself.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, pass_fds=fds, start_new_session=True)
            log.close()
            vm.pid = proc.pid
            record.save()
            time.sleep(0.3)
            if proc.poll() is None:
                return
            err = record.path(f"{role}.qemu.log").read_text().strip().splitlines()
            if not any("hostfwd" in line or "host forwarding" in line for line in err):
                raise LabError(f"QEMU for {role} exited at once: {err[-1] if err else f'exit status {proc.returncode}'}")
        raise LabError(f"QEMU for {role}: no free port on 127.0.0.1 for its SSH forward")
    finally:
        for fd in fds:
            os.close(fd)  # QEMU holds its own copies: the taps go when it exits


def _qemu_argv(record: SetRecord, role: str, img: image_mod.Image, accel: accel_mod.Accel, memory_mb: int, fds: list[int]) -> list[str]:
    vm = record.vms[role]
    qname = vmset.qemu_name(record.name, role)
    argv = [
        "qemu-system-x86_64", "-name", f"{qname},process={qname}",
        "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-no-reboot",
        *accel.qemu_args(), "-m", str(memory_mb), "-smp", "1",
        "-serial", f"file:{record.path(f'{role}.console.log')}", "-pidfile", str(record.path(f"{role}.pid")),
        "-kernel", str(img.vmlinuz), "-initrd", str(img.initrd), "-append", CMDLINE,
        # The VMs are thrown away after use: no flush to the disk on every write.
        "-drive", f"file={record.path(f'{role}.qcow2')},if=virtio,format=qcow2,cache=unsafe",
        "-drive", f"file={record.path(f'{role}-seed.img')},if=virtio,format=raw,readonly=on",
        "-netdev", f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{vm.port}-:22",
        # romfile= : no network boot ROM (the kernel is given), so no iPXE package is needed either.
        "-device", f"virtio-net-pci,netdev=mgmt,mac={vm.macs[0]},romfile=",
        "-device", "virtio-rng-pci",
    ]
    for n, fd in enumerate(fds):
        argv += ["-netdev", f"tap,id=data{n},fd={fd}", "-device", f"virtio-net-pci,netdev=data{n},mac={vm.macs[1 + n]},romfile="]
    return argv


def _wait_all(record: SetRecord, host_keys: dict[str, str], began: float) -> None:
    with ui.activity(f"booting {', '.join(record.roles)}") as update:
        stages = {role: "firmware" for role in record.roles}

        def show(role: str, stage: str) -> None:
            stages[role] = stage
            update("  ".join(f"{r}: {s}" for r, s in stages.items()), milestone=stage.startswith("ready"))

        stopping = threading.Event()
        with ThreadPoolExecutor(max_workers=len(record.roles)) as pool:
            futures = [pool.submit(_wait_one, record, role, host_keys[role], began, show, stopping) for role in record.roles]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                stopping.set()  # the other waits end too, and the set is removed at once
                raise


def _wait_one(record: SetRecord, role: str, host_key: str, began: float, show: Callable[[str, str], None],
              stopping: threading.Event) -> None:
    vm = record.vms[role]
    console = record.path(f"{role}.console.log")
    key_type, key_data = host_key.split()[:2]
    expected = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_data))
    user_key = paramiko.Ed25519Key.from_private_key_file(str(record.path("id_ed25519")))
    deadline = time.monotonic() + BOOT_TIMEOUT
    stage = -1
    while not stopping.is_set():
        text = console.read_text(errors="replace") if console.exists() else ""
        for i, (marker, label) in enumerate(STAGES):
            if i > stage and marker in text:
                stage = i
                show(role, label)
        if not teardown.pid_alive(vm.pid, vmset.qemu_name(record.name, role)):
            tail = (record.path(f"{role}.qemu.log").read_text().strip().splitlines() or text.strip().splitlines() or ["no output"])[-1]
            raise LabError(f"VM {role} stopped while booting: {tail} (console: {console})")
        if stage >= 2 and _ssh_ready(vm.port, expected, user_key):
            show(role, f"ready ({time.monotonic() - began:.1f} s)")
            return
        if time.monotonic() > deadline:
            last = text.strip().splitlines()[-1:] or ["nothing on the console"]
            raise LabError(f"VM {role} did not answer on SSH within {BOOT_TIMEOUT:.0f} s; its console's last line: {last[0][:120]} "
                           f"(all of it in {console})")
        stopping.wait(0.5)


# A connection across the data plane, a megabyte each way, then closed: a freshly booted VM under
# emulation runs every code path cold (QEMU translates guest code on its first run), and the first
# exercise would otherwise meet milliseconds of that in its handshake.
WARM_SERVER = ("import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
               "s.bind(('0.0.0.0', 5999)); s.listen(1); s.settimeout(60); c, _ = s.accept(); n = 0\n"
               "while n < 1 << 20:\n  d = c.recv(65536)\n  n += len(d)\n  if not d: break\n"
               "c.sendall(b'x' * (1 << 20)); c.close()")
WARM_CLIENT = ("import socket, sys, time\nfor _ in range(100):\n  try:\n    c = socket.create_connection((sys.argv[1], 5999), 5); break\n"
               "  except OSError: time.sleep(0.1)\nc.sendall(b'x' * (1 << 20)); n = 0\n"
               "while n < 1 << 20:\n  d = c.recv(65536)\n  n += len(d)\n  if not d: break\nc.close()")


def _warm_up(record: SetRecord) -> None:
    began = time.monotonic()
    with ui.waiting("warming the VMs up: a connection across the data plane"):
        clients = {}
        try:
            for role in ("dest", "source"):
                client = paramiko.SSHClient()
                client.load_host_keys(str(record.path("known_hosts")))
                client.connect("127.0.0.1", port=record.vms[role].port, username="root", key_filename=str(record.path("id_ed25519")),
                               look_for_keys=False, allow_agent=False, timeout=10)
                clients[role] = client
            _, server_out, _ = clients["dest"].exec_command(f"python3 -c {shlex.quote(WARM_SERVER)}", timeout=90)
            _, client_out, client_err = clients["source"].exec_command(f"python3 -c {shlex.quote(WARM_CLIENT)} {DATA_ADDRESSES['dest']}", timeout=90)
            if client_out.channel.recv_exit_status() != 0 or server_out.channel.recv_exit_status() != 0:
                ui.warn(f"warming the VMs up failed ({client_err.read().decode(errors='replace').strip()[-160:] or 'no output'}): "
                        "the first exercise may see a slower handshake")
        except (paramiko.SSHException, OSError) as e:
            ui.warn(f"warming the VMs up failed ({e}): the first exercise may see a slower handshake")
        finally:
            for client in clients.values():
                client.close()
    ui.step(f"  warm in {time.monotonic() - began:.1f} s")


def _ssh_ready(port: int, expected: paramiko.PKey, user_key: paramiko.PKey) -> bool:
    """True once the VM's sshd shows the host key its seed gave it and takes the set's key."""
    # QEMU accepts on the forwarded port before the VM's sshd listens, then drops the connection: a
    # banner read first keeps paramiko (which logs each such failure with a traceback) out until then.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
            if not probe.recv(64).startswith(b"SSH-"):
                return False
    except OSError:
        return False
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return False
    transport = paramiko.Transport(sock)
    transport.set_log_channel(QUIET_LOG)
    try:
        transport.start_client(timeout=5)
        if transport.get_remote_server_key() != expected:
            raise LabError(f"the VM on port {port} offered a host key other than the one its seed gave it")
        transport.auth_publickey("root", user_key)
        return transport.is_authenticated()
    except (paramiko.SSHException, OSError, EOFError):
        return False
    finally:
        transport.close()
