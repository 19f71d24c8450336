"""Runs on a machine the SSH backend reaches: starts the lab's programs detached, records them, stops them.

The SSH backend uploads this file with procs.py and sysinfo.py into the lab's folder on the machine
(~/.tcplab/<lab>/agent/) and runs it with python3, under `sudo -n` where the inventory says so.
Standard library only, Python 3.7 or later, so it runs on whatever the machine has.

    agent.py spawn DIR NAME PROGRAM [ARG...]  start PROGRAM; print "PID START"; DIR/NAME.pid records it
                                              at once, DIR/NAME.status gets its exit status when it ends
    agent.py signal DIR NAME SIGNAL           signal it, if that PID is still the program it started
    agent.py stop-all DIR                     stop every program DIR records; print their names (JSON)
    agent.py facts                            print this machine's kernel and tool versions (JSON)
    agent.py trace-start DIR INSTANCE PORT    trace TCP state changes of PORT in tracefs instance INSTANCE;
                                              print the clocks read as it starts (JSON); exit 3 if unavailable
    agent.py trace-stop DIR                   stop it, write DIR/states.trace, remove the instance; print the clocks
    agent.py trace-remove DIR                 remove the instance and tracefs mount DIR/tracefs.json records
    agent.py serve                            the commands above, one a line on stdin ({"args": [...]}),
                                              each answered with a line on stdout ({"code", "out", "err"}),
                                              until stdin ends: one Python for a whole run instead of one a
                                              command (a slow machine takes tenths of a second to start one)

The record lives on the machine, written by the machine, so `invoke down` finds every program even
when the orchestrator was killed mid-run or runs elsewhere.
"""
from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procs  # noqa: E402  (uploaded beside this file)
import sysinfo  # noqa: E402
import tracefs  # noqa: E402


_ANSWERS = None  # serve's own stdout, where its answers go: a spawned program's wrapper must not hold it


def spawn(folder: str, name: str, argv: list) -> None:
    if os.path.exists(os.path.join(folder, name + ".pid")):
        sys.exit("a program named %s was already started in %s" % (name, folder))
    ready_r, ready_w = os.pipe()
    if os.fork() > 0:
        # The caller: wait for the wrapper's word that the program runs and is recorded.
        os.close(ready_w)
        line = os.read(ready_r, 1000).decode()
        os.close(ready_r)
        if line.startswith("error: "):
            sys.exit(line[len("error: "):].strip())
        print(line.strip())
        sys.exit(0 if line else 1)
    # The wrapper: a session of its own, so closing the SSH channel or the orchestrator dying leaves
    # the program running until `down` or the timeline stops it.
    os.close(ready_r)
    if _ANSWERS is not None:
        os.close(_ANSWERS)
    try:
        os.setsid()
        out = os.open(os.path.join(folder, name + ".log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(os.path.join(folder, name + ".err"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDWR)
    except OSError as e:
        # Told through the pipe, not the wrapper's stderr, which under `serve` is nobody's.
        os.write(ready_w, ("error: %s cannot start: %s\n" % (name, e)).encode()[:900])
        os._exit(1)
    child = os.fork()
    if child == 0:
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            os.write(2, ("cannot run %s: %s\n" % (argv[0], e.strerror)).encode())
            os._exit(127)
    for fd in (0, 1, 2):
        os.dup2(null, fd)  # the SSH channel must see EOF once the caller is done
    # The wrapper outlives any signal meant for the program, to write its exit status.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        record = {"name": name, "pid": child, "start": procs.start_time(child), "wrapper": os.getpid(),
                  "wrapper_start": procs.start_time(os.getpid()), "argv": argv}
        _write(os.path.join(folder, name + ".pid"), json.dumps(record))
    except Exception:
        # Unrecorded, `down` could never find it: it must not run at all.
        os.kill(child, signal.SIGKILL)
        os._exit(1)
    os.write(ready_w, ("%d %s\n" % (child, record["start"])).encode())
    os.close(ready_w)
    _, status = os.waitpid(child, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    try:
        _write(os.path.join(folder, name + ".status"), str(code))
    except OSError:
        pass  # the lab's folder is already gone: `down` removed it
    os._exit(0)


def send(folder: str, name: str, signame: str) -> None:
    rec = _record(folder, name)
    sig = getattr(signal, signame)
    if rec and procs.same_process(rec["pid"], rec["start"]):
        try:
            os.kill(rec["pid"], sig)
        except ProcessLookupError:
            pass


def stop_all(folder: str) -> None:
    stopped = []
    names = sorted(f[: -len(".pid")] for f in os.listdir(folder) if f.endswith(".pid")) if os.path.isdir(folder) else []
    for name in names:
        rec = _record(folder, name)
        if rec and procs.stop(rec["pid"], rec["start"], grace=2.0):
            stopped.append(name)
    # Each wrapper writes its program's status and exits; wait for that, so nothing writes into the
    # folder while it is being removed.
    deadline = time.monotonic() + 3
    for name in names:
        rec = _record(folder, name)
        while rec and procs.same_process(rec["wrapper"], rec["wrapper_start"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        if rec:
            procs.stop(rec["wrapper"], rec["wrapper_start"], signal.SIGKILL, grace=1.0)
    print(json.dumps(stopped))


def facts() -> None:
    print(json.dumps({"kernel": sysinfo.kernel(), "tools": sysinfo.tool_versions(), "uid": os.geteuid()}))


def trace_start(folder: str, instance: str, port: int) -> None:
    record_file = os.path.join(folder, "tracefs.json")
    record = _trace_record(folder)  # what an earlier start left is kept, for trace-remove

    def note(kind: str):
        def add(path: str) -> None:
            record[kind].append(path)
            _write(record_file, json.dumps(record))  # on disk before the instance or mount is made
        return add

    try:
        root = tracefs.root(os.path.join(folder, "tracefs"), note("mounts"))
        clock = [time.monotonic(), time.time()]
        tracefs.start(root, instance, port, note("instances"))
    except tracefs.TraceError as e:
        sys.stderr.write("%s\n" % e)
        sys.exit(3)
    print(json.dumps({"clock": clock}))


def trace_stop(folder: str) -> None:
    record = _trace_record(folder)
    try:
        text = tracefs.stop(record["instances"][-1]) if record["instances"] else ""
    except tracefs.TraceError as e:
        sys.stderr.write("%s\n" % e)
        sys.exit(3)
    finally:
        clock = [time.monotonic(), time.time()]
    _write(os.path.join(folder, "states.trace"), text)
    print(json.dumps({"clock": clock, "removed": _trace_remove(folder, record)}))


def _trace_record(folder: str) -> dict:
    try:
        with open(os.path.join(folder, "tracefs.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"instances": [], "mounts": []}


def _trace_remove(folder: str, record: dict) -> list:
    removed, left, mounts_left = tracefs.remove(record["instances"], record["mounts"])
    _write(os.path.join(folder, "tracefs.json"), json.dumps({"instances": left, "mounts": mounts_left}))
    return removed


def _record(folder: str, name: str):
    try:
        with open(os.path.join(folder, name + ".pid")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def serve() -> None:
    global _ANSWERS
    _ANSWERS = os.dup(1)
    answers = os.fdopen(_ANSWERS, "w")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)  # a stray print of a command must not corrupt the answers
    me = os.getpid()
    for line in sys.stdin:
        _reap()
        out, err, code = io.StringIO(), io.StringIO(), 0
        sys.stdout, sys.stderr = out, err
        try:
            main(json.loads(line)["args"])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            if isinstance(e.code, str):
                err.write(e.code + "\n")
        except Exception:  # one command's failure is its answer; the next command is served
            code = 1
            traceback.print_exc(file=err)
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        if os.getpid() != me:
            os._exit(1)  # a spawned program's wrapper that failed before its own exit: never a second server
        answers.write(json.dumps({"code": code, "out": out.getvalue(), "err": err.getvalue()}) + "\n")
        answers.flush()


def _reap() -> None:
    """Spawned programs' wrappers that ended (serve is their parent, and between commands it has no
    other child): no zombies under a long run's server."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def main(args: list) -> None:
    # sudo keeps a strict umask of the user's; files root writes here must stay readable over SFTP.
    os.umask(0o022)
    if args[:1] == ["spawn"] and len(args) >= 4:
        spawn(args[1], args[2], args[3:])
    elif args[:1] == ["signal"] and len(args) == 4:
        send(args[1], args[2], args[3])
    elif args[:1] == ["stop-all"] and len(args) == 2:
        stop_all(args[1])
    elif args[:1] == ["facts"]:
        facts()
    elif args[:1] == ["trace-start"] and len(args) == 4:
        trace_start(args[1], args[2], int(args[3]))
    elif args[:1] == ["trace-stop"] and len(args) == 2:
        trace_stop(args[1])
    elif args[:1] == ["trace-remove"] and len(args) == 2:
        print(json.dumps(_trace_remove(args[1], _trace_record(args[1])) if os.path.isdir(args[1]) else []))
    elif args == ["serve"] and _ANSWERS is None:
        serve()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
