"""The lab server's web application (Starlette): the pages, the JSON API under /api/ that they use and
scripts may call (docs/lab-server.md), the live streams (server-sent events) and the terminals
(websockets). Who is asking is decided here, once per request: a Bearer token or the cookie set from
a personal link; a lab or file that is not the caller's is 404, as one that does not exist."""
from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.schemas import SchemaGenerator
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import LabError
from ..spec import exercise as exercise_mod
from . import variants, views
from .classfile import ClassFile
from .store import ACTIVE, FINAL, Store
from .supervisor import Refused, Supervisor
from .terminals import Terminals
from .tokens import User, Users

WEB = Path(__file__).resolve().parent / "web"
STATIC = WEB / "static"
MODULES = WEB / "node_modules"
COOKIE = "tcplab"
MAX_BODY = 16 * 1024
MAX_SETS = 32
MAX_VALUE = 100
PING = 15.0  # seconds between keep-alive comments on an event stream, for proxies that cut idle connections
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # a personal link's token must not leak to another site
}


@dataclass
class Server:
    store: Store
    users: Users
    klass: ClassFile
    supervisor: Supervisor
    secret: str
    terminals: Terminals = field(init=False)
    _exercises: dict[str, exercise_mod.Exercise] = field(default_factory=dict)
    _readmes: dict[str, str] = field(default_factory=dict)
    _snapshot: tuple[int, str] = (-1, "")

    def __post_init__(self) -> None:
        self.terminals = Terminals(self._typed)
        self.supervisor.on_ended = self.terminals.close_lab

    def _typed(self, lab_id: str) -> None:
        self.supervisor.last_input[lab_id] = time.time()

    def exercise(self, name: str) -> exercise_mod.Exercise:
        if name not in self._exercises:
            self._exercises[name] = exercise_mod.load(name)
        return self._exercises[name]

    def class_snapshot(self) -> str:
        """Every lab, as the instructor's stream sends it: made once per change, whatever the number of pages watching."""
        version = self.supervisor.version
        if self._snapshot[0] != version:
            positions = _queue_positions(self)
            self._snapshot = (version, json.dumps([views.lab_json(lab, queue_position=positions.get(lab["id"]), brief=True)
                                                   for lab in self.store.labs()]))
        return self._snapshot[1]

    def readme(self, ex: exercise_mod.Exercise) -> str:
        if ex.name not in self._readmes:
            self._readmes[ex.name] = views.readme_html(ex.file.parent / "README.md")
        return self._readmes[ex.name]

    def variant(self, student: str, exercise: str) -> dict[str, Any]:
        ranges = self.klass.variants.get(exercise)
        if not ranges or student == "instructor":
            return {}
        return variants.values(self.secret, student, self.exercise(exercise), ranges)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a value JSON allows")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Denied(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def _who(server: Server, conn: HTTPConnection) -> tuple[User, bool]:
    """The caller, and whether they came by cookie (whose POSTs need the CSRF token)."""
    auth = conn.headers.get("authorization", "")
    if auth:
        scheme, _, token = auth.partition(" ")
        user = server.users.find(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise Denied(401, "the Bearer token is not one this server issued")
        return user, False
    user = server.users.find(conn.cookies.get(COOKIE))
    if user is None:
        raise Denied(401, "no valid token: open your personal link (from the instructor), or send Authorization: Bearer TOKEN")
    return user, True


def _lab_for(server: Server, user: User, lab_id: str) -> dict[str, Any]:
    lab = server.store.lab(lab_id) if len(lab_id) <= 16 else None
    if lab is None or (not user.instructor and (lab["student"] != user.name or lab["deleted"])):
        raise Denied(404, f"no lab {lab_id}")
    return lab


def _queue_positions(server: Server) -> dict[str, int]:
    queued = sorted(server.store.labs(states=("queued",)), key=lambda l: l["seq"])
    return {lab["id"]: i + 1 for i, lab in enumerate(queued)}


def _full(server: Server, lab: dict[str, Any]) -> dict[str, Any]:
    return views.lab_json(lab, server.store.events(lab["id"]), _queue_positions(server).get(lab["id"]))


def build(server: Server, lifespan=None) -> Starlette:
    """The application, for uvicorn; `lifespan` runs the supervisor beside it."""

    def guarded(handler, csrf: bool = False, instructor: bool = False):
        """The handler called with the caller; `instructor`: for the instructor alone (404 to anyone else, as
        a route that is not there); `csrf`: a cookie-borne request must repeat the CSRF token."""
        async def endpoint(request: Request) -> Response:
            try:
                user, by_cookie = _who(server, request)
                if instructor and not user.instructor:
                    raise Denied(404, "not found")
                if csrf and by_cookie and not server.users.csrf_ok(user, request.headers.get("x-csrf-token")):
                    raise Denied(403, "missing or wrong X-CSRF-Token header (GET /api/me gives it)")
                response = await handler(request, user)
            except Denied as d:
                response = error(d.status, d.message)
            for k, v in SECURITY_HEADERS.items():
                response.headers.setdefault(k, v)
            return response

        endpoint.__doc__ = handler.__doc__
        endpoint.__name__ = handler.__name__
        return endpoint

    async def body(request: Request) -> Any:
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            raise Denied(413, f"the request body is over {MAX_BODY} bytes")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                raise Denied(413, f"the request body is over {MAX_BODY} bytes")
        if not raw:
            return {}
        try:
            return json.loads(raw, parse_constant=_no_constant)
        except ValueError as e:
            raise Denied(400, f"the request body is not JSON{': ' + str(e) if 'NaN' in str(e) or 'Infinity' in str(e) else ''}") from None

    # --- pages ------------------------------------------------------------------------------------

    async def join(request: Request) -> Response:
        token = request.path_params["token"]
        if server.users.find(token) is None:
            return HTMLResponse(_page("This link is not valid", "Ask your instructor for your personal link."), status_code=401,
                                headers=SECURITY_HEADERS)
        # A page that moves on by itself, not a redirect: a link clicked in a chat or a course site is a
        # cross-site navigation, whose redirect would not carry a SameSite=Strict cookie; this page's own does.
        response = HTMLResponse("<!doctype html><meta charset=utf-8><meta http-equiv=refresh content='0;url=/'>"
                                "<title>tcplab</title><link rel=icon href=/static/favicon.svg><link rel=stylesheet href=/static/style.css>"
                                "<main><p>Signed in. <a href=/>On to your exercises</a>.</p></main>", headers=SECURITY_HEADERS)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https", max_age=30 * 24 * 3600)
        return response

    async def home(request: Request, user: User) -> Response:
        return FileResponse(STATIC / ("instructor.html" if user.instructor else "index.html"))

    async def lab_page(request: Request, user: User) -> Response:
        _lab_for(server, user, request.path_params["id"])
        return FileResponse(STATIC / "lab.html")

    def page(handler):
        wrapped = guarded(handler)

        async def endpoint(request: Request) -> Response:
            response = await wrapped(request)
            if response.status_code == 401:
                return HTMLResponse(_page("Open your personal link", "This server needs the personal link your instructor gave you."),
                                    status_code=401, headers=SECURITY_HEADERS)
            if response.status_code == 404:
                return HTMLResponse(_page("Not found", "No such lab."), status_code=404, headers=SECURITY_HEADERS)
            return response

        return endpoint

    # --- the API ----------------------------------------------------------------------------------

    async def me(request: Request, user: User) -> Response:
        """
        responses:
          200:
            description: who the token belongs to, and the CSRF token a cookie-borne POST or DELETE repeats
        """
        return JSONResponse({"name": user.name, "role": "instructor" if user.instructor else "student",
                             "csrf": server.users.csrf(user), "class": server.klass.name})

    async def exercises(request: Request, user: User) -> Response:
        """
        responses:
          200:
            description: the exercises the class offers, each with its README as HTML, its parameters and the caller's variant
        """
        out = []
        for name in server.klass.exercises:
            ex = server.exercise(name)
            out.append({"name": ex.name, "title": ex.title, "description": ex.description,
                        "readme_html": server.readme(ex),
                        "parameters": {p.name: {"type": p.type, "default": p.default, "min": p.min, "max": p.max, "help": p.help}
                                       for p in ex.parameters.values()},
                        "hands_on": ex.hands_on is not None, "variant": server.variant(user.name, ex.name)})
        return JSONResponse(out)

    def _validated(user: User, data: Any) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
        if not isinstance(data, dict):
            raise Denied(400, 'the body must be a JSON object: {"exercise": ..., "mode": "auto" or "hands-on", "set": {...}}')
        unknown = set(data) - {"exercise", "mode", "set"}
        if unknown:
            raise Denied(400, f"unknown field {sorted(unknown)[0]!r}; fields: exercise, mode, set")
        name = data.get("exercise")
        if not isinstance(name, str) or name not in server.klass.exercises:
            raise Denied(400, f"exercise: {name!r} is not offered here; offered: {', '.join(server.klass.exercises)}")
        mode = data.get("mode", "auto")
        if mode not in ("auto", "hands-on"):
            raise Denied(400, f"mode: {mode!r}; use auto or hands-on")
        ex = server.exercise(name)
        if mode == "hands-on" and ex.hands_on is None:
            raise Denied(400, f"mode: {name} has no hands-on steps; use auto")
        sets = data.get("set") or {}
        if not isinstance(sets, dict) or len(sets) > MAX_SETS:
            raise Denied(400, f"set: an object of at most {MAX_SETS} parameters, name: value")
        variant = server.variant(user.name, name)
        for k, v in sets.items():
            if k not in ex.parameters:
                raise Denied(400, f"set.{k}: {name} has no parameter {k!r}; its parameters: {', '.join(ex.parameters)}")
            if isinstance(v, bool) or not isinstance(v, (int, float, str)) or len(str(v)) > MAX_VALUE:
                raise Denied(400, f"set.{k}: a number or a string of at most {MAX_VALUE} characters")
            if k in variant:
                raise Denied(400, f"set.{k}: {k} is your own value in this class ({variant[k]}), and cannot be changed")
            if "," in str(v) and ex.parameters[k].type != "str":
                raise Denied(400, f"set.{k}: one value per lab (sweeps are for `invoke up`)")
        try:
            # The same code as --set: every value converted and checked against its declaration.
            checked = exercise_mod.load(name, [f"{k}={v}" for k, v in {**sets, **variant}.items()])
        except LabError as e:
            raise Denied(400, f"set: {e}") from None
        return name, mode, {k: checked.values[k] for k in sets}, variant

    async def create_lab(request: Request, user: User) -> Response:
        """
        requestBody:
          content:
            application/json:
              schema: {type: object, properties: {exercise: {type: string}, mode: {type: string, enum: [auto, hands-on]}, set: {type: object}}}
        responses:
          201:
            description: the lab, queued
          400:
            description: a bad exercise, mode or value
          503:
            description: the server is full
        """
        # Loading the exercise to check the values takes milliseconds: off the event loop, which serves everyone.
        name, mode, sets, variant = await asyncio.to_thread(_validated, user, await body(request))
        return _added(user.name, name, mode, sets, variant)

    def _added(student: str, exercise: str, mode: str, sets: dict[str, Any], variant: dict[str, Any],
               retry_of: Optional[str] = None) -> Response:
        try:
            lab = server.supervisor.add(student, exercise, mode, sets, variant, retry_of=retry_of)
        except Refused as e:
            raise Denied(503, str(e)) from None
        return JSONResponse(_full(server, lab), status_code=201)

    async def list_labs(request: Request, user: User) -> Response:
        """
        responses:
          200:
            description: the caller's labs, newest first (the instructor's, every lab)
        """
        labs = server.store.labs(None if user.instructor else user.name, deleted=user.instructor)
        positions = _queue_positions(server)
        return JSONResponse([views.lab_json(lab, queue_position=positions.get(lab["id"]), brief=True) for lab in labs])

    async def get_lab(request: Request, user: User) -> Response:
        """
        responses:
          200:
            description: the lab, its steps, events, live wire view and verdict
          404:
            description: no such lab of the caller's
        """
        return JSONResponse(_full(server, _lab_for(server, user, request.path_params["id"])))

    async def finish_lab(request: Request, user: User) -> Response:
        """
        responses:
          202:
            description: a hands-on lab is being finished and judged
          409:
            description: the lab is not running
        """
        lab = _lab_for(server, user, request.path_params["id"])
        if lab["state"] not in ("queued", "starting", "running"):
            raise Denied(409, f"lab {lab['id']} is {lab['state']}: nothing to finish")
        server.supervisor.finish(lab)
        return JSONResponse(_full(server, server.store.lab(lab["id"]) or lab), status_code=202)

    async def retry_lab(request: Request, user: User) -> Response:
        """
        responses:
          201:
            description: the failed lab started again with the same values, as a new lab
        """
        lab = _lab_for(server, user, request.path_params["id"])
        if lab["state"] not in FINAL:
            raise Denied(409, f"lab {lab['id']} is {lab['state']}: wait for it to end")
        return _added(lab["student"], lab["exercise"], lab["mode"], lab["sets"], server.variant(lab["student"], lab["exercise"]),
                      retry_of=lab["id"])

    async def delete_lab(request: Request, user: User) -> Response:
        """
        responses:
          200:
            description: the lab ended without a verdict (if it was running) and gone from its student's list
        """
        lab = _lab_for(server, user, request.path_params["id"])
        if lab["state"] in ACTIVE:
            server.supervisor.stop(lab, f"deleted by {'the instructor' if user.instructor else 'its student'}")
        server.store.update(lab["id"], deleted=1)
        server.terminals.close_lab(lab["id"])
        return JSONResponse(_full(server, server.store.lab(lab["id"]) or lab))

    async def stop_lab(request: Request, user: User) -> Response:
        """
        responses:
          202:
            description: the lab is being ended (a hands-on one finished and judged, an automated one interrupted)
        """
        lab = _lab_for(server, user, request.path_params["id"])
        if lab["state"] not in ACTIVE:
            raise Denied(409, f"lab {lab['id']} is {lab['state']}")
        if lab["mode"] == "hands-on":
            server.supervisor.finish(lab)
        else:
            server.supervisor.stop(lab, "stopped by the instructor")
        return JSONResponse(_full(server, server.store.lab(lab["id"]) or lab), status_code=202)

    async def lab_file(request: Request, user: User) -> Response:
        """
        responses:
          200:
            description: one file of the lab's results folder, by name
          404:
            description: no such file among the folder's own regular files
        """
        lab = _lab_for(server, user, request.path_params["id"])
        name = request.path_params["name"]
        opened = views.open_result(lab, name)
        if opened is None:
            raise Denied(404, f"lab {lab['id']} has no file {name!r}")
        fd, size = opened
        media = "application/json" if name.endswith(".json") else "image/png" if name.endswith(".png") else \
            "image/svg+xml" if name.endswith(".svg") else "application/vnd.tcpdump.pcap" if name.endswith(".pcap") else "application/x-pcapng" if name.endswith(".pcapng") else \
            "text/plain; charset=utf-8" if name.endswith((".log", ".err", ".trace", ".txt")) else "application/octet-stream"

        f = os.fdopen(fd, "rb")

        async def content() -> AsyncIterator[bytes]:
            left = size  # what Content-Length promised, even if the file grew since
            try:
                while left > 0:
                    chunk = await asyncio.to_thread(f.read, min(left, 256 * 1024))
                    if not chunk:
                        break
                    left -= len(chunk)
                    yield chunk
            finally:
                f.close()

        disposition = "inline" if media.startswith(("image/png", "application/json", "text/")) else "attachment"
        # The background task closes the file too where the stream never began (a client gone at once).
        return StreamingResponse(content(), media_type=media, background=BackgroundTask(f.close),
                                 headers={"Content-Length": str(size), "Content-Disposition": f'{disposition}; filename="{name}"'})

    async def lab_stream(request: Request, user: User) -> Response:
        """
        responses:
          200:
            description: server-sent events, the lab as JSON each time it changes
        """
        lab_id = _lab_for(server, user, request.path_params["id"])["id"]

        def snapshot() -> Optional[str]:
            lab = server.store.lab(lab_id)
            return json.dumps(_full(server, lab)) if lab is not None else None

        return _sse(request, snapshot)

    async def class_stream(request: Request, user: User) -> Response:
        """
        responses:
          200:
            description: server-sent events (instructor), every lab each time one changes
        """

        return _sse(request, server.class_snapshot)

    def _sse(request: Request, snapshot) -> Response:
        async def events() -> AsyncIterator[str]:
            last = None
            while True:
                changed = server.supervisor.changed
                now = snapshot()
                if now is None:
                    return
                if now != last:
                    last = now
                    yield f"data: {now}\n\n"
                try:
                    await asyncio.wait_for(changed.wait(), PING)
                except asyncio.TimeoutError:
                    yield ": ping\n\n"
                if await request.is_disconnected():
                    return

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def class_csv(request: Request, user: User) -> Response:
        """
        responses:
          200:
            description: (instructor) the class's results, a line per lab
        """
        return PlainTextResponse(views.class_csv(server.store.labs()), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="{server.klass.name}.csv"'})

    async def class_xml(request: Request, user: User) -> Response:
        """
        responses:
          200:
            description: (instructor) the class's results as JUnit XML, a test suite per student
        """
        return Response(views.class_junit(server.klass.name, server.users.names(), server.store.labs()), media_type="application/xml",
                        headers={"Content-Disposition": f'attachment; filename="{server.klass.name}.xml"'})

    # --- terminals --------------------------------------------------------------------------------

    async def terminal(ws: WebSocket) -> None:
        try:
            user, _ = _who(server, ws)
            origin = ws.headers.get("origin")
            host = ws.headers.get("host", "")
            if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
                raise Denied(403, "a terminal opens only from this server's own pages")
            lab = _lab_for(server, user, ws.path_params["id"])
            hostname = ws.path_params["host"]
            if lab["mode"] != "hands-on" or lab["state"] != "running" or hostname not in ((lab.get("picture") or {}).get("hosts") or []):
                raise Denied(404, f"lab {lab['id']} has no terminal on {hostname!r} now")
        except Denied as d:
            # Refused during the handshake: answered as HTTP with the API's own status (401, 404 for a lab not the
            # caller's, 403 for a foreign Origin) where the server can (uvicorn can); a close before accept is a bare 403.
            if "websocket.http.response" in ws.scope.get("extensions", {}):
                await ws.send_denial_response(error(d.status, d.message))
            else:
                await ws.close(code=4000 + d.status, reason=d.message[:120])
            return
        writer = lab["student"] == user.name  # the instructor watches a student's terminal, read-only
        await ws.accept()
        term = server.terminals.get(lab["id"], lab["lab"], hostname)
        queue = term.attach()

        async def pump() -> None:
            while True:
                data = await queue.get()
                if data is None:
                    await ws.close(code=1000, reason="the shell ended")
                    return
                await ws.send_bytes(data)

        sender = asyncio.create_task(pump())
        try:
            while True:
                message = await ws.receive_text()
                if not writer or len(message) > 65536:
                    continue
                try:
                    m = json.loads(message)
                except ValueError:
                    continue
                if not isinstance(m, dict):
                    continue
                if m.get("type") == "input" and isinstance(m.get("data"), str):
                    term.write(m["data"])
                elif m.get("type") == "resize" and isinstance(m.get("cols"), int) and isinstance(m.get("rows"), int):
                    term.resize(m["cols"], m["rows"])
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            sender.cancel()
            term.detach(queue)

    schemas = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "tcplab lab server", "version": "1"}})

    async def openapi(request: Request) -> Response:
        # As JSON, as its name says (Starlette's own OpenAPIResponse is YAML).
        return JSONResponse(schemas.get_schema(routes=request.app.routes))

    routes = [
        Route("/join/{token}", join),
        Route("/", page(home)),
        Route("/labs/{id}", page(lab_page)),
        Route("/api/me", guarded(me)),
        Route("/api/exercises", guarded(exercises)),
        Route("/api/labs", guarded(list_labs), methods=["GET"]),
        Route("/api/labs", guarded(create_lab, csrf=True), methods=["POST"]),
        Route("/api/labs/{id}", guarded(get_lab), methods=["GET"]),
        Route("/api/labs/{id}", guarded(delete_lab, csrf=True), methods=["DELETE"]),
        Route("/api/labs/{id}/finish", guarded(finish_lab, csrf=True), methods=["POST"]),
        Route("/api/labs/{id}/retry", guarded(retry_lab, csrf=True), methods=["POST"]),
        Route("/api/labs/{id}/stop", guarded(stop_lab, csrf=True, instructor=True), methods=["POST"]),
        Route("/api/labs/{id}/files/{name}", guarded(lab_file)),
        Route("/api/labs/{id}/stream", guarded(lab_stream)),
        Route("/api/class/stream", guarded(class_stream, instructor=True)),
        Route("/api/class.csv", guarded(class_csv, instructor=True)),
        Route("/api/class.xml", guarded(class_xml, instructor=True)),
        Route("/openapi.json", openapi, include_in_schema=False),
        WebSocketRoute("/ws/labs/{id}/terminal/{host}", terminal),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Mount("/vendor/xterm", StaticFiles(directory=MODULES / "@xterm" / "xterm", check_dir=False), name="xterm"),
        Mount("/vendor/xterm-fit", StaticFiles(directory=MODULES / "@xterm" / "addon-fit", check_dir=False), name="xterm-fit"),
        Mount("/vendor/uplot", StaticFiles(directory=MODULES / "uplot" / "dist", check_dir=False), name="uplot"),
    ]

    async def not_found(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return error(exc.status_code, exc.detail or "not found")
        return PlainTextResponse(exc.detail or "not found", status_code=exc.status_code)

    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found}, lifespan=lifespan)
    app.state.server = server
    return app


def _page(title: str, text: str) -> str:
    return (f"<!doctype html><meta charset=utf-8><title>tcplab: {title}</title><link rel=icon href=/static/favicon.svg>"
            f"<link rel=stylesheet href=/static/style.css>"
            f"<main><h1>{title}</h1><p>{text}</p></main>")


def missing_web_modules() -> Optional[str]:
    """What the pages need from npm and is not installed, if anything."""
    for part in ("@xterm/xterm/lib/xterm.js", "@xterm/addon-fit/lib/addon-fit.js", "uplot/dist/uPlot.iife.min.js"):
        if not (MODULES / part).exists():
            return part
    return None
