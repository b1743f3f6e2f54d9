"""`autoresearch serve`: the read-only web dashboard over a task folder, a Starlette app run by uvicorn.

Routes:
- `/` the runs of the folder; `/run/{tag}` one run; `/run/{tag}/exp/{seq}` one experiment;
- `/api/runs`, `/api/run/{tag}` (its data and the page's changing parts as HTML), `/api/run/{tag}/exp/{seq}`:
  the same as JSON;
- `/api/events` and `/api/run/{tag}/events`: server-sent events. The server looks at the store every
  `poll` seconds and sends `update` when something changed (an experiment began or ended, the running one
  logged a step), so the page redraws without a reload;
- `/static/...`: the page's own script and styles, and plotly.js from the installed plotly package (no CDN:
  it works offline).

Safety: the store is opened read-only (SQLite's `mode=ro`, `query_only`), so the server cannot change it. On
a loopback address no token is needed, but requests must name a loopback host (a page elsewhere cannot reach
it through DNS rebinding). Any other address needs a token, checked on every request: `Authorization:
Bearer TOKEN`, `?token=TOKEN` (which sets a cookie for the pages and their requests), or that cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib.resources
import ipaddress
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from autoresearch.config import TaskConfig
from autoresearch.serve import pages, views
from autoresearch.store import Store

COOKIE = "autoresearch_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server on this machine."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TokenCheck(BaseHTTPMiddleware):
    """Every request must carry the token; one given as `?token=` is kept in a cookie for the next ones."""

    def __init__(self, app, token: str):
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next) -> Response:
        given = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        candidates = [given, header[7:] if header.lower().startswith("bearer ") else None,
                      request.cookies.get(COOKIE)]
        if not any(c is not None and hmac.compare_digest(c.encode(), self.token.encode()) for c in candidates):
            return PlainTextResponse("401: this dashboard needs its token (?token=..., or an Authorization: "
                                     "Bearer header)", status_code=401)
        response = await call_next(request)
        if given is not None:
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
        return response


class ReadOnlyHeaders(BaseHTTPMiddleware):
    """No page of the dashboard may run a script it did not ship, load from elsewhere, or be framed."""

    async def dispatch(self, request: Request, call_next) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; frame-ancestors 'none'")  # plotly.js compiles its shaders with eval
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


def _static(name: str) -> bytes:
    return importlib.resources.files("autoresearch.serve").joinpath("static").joinpath(name).read_bytes()


def plotly_js() -> bytes:
    """plotly.js as the installed plotly package ships it."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode("utf-8")


def make_app(task_dir: Path, config: TaskConfig, *, token: str | None = None, loopback: bool = True,
             poll: float = 1.0) -> Starlette:
    """The dashboard of `task_dir`. `token`: required on every request (None: none); `loopback`: the server
    listens on a loopback address only, so requests must name a loopback host."""
    task_dir = Path(task_dir).resolve()
    store = Store.open_readonly(task_dir)
    metric, budget = config.metric, config.train.budget_seconds
    assets = {"dashboard.js": ("text/javascript", _static("dashboard.js")),
              "dashboard.css": ("text/css", _static("dashboard.css")),
              "diff.css": ("text/css", pages.DIFF_CSS.encode())}

    def html_or_404(text: str | None, missing: str) -> HTMLResponse:
        return HTMLResponse(text) if text is not None else HTMLResponse(pages.not_found_page(missing), 404)

    def tag_of(request: Request) -> str | None:
        tag = request.path_params["tag"]
        return tag if tag in store.tags() else None

    async def runs_html(request: Request) -> Response:
        runs = await run_in_threadpool(views.runs_view, store, task_dir, metric=metric, budget=budget)
        return HTMLResponse(pages.runs_page(runs, task_dir.name))

    async def runs_json(request: Request) -> Response:
        runs = await run_in_threadpool(views.runs_view, store, task_dir, metric=metric, budget=budget)
        return JSONResponse({"runs": runs, "html": {"runs-table": pages.runs_table(runs)}})

    async def run_html(request: Request) -> Response:
        tag = tag_of(request)
        if tag is None:
            return html_or_404(None, f"no run {request.path_params['tag']!r} in this folder")
        view = await run_in_threadpool(views.run_view, store, tag, metric=metric)
        return HTMLResponse(pages.run_page(view))

    async def run_json(request: Request) -> Response:
        tag = tag_of(request)
        if tag is None:
            return JSONResponse({"error": "no such run"}, 404)
        view = await run_in_threadpool(views.run_view, store, tag, metric=metric)
        live = await run_in_threadpool(views.live_view, store, tag, budget=budget)
        return JSONResponse({"run": view, "live": live, "html": pages.run_fragments(view)})

    def experiment_of(request: Request) -> dict | None:
        tag = tag_of(request)
        return None if tag is None else views.experiment_view(store, tag, request.path_params["seq"], metric=metric)

    async def experiment_html(request: Request) -> Response:
        view = await run_in_threadpool(experiment_of, request)
        return html_or_404(None if view is None else pages.experiment_page(view, metric), "no such experiment")

    async def experiment_json(request: Request) -> Response:
        view = await run_in_threadpool(experiment_of, request)
        return JSONResponse(view) if view is not None else JSONResponse({"error": "no such experiment"}, 404)

    async def events(request: Request) -> Response:
        from sse_starlette.sse import EventSourceResponse

        tag = request.path_params.get("tag")

        def version() -> str:
            if tag is None:  # every run: a change in any of them
                return "|".join(views.live_version(store, t) for t in store.tags())
            return views.live_version(store, tag)

        async def stream():
            seen = None
            while True:
                now = await run_in_threadpool(version)
                if now != seen:
                    seen = now
                    yield {"event": "update", "data": now}
                await asyncio.sleep(poll)
        return EventSourceResponse(stream(), ping=15)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "plotly.min.js":
            return Response(await run_in_threadpool(plotly_js), media_type="text/javascript",
                            headers={"Cache-Control": "max-age=86400"})
        if name not in assets:
            return PlainTextResponse("not found", 404)
        kind, body = assets[name]
        return Response(body, media_type=kind)

    middleware = [Middleware(ReadOnlyHeaders)]
    if loopback and token is None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_NAMES)))
    if token is not None:
        middleware.append(Middleware(TokenCheck, token=token))
    routes = [Route("/", runs_html), Route("/api/runs", runs_json), Route("/api/events", events),
              Route("/run/{tag}", run_html), Route("/api/run/{tag}", run_json),
              Route("/api/run/{tag}/events", events),
              Route("/run/{tag}/exp/{seq:int}", experiment_html), Route("/api/run/{tag}/exp/{seq:int}", experiment_json),
              Route("/static/{name}", static)]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        store.close()

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.store = store
    return app
