"""`invoke start`, `steps`, `shell`, `exec`, `watch`, `finish`: an exercise done by a person at shells on
the lab's hosts, with tcplab watching. What each does is lab/session/handson.py's (and the keeper's,
lab/handson/keeper.py); here are the steps, the live view and the verdict on the terminal."""
from __future__ import annotations

import os
import signal
import socket
import textwrap
import time
from typing import Optional, Sequence

from rich.live import Live
from rich.markup import escape
from rich.text import Text

from .. import ui
from ..errors import LabError
from ..handson import record
from ..naming import check_lab_name
from ..session import handson
from . import EXIT_INTERRUPTED, EXIT_OK


def start(name: str, lab: str, backend_name: str, sets: Sequence[str], inventory: Optional[str] = None,
          accept_new_host_keys: bool = False, strict: bool = False, assigned: Sequence[str] = ()) -> int:
    try:
        rec = handson.start(name, lab, backend_name, sets, inventory, accept_new_host_keys, assigned=assigned, strict=strict)
    except handson.Interrupted as e:
        ui.error(str(e))
        return EXIT_INTERRUPTED
    _print_steps(rec, intro=True)
    if in_image_as_main_command():
        return _hold(rec)
    return EXIT_OK


def in_image_as_main_command() -> bool:
    """`docker run … tcplab/tcplab start`: this process is what the container runs (under tini, itself
    under docker-init with `docker run --init`), and its lab's namespaces live only as long as the
    container does."""
    if not os.environ.get("TCPLAB_IMAGE"):
        return False
    parent = os.getppid()
    try:
        name = open(f"/proc/{parent}/comm").read().strip()
    except OSError:
        name = ""
    return parent in (0, 1) or name in ("tini", "docker-init")


def _others() -> list[int]:
    """The container's processes other than this one, its init and its parents (zombies aside)."""
    mine = {os.getpid(), 1}
    pid = os.getppid()
    while pid > 1 and pid not in mine:
        mine.add(pid)
        try:
            pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in mine:
            try:
                state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                out.append(int(entry))
    return out


HOLD_AFTER_FINISH = 120.0  # seconds the container waits for the finish that ended its lab


def _hold(rec: record.Record) -> int:
    """Keeps the container (and so the lab) alive until the lab is finished from another terminal;
    Ctrl-C or `docker stop` here finishes and judges it, so the results reach the mounted folder."""
    me = socket.gethostname()  # a container's hostname is its ID, which `docker exec` takes
    ui.console.print(f"[bold]This container holds lab {escape(rec.lab)}.[/bold] In another terminal: "
                     f"`docker exec -it {me} tcplab shell HOST`; at the end `docker exec {me} tcplab finish` "
                     f"(results in /results), or Ctrl-C here finishes and judges it.", soft_wrap=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while handson.keeper_alive(rec):
            time.sleep(0.5)
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # `docker stop` sends it again; finishing takes a few seconds
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return finish(rec.lab, None, False)
    # The `tcplab finish` that ended the keeper still judges and hands the folder over: the container
    # (and every process in it) ends with this one, so wait for it, and for any other `docker exec`.
    deadline = time.monotonic() + HOLD_AFTER_FINISH
    while _others() and time.monotonic() < deadline:
        time.sleep(0.2)
    ui.console.print(f"lab {rec.lab} is finished; the container ends")
    return EXIT_OK


def _print_steps(rec: record.Record, intro: bool = False) -> None:
    width = max(50, min(ui.console.width, 110))

    def para(text: str, indent: int, style: str = "") -> None:
        for line in textwrap.wrap(text, width - indent) or [""]:
            ui.console.print(" " * indent + (f"[{style}]{escape(line)}[/{style}]" if style else escape(line)), soft_wrap=True)

    hosts = ", ".join(f"{h} ({v['iface']})" if v.get("iface") else h for h, v in rec.hosts.items())
    ui.console.print(f"[bold]{escape(rec.exercise)}[/bold] by hand on lab {escape(rec.lab)} ({escape(rec.backend)}), hosts: {escape(hosts)}", soft_wrap=True)
    if intro and rec.intro:
        para(rec.intro, 0)
        para(f"A shell on a host: `invoke shell HOST --lab {rec.lab}`; what the wire shows: `invoke watch --lab {rec.lab}`; "
             f"these steps again: `invoke steps --lab {rec.lab}`; at the end: `invoke finish --lab {rec.lab}`.", 0, "bold")
    first_open = next((i for i, s in enumerate(rec.steps) if not s.get("done_at")), None)
    for i, s in enumerate(rec.steps):
        if s.get("done_at"):
            mark = f"[green]done[/green] at {s['done_at'] - (rec.ready_at or s['done_at']):.1f} s"
        else:
            mark = "[yellow]next[/yellow]" if i == first_open else "[dim]to do[/dim]"
        where = f" on {s['host']}" if s.get("host") else ""
        ui.console.print(f"[bold]{i + 1}.[/bold] {mark}{escape(where)}")
        para(s["do"], 3)
        if s.get("why"):
            para(s["why"], 3, "dim")
        if s.get("run"):
            ui.console.print(f"   [bold]$[/bold] {escape(s['run'])}", soft_wrap=True)


def steps(lab: Optional[str]) -> int:
    rec = handson.lab_record(lab)
    _print_steps(rec)
    if not handson.keeper_alive(rec):
        ui.warn(f"lab {rec.lab}'s keeper is gone ({rec.reached()}): `invoke down --lab {rec.lab}` removes what is left")
    return EXIT_OK


def shell(host: str, lab: Optional[str]) -> int:
    rec = handson.lab_record(lab)
    _, h = handson.host(rec, host)
    ui.console.print(f"a root shell on {host} of lab {rec.lab}, in {h['dir']}, with the exercise's programs; `exit` leaves it")
    return handson.shell(host, rec.lab)


def exec_(host: str, command: str, lab: Optional[str]) -> int:
    return handson.shell(host, lab, line=command)


def watch(lab: Optional[str]) -> int:
    rec = handson.lab_record(lab)
    if not handson.keeper_alive(rec):
        raise LabError(f"lab {rec.lab}'s keeper is gone ({rec.reached()}): nothing to watch")
    ui.console.print(f"watching lab {rec.lab} ({rec.exercise}); Ctrl-C stops watching and leaves the lab as it is")
    told: set[tuple[float, str]] = set()  # the story is told afresh each tick: a line is printed once
    t0 = rec.ready_at or rec.started
    try:
        with Live(_status(rec), console=ui.console, refresh_per_second=4, transient=True) as live:
            while True:
                now = record.load(rec.lab)
                if now is None or now.status != record.READY or not handson.keeper_alive(now):
                    live.console.print(f"lab {rec.lab} is {now.reached() if now and handson.keeper_alive(now) else 'no longer watched: its keeper is gone'}")
                    return EXIT_OK
                for ts, text in now.live.get("events") or []:
                    if (ts, text) not in told:
                        told.add((ts, text))
                        live.console.print(f"[dim]{ts - t0:8.3f}s[/dim] {escape(text)}")
                live.update(_status(now))
                time.sleep(0.25)
    except KeyboardInterrupt:
        ui.console.print(f"stopped watching; lab {rec.lab} is as it was")
        return EXIT_OK


def _status(rec: record.Record) -> Text:
    marks = " ".join(f"{i + 1}{'✓' if s.get('done_at') else '·'}" for i, s in enumerate(rec.steps))
    nxt = (rec.live or {}).get("next") or ""
    return Text(f"steps {marks}" + (f"   next: {nxt}" if nxt else ""), style="bold")


def finish(lab: Optional[str], results_dir: Optional[str], keep: bool) -> int:
    outcome = handson.finish(lab, results_dir, keep)
    if outcome.kept:
        name = check_lab_name(lab or "tcplab")
        ui.console.print(f"lab {name} is still up (--keep); `invoke down --lab {name}` removes it")
    if outcome.folder is not None:
        ui.console.print(f"results: {outcome.folder}")
    return outcome.code
