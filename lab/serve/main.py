"""`invoke serve`: the lab server started. Its inputs checked first (the class file, the backend, the
browser libraries, the address), one server per data folder, the personal links printed and written
to tokens.json, then uvicorn serving lab/serve/app.py with the supervisor beside it. Ctrl-C ends
every lab it runs (a hands-on lab finished and judged) before it exits; after a SIGKILL, the next
`invoke serve` re-attaches the labs whose workers live on and tears the others down."""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import os
import secrets
import time
from pathlib import Path
from typing import AsyncIterator, Optional

from .. import backends, ui
from ..backends.preflight import require_root, require_tools
from ..errors import LabError
from . import classfile
from .app import Server, build, missing_web_modules
from .store import ACTIVE, Store
from .supervisor import Limits, Supervisor
from .tokens import INSTRUCTOR, Users, issue

DEFAULT_DATA = Path("/var/lib/tcplab/serve")
DB = "serve.db"


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise LabError(f"--listen {listen}: write ADDRESS:PORT, e.g. --listen 127.0.0.1:8080 or --listen [::1]:8080")
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise LabError(f"--listen {listen}: {host!r} is not an IP address; give the address to listen on, e.g. 0.0.0.0 for every one") from None
    return host, int(port)


def _loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def serve(listen: str, class_file: Optional[str], backend: Optional[str], max_labs: int, max_starting: Optional[int],
          idle_minutes: float, data: Optional[str], certfile: Optional[str] = None, keyfile: Optional[str] = None,
          engine: str = "local") -> int:
    import uvicorn

    host, port = parse_listen(listen)
    klass = classfile.load(Path(class_file)) if class_file else classfile.alone()
    backend = backend or "docker"
    if backend not in ("docker", "netns"):
        raise LabError(f"--backend {backend}: the lab server runs docker (a container per host, the default) or netns")
    if backend == "netns" and class_file:
        raise LabError("--backend netns gives every shell root on this machine itself, so it serves only its instructor: "
                       "leave out --class, or use --backend docker (each student's hosts in containers of their own)")
    if engine not in ("local", "swarm"):
        raise LabError(f"--engine {engine!r}: local (labs on this machine, the default) or swarm")
    if max_labs < 1 or (max_starting is not None and max_starting < 1) or idle_minutes < 0:
        raise LabError("--max-labs and --max-starting take 1 or more, --idle-minutes 0 (never) or more")
    if bool(certfile) != bool(keyfile):
        raise LabError("--certfile and --keyfile go together: give both to serve TLS")
    for f in (certfile, keyfile):
        if f and not Path(f).is_file():
            raise LabError(f"{f}: no such file")
    missing = missing_web_modules()
    if missing:
        raise LabError(f"the pages' browser libraries are not installed ({missing}): run scripts/install-web-packages "
                       f"(`./bootstrap serve` does it)")
    require_root("serve")
    probe = backends.get(backend, "svprobe")
    require_tools({**probe.required_tools, **probe.tools})
    probe.check_environment()
    if backend == "docker" and engine == "local":
        # Built now, not by the first student's lab while the class waits on it.
        from ..backends.docker import images

        images.ensure(probe.client)
    probe.close()
    if engine == "swarm":
        # The Swarm checked, and the image on its nodes, before the first student waits on it.
        from ..session import swarmrun

        _, image = swarmrun.prepare()
        # A lab on the Swarm costs this machine only its worker following it: many may start at once.
        max_starting = max_starting or max_labs

    folder = Path(data) if data else DEFAULT_DATA
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    lock = open(folder / "serve.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LabError(f"--data {folder}: another `invoke serve` uses this folder; stop it, or give another --data") from None
    store = Store(folder / DB)
    secret = klass.secret or store.meta("secret") or secrets.token_urlsafe(32)
    store.set_meta("secret", secret)
    csrf_secret = store.meta("csrf") or secrets.token_urlsafe(32)
    store.set_meta("csrf", csrf_secret)
    store.set_meta("class", klass.name)
    tokens = issue(store, klass, folder)
    users = Users(store, csrf_secret.encode())
    limits = Limits(max_labs=max_labs, max_starting=max_starting or os.cpu_count() or 1, idle_minutes=idle_minutes)
    supervisor = Supervisor(store, folder, backend, limits, engine, image if engine == "swarm" else None)
    server = Server(store, users, klass, supervisor, secret)

    scheme = "https" if certfile else "http"
    shown = f"[{host}]" if ":" in host else host
    base = f"{scheme}://{shown}:{port}"
    ui.console.print(f"tcplab lab server for class {klass.name}: {len(klass.students)} students, exercises "
                     f"{', '.join(klass.exercises)}, labs on {backend if engine == 'local' else 'the Swarm'} (at most {max_labs}, {limits.max_starting} starting at once)")
    for name, token in tokens.items():
        if name != INSTRUCTOR:
            ui.console.print(f"  {name:<20} {base}/join/{token}", soft_wrap=True)
    ui.console.print(f"  [bold]{INSTRUCTOR:<20} {base}/join/{tokens[INSTRUCTOR]}[/bold]", soft_wrap=True)
    ui.console.print(f"links: {folder / 'tokens.json'} (keep it private); state: {folder / DB}")
    if not _loopback(host) and not certfile:
        ui.warn(f"serving on {host} without TLS: tokens and terminals cross the network in the clear. Put it behind a TLS proxy "
                f"(nginx or Caddy forwarding to it with the Host header kept, websocket upgrades and server-sent events passed "
                f"through unbuffered), or give --certfile and --keyfile")
    active = store.labs(states=ACTIVE)
    if active:
        ui.step(f"{len(active)} labs from before: re-attached where their workers live on, torn down otherwise")

    @contextlib.asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        task = asyncio.create_task(supervisor.run())
        try:
            yield
        finally:
            server.terminals.close_all()
            task.cancel()
            running = store.labs(states=ACTIVE)
            if running:
                ui.step(f"ending {len(running)} labs (hands-on ones finished and judged)")
            await supervisor.shutdown()

    app = build(server, lifespan)
    config = uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning", ws_ping_interval=20.0,
                            ws_ping_timeout=20.0, ws_max_size=256 * 1024, timeout_graceful_shutdown=3, ssl_certfile=certfile, ssl_keyfile=keyfile,
                            proxy_headers=False)
    started = time.monotonic()
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass  # uvicorn, having shut down on Ctrl-C or SIGTERM, raises the signal again for us: this is the end we wanted
    finally:
        store.close()
        lock.close()
    ui.step(f"served for {time.monotonic() - started:.0f} s")
    return 0
