"""tcplab's commands, as invoke tasks: `invoke --list` in the repository (its tasks.py adds `test`),
or the `tcplab` program (main() below; the image's entry point). Above the commands and the lab
server, which it calls.

Each task imports only its own command (lab/cli/<command>.py), so `invoke --list`, `down` or
`status` never pay for what `up` needs.
"""
from __future__ import annotations

import importlib
import os

from invoke import Collection, Exit, Program, task

from .cli import EXIT_BAD_INPUT
from .errors import LabError


def _run(command: str, *args) -> None:
    """Runs lab.cli.<module>.<function> ("up.up"); a LabError is one line and exit status 2."""
    module, function = command.split(".")
    try:
        code = getattr(importlib.import_module(f"lab.cli.{module}"), function)(*args)
    except LabError as e:
        raise Exit(f"error: {e}", code=EXIT_BAD_INPUT) from None
    if code:
        raise Exit(code=code)


@task(
    iterable=["set_"],
    help={
        "exercise": "exercise to run (see `invoke list`)",
        "lab": "lab name: every namespace, link and process is named after it (default tcplab)",
        "backend": "where hosts live: netns (network namespaces on this machine, the default), docker (containers), "
                   "or ssh (machines named in --inventory)",
        "inventory": "with --backend ssh: YAML file naming the source, dest and (optional) observer machines",
        "accept_new_host_keys": "with --backend ssh: trust machines whose host key is not in known_hosts yet, and add it there "
                                "(a changed key is refused regardless)",
        "set_": "override a parameter, name=value; repeatable (--set keepidle=3 --set keepcnt=5). A comma list for one "
                "numeric parameter (--set latency=0,10,20) runs once per value and compares the runs",
        "results": "results folder (default results/<lab>-<exercise>-<timestamp>/)",
        "keep": "leave the lab up after the run, to look around; remove it with `invoke down`",
        "kernels": "run on several kernels and compare: a comma list of host (this machine's, in namespaces), bookworm "
                   "(Debian 12's 6.1) and trixie (Debian 13's 6.12), in VMs (`invoke vms`), e.g. --kernels host,bookworm",
        "engine": "local (this machine, the default) or swarm: the lab runs as a job of the tcplab image on a node of the "
                  "Docker Swarm that the local daemon manages (namespaces inside the job's container), its results come back here",
    },
)
def up(c, exercise, lab="tcplab", backend="netns", set_=None, results=None, keep=False, inventory=None,
       accept_new_host_keys=False, kernels=None, engine="local"):
    """Bring a lab up, run the exercise, collect captures and logs, check them, tear down (once per value of a sweep,
    or per kernel with --kernels).

    Exit status: 0 every check passed, 1 a check failed, 2 bad input or environment, 130 interrupted.
    """
    if engine not in ("local", "swarm"):
        raise Exit(f"error: --engine {engine!r}: local or swarm", code=EXIT_BAD_INPUT)
    if engine == "swarm":
        if backend != "netns" or inventory or keep or accept_new_host_keys or kernels is not None:
            raise Exit("error: --engine swarm runs the lab on namespaces inside a container on a Swarm node: leave out --backend, "
                       "--inventory, --keep, --accept-new-host-keys and --kernels", code=EXIT_BAD_INPUT)
        _run("up.up_swarm", exercise, lab, set_ or [], results)
        return
    if kernels is not None:
        if backend != "netns" or inventory or keep or accept_new_host_keys:
            raise Exit("error: --kernels chooses the machines itself (namespaces for host, VMs for the others): "
                       "leave out --backend, --inventory, --keep and --accept-new-host-keys", code=EXIT_BAD_INPUT)
        _run("kernels.run", exercise, lab, kernels, set_ or [], results)
        return
    _run("up.up", exercise, lab, backend, set_ or [], results, keep, inventory, accept_new_host_keys)


@task(help={"folder": "a results folder made by `invoke up` (a sweep's: every run, then the comparison)"})
def check(c, folder):
    """Run the checks again on a results folder alone. Exit status: 0 every check passed, 1 otherwise."""
    _run("check.check", folder)


@task(
    name="down",
    help={
        "lab": "lab to remove (default tcplab)",
        "all": "remove every tcplab lab this machine knows of",
        "inventory": "remove the lab from the machines of this SSH inventory (needed only when this machine has no record of it)",
    },
)
def down_(c, lab=None, all=False, inventory=None):
    """Remove everything a lab created, even after `up` was killed. Safe to run twice."""
    _run("down.down", lab, all, inventory)


@task(help={"rebuild": "build even if an up-to-date image exists",
            "image": "host (the Docker backend's hosts, the default), ssh-vm (the stand-in VM the SSH tests reach) or tcplab "
                     "(tcplab itself, whose labs run inside it: `docker run … tcplab/tcplab up exercise2`)"})
def images(c, rebuild=False, image="host"):
    """Build a project image (offline from Debian's mirror when no registry answers)."""
    _run("images.images", rebuild, image)


@task
def status(c):
    """Show the labs on this machine: running, kept, or left over."""
    _run("status.status")


@task(name="list")
def list_(c):
    """List the exercises with their parameters and defaults."""
    _run("listing.list_exercises")


@task(
    name="analyze",
    help={
        "file": "a capture: pcap or pcapng, gzipped or not (tcpdump -w, Wireshark, tshark -w)",
        "flow": "one connection only: ADDR:PORT-ADDR:PORT, either way round ([v6 address]:port for IPv6)",
        "json": "also write the reading as JSON to this file",
        "plots": "also draw, per connection shown, its window chart and time-sequence picture (PNG) into this folder",
        "kernel": "the kernel model to read it against: host (this machine's; the default), 6.1, 6.12 or 6.18",
        "all": "every connection, not only those where a timer did something",
        "annotate": "write the capture again as pcapng with each finding as a packet comment on its frames (Wireshark shows them)",
        "labels": "write a line per TCP frame to this file: its number and Wireshark's TCP analysis flags, as tshark names them",
    },
)
def analyze(c, file, flow=None, json=None, plots=None, kernel="host", all=False, annotate=None, labels=None):
    """The timers in any capture, per TCP connection, explained against the kernel model.

    Keepalive, persist, retransmission and SYN timers, the settings they imply, what the kernel model
    allows, and how each connection ended.

    Reads a file of any size in flat memory. Exit 0 with findings, 2 for a file it cannot read.
    """
    _run("analyze.analyze", file, flow, json, plots, kernel, all, annotate, labels)


@task(
    help={
        "parts": "which figures, a comma list of analyzer, docker, overhead, parallel, serve, swarm (default: all)",
        "seconds": "analyzer: seconds of bulk transfer to capture (default 8: about a million packets here)",
        "capture": "analyzer: analyse this pcap instead of making one (made and kept there if it does not exist)",
        "repeat": "overhead: runs of each, whose medians are printed (default 5)",
        "labs": "parallel: Docker labs started at once (default 20); serve: labs started through the lab server at once (default 30); "
                "swarm: labs through the server on a one-node and a two-node Swarm (default 40)",
    }
)
def bench(c, parts="analyzer,docker,overhead,parallel,serve,swarm", seconds=8.0, capture=None, repeat=5, labs=20):
    """Print figures, each beside what a user would use instead (tshark, the docker CLI, raw iproute2).

    The analyzer against tshark (whole processes, the same file, a label per frame, peak memory), a Docker lab against the docker CLI, `up`'s overhead against a raw
    iproute2 script, twenty Docker labs at once, the lab server's ready shell and thirty labs at once, forty labs on a Swarm
    of one node and of two.
    """
    _run("bench.run", float(seconds), capture, parts, int(repeat), int(labs))


HANDS_ON = {
    "lab": "lab name (default tcplab)",
}


@task(
    iterable=["set_"],
    help={
        "exercise": "exercise to do by hand (see `invoke list`; each has hands-on steps)",
        "lab": "lab name: every namespace, container and file is named after it (default tcplab)",
        "backend": "where hosts live: netns (the default), docker, or ssh (machines named in --inventory)",
        "inventory": "with --backend ssh: YAML file naming the source, dest and (optional) observer machines",
        "accept_new_host_keys": "with --backend ssh: trust machines whose host key is not in known_hosts yet",
        "set_": "a parameter for the steps' commands, name=value; repeatable",
        "strict": "judge against the lab's values (its defaults and --set), not what the person's programs set: "
                  "a person who types other numbers fails, with a hint saying so",
        "assigned": "as --strict, for these parameters only (a comma list): the lab server's per-student values",
    },
)
def start(c, exercise, lab="tcplab", backend="netns", set_=None, inventory=None, accept_new_host_keys=False, strict=False,
          assigned=""):
    """Bring a lab up for an exercise done by hand, and print its steps with this lab's commands.

    The lab's own capture runs, the exercise's programs wait in each host's folder, nothing else is
    started. Exit 2 for bad input.
    """
    _run("handson.start", exercise, lab, backend, set_ or [], inventory, accept_new_host_keys, strict,
         [a.strip() for a in assigned.split(",") if a.strip()])


@task(help=HANDS_ON)
def steps(c, lab=None):
    """Print a hands-on lab's steps again, marking those tcplab has seen done."""
    _run("handson.steps", lab)


@task(help={"host": "source, dest or observer", **HANDS_ON})
def shell(c, host, lab=None):
    """An interactive root shell on a hands-on lab's host, in its folder with the exercise's programs."""
    _run("handson.shell", host, lab)


@task(name="exec", help={"host": "source, dest or observer", "command": "one shell command line, quoted", **HANDS_ON})
def exec_(c, host, command, lab=None):
    """Run one command line on a hands-on lab's host, in its folder; its output here, its exit status ours."""
    _run("handson.exec_", host, command, lab)


@task(help=HANDS_ON)
def watch(c, lab=None):
    """A live view of a hands-on lab's capture, the kernel model's next expected event, the steps done.

    Ctrl-C stops watching and leaves the lab as it is.
    """
    _run("handson.watch", lab)


@task(help={**HANDS_ON, "results": "results folder (default results/<lab>-<exercise>-<timestamp>/)",
            "keep": "leave the lab up afterwards; remove it with `invoke down`"})
def finish(c, lab=None, results=None, keep=False):
    """Stop what was started on a hands-on lab, collect every capture and log, judge them, tear down.

    Exit status as for `up`; `invoke check DIR` judges the folder again.
    """
    _run("handson.finish", lab, results, keep)


@task(
    help={
        "action": "up (boot a set), down (remove it), status (list the sets)",
        "name": "the set's name: its folder /var/lib/tcplab/vms/NAME, its namespace tcplabvm-NAME (default vms)",
        "count": "up: 2 VMs (source and dest) or 3 (an observer VM bridging them); default 2",
        "kernel": "up: bookworm (Debian 12, kernel 6.1) or trixie (Debian 13, kernel 6.12); default bookworm",
        "accel": "up: auto (KVM where it can boot Debian's kernels, TCG otherwise; the default), kvm or tcg",
        "all": "down: remove every set on this machine",
    },
)
def vms(c, action, name=None, count=2, kernel="bookworm", accel="auto", all=False):
    """Real Debian VMs under QEMU for --backend ssh: `invoke vms up` prints the inventory to use.

    Images are built once from Debian's mirror and cached; each set has its own keys and a private
    network. Exit status 2 for bad input or a VM that does not boot.
    """
    _run("vms.vms", action, name, int(count), kernel, accel, all)


@task(help={"folder": "the results folder to make (it must not exist, or be empty)"})
def receive(c, folder):
    """Unpack a results folder from a lab's output on standard input: `docker service logs --raw SERVICE | invoke receive DIR`."""
    _run("receive.receive", folder)


@task(
    help={
        "action": "up (start the Swarm), down (remove it), status (list the sandboxes and their nodes)",
        "name": "the sandbox's name, up to 8 letters and digits (default local)",
        "nodes": "up: how many nodes, the first the manager (default 2)",
    },
)
def swarm(c, action, name="local", nodes=2):
    """A Docker Swarm on this machine alone, to try and test `--engine swarm`: Docker daemons of tcplab's own, each in
    namespaces of its own, joined as one manager and workers. The machine's own daemon is never put in Swarm mode.

    `up` prints the DOCKER_HOST that makes `invoke up … --engine swarm` and `invoke serve --engine swarm` use it.
    """
    _run("swarm.swarm", action, name, int(nodes))


@task(
    help={
        "listen": "ADDRESS:PORT to serve on (default 127.0.0.1:8080; another address than loopback warns without TLS)",
        "class_": "class file (YAML): the class's students, the exercises offered, per-student variants (docs/lab-server.md). "
                  "Without it, one user: the instructor",
        "backend": "where labs run: docker (a container per host, the default) or netns (root shells on this machine: "
                   "only without --class)",
        "max_labs": "labs running or waiting at once; more are refused with a message (default 60)",
        "max_starting": "labs being brought up at once; the rest wait in a queue (default: the number of cores)",
        "idle_minutes": "a hands-on lab without a keystroke or a packet for this long is finished and judged (default 30; 0: never)",
        "data": "the server's folder: its database, tokens.json, the results folders (default /var/lib/tcplab/serve)",
        "certfile": "serve TLS with this certificate (PEM), with --keyfile",
        "keyfile": "the certificate's private key (PEM)",
        "engine": "local (labs on this machine, the default) or swarm: every lab runs as a job on a node of the Docker Swarm that "
                  "the local daemon manages, its terminals through the node's own Docker API, its results back here",
        "print_k8s_job": "print, instead of serving, EXERCISE as a Kubernetes Job of the tcplab image (untested: see the README)",
    }
)
def serve(c, listen="127.0.0.1:8080", class_=None, backend="docker", max_labs=60, max_starting=0, idle_minutes="30", data=None,
          certfile=None, keyfile=None, engine="local", print_k8s_job=None):
    """A lab server for a classroom: each student runs exercises from a browser, the instructor watches every lab live.

    Prints each student's personal link. Ctrl-C ends every lab it runs (hands-on ones finished and judged).
    """
    if print_k8s_job:
        _run("k8s.print_job", print_k8s_job)
        return
    try:
        from .serve.main import serve as run_server

        code = run_server(listen, class_, backend, int(max_labs), int(max_starting) or None, float(idle_minutes), data, certfile, keyfile,
                          engine)
    except LabError as e:
        raise Exit(f"error: {e}", code=EXIT_BAD_INPUT) from None
    if code:
        raise Exit(code=code)


def main() -> None:
    """The `tcplab` program: these tasks without the repository (the image's entry point, or `pip install`)."""
    import sys

    program = Program(namespace=Collection.from_module(sys.modules[__name__]), name="tcplab", binary="tcplab", version="0.1.0")
    try:
        program.run()
    finally:
        if os.environ.get("TCPLAB_IMAGE"):
            from .cli import handover

            handover.results_to_their_owner()
            if os.environ.get("TCPLAB_SHIP_RESULTS"):
                handover.ship(os.environ["TCPLAB_SHIP_RESULTS"])
