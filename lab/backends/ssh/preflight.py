"""Before anything is made on the SSH machines: each is reachable, its host key accepted, root (or
passwordless sudo) there, its tools present, python3 recent enough, and its data-plane interface
found. Each problem is one line with its fix; the backend checks every machine at once."""
from __future__ import annotations

from typing import Optional

from ...errors import LabError
from .session import Session

# What every machine needs (command -> Debian package); steps add theirs (nft for on-path drops).
TOOLS = {"python3": "python3", "tcpdump": "tcpdump", "iptables": "iptables", "ip": "iproute2"}


def check(s: Session, tools: dict[str, str]) -> tuple[Optional[str], Optional[str]]:
    """(the problem, or None; the machine's data-plane interface, once it is known)."""
    m = s.machine
    try:
        s.connect()
    except LabError as e:
        return str(e), None
    try:
        uid = s.shell("id -u", timeout=10).stdout.strip()
        if m.sudo:
            r = s.shell("sudo -n true", timeout=10)
            if r.returncode != 0:
                err = r.stderr.strip()
                if "password" in err:
                    return (f"{m}: sudo needs a password: let {m.user} run sudo without one (a sudoers line "
                            f"`{m.user} ALL=(ALL) NOPASSWD: ALL`), or log in as root with `sudo: false`"), None
                if r.returncode == 127 or "not found" in err:
                    return f"{m}: sudo is not installed: install it (`apt-get install -y sudo`), or log in as root with `sudo: false`", None
                return f"{m}: `sudo -n true` failed: {err or f'exit status {r.returncode}'}", None
        elif uid != "0":
            return f"{m}: {m.user} is not root and `sudo` is off: tcpdump and iptables need root; set `sudo: true` in the inventory", None
        tools = {**TOOLS, **tools}
        probe = "for t; do command -v \"$t\" >/dev/null 2>&1 || echo \"$t\"; done"
        missing = s.run(["sh", "-c", probe, "sh", *tools], timeout=15).stdout.split()
        if missing:
            pkgs = " ".join(sorted({tools[t] for t in missing if t in tools}))
            return (f"{m}: missing {', '.join(missing)}: install with `sudo apt-get install -y {pkgs}` "
                    f"(Debian/Ubuntu; `sudo dnf install -y {pkgs.replace('iproute2', 'iproute')}` on Fedora/RHEL)"), None
        if s.shell("python3 -c 'import sys; sys.exit(sys.version_info < (3, 7))'", timeout=15).returncode != 0:
            return f"{m}: python3 is older than 3.7, which the lab's programs need: install a newer python3", None
        problem, interface = data_interface(s)
        if problem:
            return problem, None
        s.lab_dir  # noqa: B018  (resolves the home folder now, while the machine is known to answer)
    except LabError as e:
        return str(e), None
    return None, interface


def data_interface(s: Session) -> tuple[Optional[str], Optional[str]]:
    """The interface the exercise's traffic uses: the inventory's, or the one holding its address."""
    m = s.machine
    out = s.run(["ip", "-o", "-4", "addr", "show"], timeout=10).stdout
    # "2: eth1    inet 10.0.2.1/24 brd 10.0.2.255 scope global eth1\..."
    found = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 4 and words[2] == "inet":
            found[words[3].split("/")[0]] = words[1].split("@")[0]
    links = s.run(["ip", "-o", "link", "show"], timeout=10).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if line.count(":") >= 2}
    if m.interface:
        if m.interface not in names:
            return f"{m}: no interface {m.interface} (it has {', '.join(sorted(names))}): fix `interface` in the inventory", None
        return None, m.interface
    if m.address:
        if m.address not in found:
            return (f"{m}: {m.address} is on none of its interfaces (it has {', '.join(sorted(found)) or 'none'}): "
                    f"set `address` to one of them, or name the data-plane `interface`"), None
        return None, found[m.address]
    return None, None
