"""On a lab host in hands-on mode: what the student has done there, and undoing it.

    handson.py facts MARK WORKDIR EVENTS   print (JSON) the host's listening TCP ports, its TCP connections,
                                           the processes the student started (their environment holds
                                           TCPLAB_MARK=MARK, which `invoke shell` and `invoke exec` set), its
                                           drop rules, and the captures in WORKDIR and event logs in EVENTS
    handson.py watch MARK WORKDIR EVENTS OUT SECONDS
                                           the same facts written to OUT (by rename) every SECONDS, until OUT's
                                           folder is gone: one process for the whole session instead of one a look
    handson.py baseline FILE               write what the host had before the student came (iptables rules,
                                           nftables tables, TCP sysctls) to FILE
    handson.py undo FILE MARK DIR...       stop the student's processes; remove the rules, tables and sysctl
                                           changes made since FILE was written; make the files in each DIR
                                           readable (a capture dumpcap wrote 0600); print what was undone (JSON)

It runs in the host's own network namespace (netns: `ip netns exec`, Docker: `docker exec`, SSH: on
the machine), so /proc/net and iptables are the host's. Standard library only, Python 3.7 or later.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shlex
import signal
import stat as stat_module
import subprocess
import sys
import time

try:
    from . import procs
except ImportError:  # uploaded beside the SSH agent, outside the package: procs.py is uploaded with it
    import procs  # type: ignore[no-redef]

LISTEN, ESTABLISHED = "0A", "01"
CAPTURES = ("*.pcap", "*.pcapng", "*.cap")
# The sysctls a student may change while doing an exercise (the keepalive and buffer ones, say).
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")
FIREWALLS, TABLES = ("iptables", "ip6tables"), ("filter", "nat", "mangle", "raw")
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
    """The processes whose environment carries TCPLAB_MARK=mark: those the student started on this host.
    A process whose environment root may not read (in a container without CAP_SYS_PTRACE, one that
    changed its user, as tcpdump does to its own) is the student's when its parent is."""
    needle = ("TCPLAB_MARK=%s" % mark).encode()
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    ours, hidden = set(), set()
    for pid in pids:
        try:
            if needle in open("/proc/%d/environ" % pid, "rb").read().split(b"\0"):
                ours.add(pid)
        except PermissionError:
            hidden.add(pid)
        except OSError:
            pass
    grew = True
    while grew:  # a hidden process's own children are hidden too: until nothing more is found
        found = {pid for pid in hidden if _parent(pid) in ours}
        hidden -= found
        ours |= found
        grew = bool(found)
    out = []
    for pid in sorted(ours - {os.getpid()}):
        try:
            argv = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")
        except OSError:
            continue
        start = procs.start_time(pid)
        if start is None or not procs.same_process(pid, start):
            continue  # gone, or a zombie
        out.append({"pid": pid, "start": start, "argv": [a.decode(errors="replace") for a in argv if a]})
    return out


def _parent(pid: int) -> int:
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def iptables_rules(command: str = "iptables", table: str = "filter") -> list:
    r = subprocess.run([command, "-w", "-t", table, "-S"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
    return r.stdout.splitlines() if r.returncode == 0 else []


def firewall() -> dict:
    """Every rule of every table the person may have touched, IPv4 and IPv6: "iptables filter" -> its `-S` lines."""
    return {"%s %s" % (command, table): iptables_rules(command, table) for command in FIREWALLS for table in TABLES}


def lab_own(rule: str) -> bool:
    """A rule of a tcplab lab's own chain (TL_<lab>), this one's or another's on the same machine: never the person's."""
    return bool(re.search(r"(^-[ANP] |-j )TL_", rule))


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
    data = {"iptables": iptables_rules(), "firewall": firewall(), "nft": nft_tables(), "sysctls": sysctls()}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def undo(path: str, mark: str, folders: list) -> list:
    try:
        with open(path) as f:
            base = json.load(f)
    except (OSError, ValueError):
        base = None
    done = []
    theirs = marked(mark)
    _stop(theirs)
    done += ["process %s (%d)" % (os.path.basename(p["argv"][0]) if p["argv"] else "?", p["pid"]) for p in theirs]
    readable(folders)
    if base is None:
        return done  # no record of the host before the student: nothing else can be told apart
    before = base.get("firewall") or {"iptables filter": base.get("iptables", [])}
    for key, rules in firewall().items():
        command, table = key.split()
        was = before.get(key, [])
        new = [r for r in added(rules, was) if not lab_own(r)]
        gone = [r for r in added(was, rules) if not lab_own(r)]
        for rule in reversed([r for r in new if r.startswith("-A ")]):
            if subprocess.run([command, "-w", "-t", table, "-D"] + shlex.split(rule)[1:], stderr=subprocess.DEVNULL).returncode == 0:
                done.append("%s rule %s" % (_name(command, table), rule))
        for rule in [r for r in new if r.startswith("-N ")]:
            chain = rule.split()[1]
            subprocess.run([command, "-w", "-t", table, "-F", chain], stderr=subprocess.DEVNULL)
            if subprocess.run([command, "-w", "-t", table, "-X", chain], stderr=subprocess.DEVNULL).returncode == 0:
                done.append("%s chain %s" % (_name(command, table), chain))
        # Policies changed, and rules the person deleted (put back at the end of their chain).
        for rule in [r for r in gone if r.startswith("-P ") or r.startswith("-A ")]:
            argv = shlex.split(rule)
            if subprocess.run([command, "-w", "-t", table] + argv, stderr=subprocess.DEVNULL).returncode == 0:
                done.append("%s %s %s again" % (_name(command, table), "policy" if rule.startswith("-P ") else "rule", " ".join(argv[1:])))
    for table in nft_tables():
        # iptables-nft's own tables (ip filter...) are iptables': its rules went above, the table is its business;
        # tcplab's own (tcplab_<lab>) belong to labs.
        name = table.split()[-1]
        if table not in base["nft"] and name not in IPTABLES_TABLES and not name.startswith("tcplab_"):
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


SHELLS = ("bash", "sh", "dash", "zsh", "ksh", "ash", "fish")
STOP_WAIT = 2.0  # s each signal gets before the next


def _stop(theirs: list) -> None:
    """SIGTERM, then SIGHUP, then SIGKILL. An interactive shell ignores SIGTERM (bash does) and ends on
    SIGHUP, as when its terminal closes; it gets that once its programs have ended on SIGTERM, the
    signal they are stopped with everywhere else (a program run under nohup ignores SIGHUP). A job
    stopped with Ctrl-Z gets SIGCONT too, or it could not act on its SIGTERM."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGKILL):
        for p in theirs:
            if _same(p):
                try:
                    os.kill(p["pid"], sig)
                    if sig == signal.SIGTERM:
                        os.kill(p["pid"], signal.SIGCONT)
                except ProcessLookupError:
                    pass
        waiting = [p for p in theirs if sig != signal.SIGTERM or not _shell(p)]
        deadline = time.monotonic() + STOP_WAIT
        while any(_same(p) for p in waiting) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not any(_same(p) for p in theirs):
            return


def _shell(p: dict) -> bool:
    return bool(p["argv"]) and os.path.basename(p["argv"][0]).lstrip("-") in SHELLS


def _name(command: str, table: str) -> str:
    return command if table == "filter" else "%s %s" % (command, table)


def _same(p: dict) -> bool:
    return procs.same_process(p["pid"], p["start"])


def drops(rule: str, port: int) -> bool:
    """Whether an `iptables -S` rule drops (or rejects) the port's packets: one naming it, or one that names no port at all."""
    if not re.search(r"-j (DROP|REJECT)\b", rule) or not rule.startswith("-A "):
        return False
    ports = re.findall(r"--(?:d|s)ports? (\S+)", rule)
    if not ports:
        return True
    for spec in ports:
        for part in spec.split(","):
            low, _, high = part.partition(":")
            if low.isdigit() and int(low) <= port <= int(high or low):
                return True
    return False


def added(now: list, before: list) -> list:
    """The rules in `now` that `before` did not have (each counted once)."""
    left = list(before)
    out = []
    for rule in now:
        if rule in left:
            left.remove(rule)
        else:
            out.append(rule)
    return out


def readable(folders: list) -> None:
    """Every file in the folders readable by all: the SSH user fetches what root wrote there."""
    for folder in folders:
        for path in glob.glob(os.path.join(folder, "*")):
            try:
                st = os.lstat(path)
                if stat_module.S_ISREG(st.st_mode):  # files only: never a folder or a link's target
                    os.chmod(path, st.st_mode | 0o044)
            except OSError:
                pass


def watch(mark: str, workdir: str, events: str, out: str, seconds: float) -> None:
    tmp = out + ".tmp"
    while os.path.isdir(os.path.dirname(out) or "."):
        data = json.dumps(facts(mark, workdir, events))
        try:
            with open(tmp, "w") as f:
                f.write(data)
            os.replace(tmp, out)
        except OSError:
            return  # the lab's folder went with its teardown
        time.sleep(seconds)


def main(args: list) -> None:
    if args[:1] == ["facts"] and len(args) == 4:
        print(json.dumps(facts(args[1], args[2], args[3])))
    elif args[:1] == ["watch"] and len(args) == 6:
        watch(args[1], args[2], args[3], args[4], float(args[5]))
    elif args[:1] == ["baseline"] and len(args) == 2:
        baseline(args[1])
    elif args[:1] == ["now"] and len(args) == 1:
        print(json.dumps(time.time()))  # this machine's clock, which its captures are on
    elif args[:1] == ["undo"] and len(args) >= 3:
        print(json.dumps({"undone": undo(args[1], args[2], args[3:])}))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
