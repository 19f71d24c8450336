"""On a lab host in hands-on mode: what the student has done there, and undoing it.

    handson.py facts MARK WORKDIR EVENTS   print (JSON) the host's listening TCP ports, its TCP connections,
                                           the processes the student started (their environment holds
                                           TCPLAB_MARK=MARK, which `invoke shell` and `invoke exec` set), its
                                           drop rules, and the captures in WORKDIR and event logs in EVENTS
    handson.py baseline FILE               write what the host had before the student came (iptables rules,
                                           nftables tables, TCP sysctls) to FILE
    handson.py undo FILE MARK              stop the student's processes; remove the rules, tables and sysctl
                                           changes made since FILE was written; print what was undone (JSON)

It runs in the host's own network namespace (netns: `ip netns exec`, Docker: `docker exec`, SSH: on
the machine), so /proc/net and iptables are the host's. Standard library only, Python 3.7 or later.
"""
from __future__ import annotations

import glob
import json
import os
import shlex
import signal
import subprocess
import sys
import time

LISTEN, ESTABLISHED = "0A", "01"
CAPTURES = ("*.pcap", "*.pcapng", "*.cap")
# The sysctls a student may change while doing an exercise (the keepalive and buffer ones, say).
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")
SYSCTL_GLOBS = ("/proc/sys/net/ipv4/tcp_*", "/proc/sys/net/core/rmem_*", "/proc/sys/net/core/wmem_*")


def sockets() -> tuple:
    """(listening ports, connections as [local address, port, remote address, port, state]) from /proc/net/tcp."""
    listening, connections = set(), []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 4:
                continue
            local, remote, state = _address(f[1]), _address(f[2]), f[3]
            if state == LISTEN:
                listening.add(local[1])
            else:
                connections.append([local[0], local[1], remote[0], remote[1], state])
    return sorted(listening), connections


def _address(text: str) -> tuple:
    hexaddr, hexport = text.split(":")
    if len(hexaddr) == 8:  # IPv4, little-endian in /proc
        addr = ".".join(str(int(hexaddr[i:i + 2], 16)) for i in (6, 4, 2, 0))
    else:
        addr = "v6:" + hexaddr
    return addr, int(hexport, 16)


def marked(mark: str) -> list:
    """The processes whose environment carries TCPLAB_MARK=mark: those the student started on this host."""
    needle = ("TCPLAB_MARK=%s" % mark).encode()
    out = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        if pid == os.getpid():
            continue
        try:
            env = open("/proc/%d/environ" % pid, "rb").read().split(b"\0")
            if needle not in env:
                continue
            argv = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")
            stat = open("/proc/%d/stat" % pid).read()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] == "Z":
            continue
        start = int(stat[stat.rindex(")") + 2:].split()[19])
        out.append({"pid": pid, "start": start, "argv": [a.decode(errors="replace") for a in argv if a]})
    return out


def iptables_rules() -> list:
    r = subprocess.run(["iptables", "-w", "-S"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
    return r.stdout.splitlines() if r.returncode == 0 else []


def nft_tables() -> list:
    r = subprocess.run(["nft", "list", "tables"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
    return [line.split(None, 1)[1] for line in r.stdout.splitlines() if line.startswith("table ")] if r.returncode == 0 else []


def sysctls() -> dict:
    out = {}
    for pattern in SYSCTL_GLOBS:
        for path in sorted(glob.glob(pattern)):
            try:
                out[path] = open(path).read().strip()
            except OSError:
                pass
    return out


def files(folder: str, patterns: tuple) -> list:
    out = []
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(folder, pattern))):
            try:
                st = os.stat(path)
            except OSError:
                continue
            out.append({"name": os.path.basename(path), "size": st.st_size, "mtime": st.st_mtime})
    return out


def facts(mark: str, workdir: str, events: str) -> dict:
    listening, connections = sockets()
    return {"listening": listening, "connections": connections, "processes": marked(mark), "iptables": iptables_rules(),
            "nft": nft_tables(), "captures": files(workdir, CAPTURES), "events": files(events, ("*.log",)), "time": time.time()}


def baseline(path: str) -> None:
    data = {"iptables": iptables_rules(), "nft": nft_tables(), "sysctls": sysctls()}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def undo(path: str, mark: str) -> list:
    try:
        with open(path) as f:
            base = json.load(f)
    except (OSError, ValueError):
        base = None
    done = []
    procs = marked(mark)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            if _same(p):
                try:
                    os.kill(p["pid"], sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 2
        while any(_same(p) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.02)
    done += ["process %s (%d)" % (os.path.basename(p["argv"][0]) if p["argv"] else "?", p["pid"]) for p in procs]
    if base is None:
        return done  # no record of the host before the student: nothing else can be told apart
    added = list(iptables_rules())
    for rule in base["iptables"]:
        if rule in added:
            added.remove(rule)
    for rule in reversed([r for r in added if r.startswith("-A ")]):
        if subprocess.run(["iptables", "-w", "-D"] + shlex.split(rule)[1:], stderr=subprocess.DEVNULL).returncode == 0:
            done.append("iptables rule %s" % rule)
    for rule in [r for r in added if r.startswith("-N ")]:
        chain = rule.split()[1]
        subprocess.run(["iptables", "-w", "-F", chain], stderr=subprocess.DEVNULL)
        if subprocess.run(["iptables", "-w", "-X", chain], stderr=subprocess.DEVNULL).returncode == 0:
            done.append("iptables chain %s" % chain)
    for table in nft_tables():
        # iptables-nft's own tables (ip filter...) are iptables': its rules went above, the table is its business.
        if table not in base["nft"] and table.split()[-1] not in IPTABLES_TABLES:
            if subprocess.run(["nft", "delete", "table"] + table.split(), stderr=subprocess.DEVNULL).returncode == 0:
                done.append("nftables table %s" % table)
    for sysctl, value in base["sysctls"].items():
        try:
            now = open(sysctl).read().strip()
        except OSError:
            continue
        if now != value:
            try:
                with open(sysctl, "w") as f:
                    f.write(value)
                done.append("sysctl %s (back to %s)" % (sysctl[len("/proc/sys/"):].replace("/", "."), value))
            except OSError:
                pass
    return done


def _same(p: dict) -> bool:
    try:
        stat = open("/proc/%d/stat" % p["pid"]).read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z" and int(stat[stat.rindex(")") + 2:].split()[19]) == p["start"]


def main(args: list) -> None:
    if args[:1] == ["facts"] and len(args) == 4:
        print(json.dumps(facts(args[1], args[2], args[3])))
    elif args[:1] == ["baseline"] and len(args) == 2:
        baseline(args[1])
    elif args[:1] == ["undo"] and len(args) == 3:
        print(json.dumps(undo(args[1], args[2])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
