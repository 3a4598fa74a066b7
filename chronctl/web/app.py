"""The `chronctl web` dashboard: a Starlette app over one backend and a manifest.

Pages are rendered on the server (Jinja2) and read without JavaScript; a few
lines of JS (static/live.js) refetch the page's live part every LIVE_SECONDS
with its ETag, so nothing is sent back when nothing changed.

Security model (README "`chronctl web`"):

- reading needs nothing but reaching the port, which is bound to 127.0.0.1
  unless told otherwise;
- every action is a POST and needs a session: a browser gets one by giving the
  token (`/login`), and the session's cookie is HttpOnly and SameSite=Strict;
- every action form carries the session's CSRF token, compared in constant
  time; a POST without both is refused (403) and changes nothing;
- `read_only` builds no action route at all (a POST is a 405, as for any page);
- every value is HTML-escaped (Jinja2 autoescape) and, before that, passed
  through `text.safe`, so task data (untrusted: whoever enqueued it wrote it)
  shows as text, terminal escapes included; a Content-Security-Policy allows
  only the app's own script, as a second wall;
- the backend is named by its `display_url` only: a password in its URL never
  reaches a page.

Every action calls the library function its CLI command calls (admin.py,
schedule_admin.py), so the web cannot do what the CLI would refuse.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .. import admin, schedule_admin
from ..backends import QueueBackend
from ..backpressure import UNLIMITED
from ..errors import (
    BackendError,
    ChronctlError,
    TaskNotFoundError,
    UnknownJobError,
    UnknownQueueError,
)
from ..manifest import Manifest
from ..models import Run, TaskStatus
from ..overview import Overview, Throughput, read_overview
from ..text import safe

#: Seconds between live refreshes in the browser (each an ETag'd GET).
LIVE_SECONDS = 2
#: Rows a list page shows at most (tasks, dead letters, history).
PAGE_LIMIT = 100
#: Runs of a task's job read to find the task's attempts (newest first).
ATTEMPT_WINDOW = 1000
#: Finished runs read for the charts (newest first): past that many in a day, the
#: day's older bars are lower bounds, and say so.
CHART_WINDOW = 5000
#: Sessions kept in memory; the oldest is dropped past this.
MAX_SESSIONS = 1000
COOKIE = "chronctl_session"
SPARK_LEVELS = "▁▂▃▄▅▆▇█"
LIVE_HEADER = "x-chronctl-live"

_HERE = files("chronctl.web")


@dataclass(slots=True)
class Session:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)


@dataclass(slots=True)
class WebConfig:
    """What `chronctl web` was started with."""

    token: str
    read_only: bool = False
    root_path: str = ""  # the prefix a reverse proxy serves the app under, e.g. /chronctl
    #: Host header names answered (None: any). Bound to a loopback address, only
    #: loopback names: a page of another site whose name is made to resolve to
    #: 127.0.0.1 (DNS rebinding) gets a 421, not the dashboard.
    allowed_hosts: frozenset[str] | None = None


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def host_name(header: str) -> str:
    """The name in a Host header, without its port (`[::1]:8080` -> `::1`)."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def _shown(value: Any) -> Any:
    """Jinja's `finalize`: every printed value goes through `safe` (task data may hold
    terminal escapes or invisible characters) before autoescape makes it HTML."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value  # built by a template or a filter, from escaped parts
    return safe(value, lines=True)


def _when(ts: float | datetime | None) -> str:
    if ts is None:
        return "-"
    moment = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(ts: float | datetime | None) -> str:
    if ts is None:
        return ""
    moment = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return moment.isoformat()


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _spark(series: list[int]) -> str:
    top = max(series, default=0)
    if not top:
        return SPARK_LEVELS[0] * len(series)
    last = len(SPARK_LEVELS) - 1
    return "".join(SPARK_LEVELS[min(last, round(n / top * last))] for n in series)


def _json(value: Any) -> str:
    return json.dumps(value, indent=None, sort_keys=True)


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(_HERE / "templates")),
        autoescape=select_autoescape(["html"], default=True),
        finalize=_shown,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, iso=_iso, seconds=_seconds, spark=_spark, tojson_text=_json)
    return env


class Dashboard:
    """The app's state: the backend (connected for the app's lifetime), the manifest,
    the sessions, and the throughput counted across overview refreshes."""

    def __init__(self, backend: QueueBackend, manifest: Manifest | None, config: WebConfig):
        self.backend = backend
        self.manifest = manifest
        self.config = config
        self.base = config.root_path.rstrip("/")
        self.env = templates()
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.throughput = Throughput()
        self.known = admin.manifest_queues(manifest)
        self.limits = manifest.limits if manifest else UNLIMITED

    # -- sessions --------------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        key = request.cookies.get(COOKIE)
        return self.sessions.get(key) if key else None

    def new_session(self) -> tuple[str, Session]:
        key = secrets.token_urlsafe(32)
        self.sessions[key] = session = Session()
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return key, session

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.config.token.encode())

    # -- rendering -------------------------------------------------------------

    def render(
        self, request: Request, name: str, status_code: int = 200, **context: Any
    ) -> Response:
        """The page, or only its live part for the refresh script; 304 when the
        browser's ETag still matches."""
        session = self.session(request)
        live = request.headers.get(LIVE_HEADER) == "1"
        flashes: list[tuple[str, str]] = []
        if session is not None and not live:
            flashes, session.flashes = session.flashes, []
        body = self.env.get_template(name).render(
            base=self.base,
            partial=live,
            read_only=self.config.read_only,
            session=session,
            csrf=session.csrf if session else "",
            flashes=flashes,
            here=self.here(request),
            backend=self.backend.display_url or self.backend.label,
            live_seconds=LIVE_SECONDS,
            **context,
        )
        etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "X-Chronctl-Live, Cookie"}
        if status_code == 200 and request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return HTMLResponse(body, status_code, headers=headers)

    def here(self, request: Request) -> str:
        """This page's path and query under the root path (where an action returns to)."""
        path = request.url.path
        if self.base and path.startswith(self.base + "/"):
            path = path[len(self.base) :]
        query = request.url.query
        return self.base + path + (f"?{query}" if query else "")

    def back(self, form: FormData) -> str:
        """Where to go after an action: the page it was posted from, if it is one of ours."""
        target = str(form.get("next") or "")
        inside = target.startswith(self.base + "/") and not target.startswith("//")
        # Browsers drop tabs and newlines from a URL and read a backslash as a slash:
        # "/<tab>/evil.example" would leave the site. Only a plain path of ours is followed.
        plain = target.isprintable() and not any(c in target for c in " \\")
        return target if inside and plain else self.base + "/"

    # -- reads -----------------------------------------------------------------

    async def overview(self) -> Overview:
        return await read_overview(
            self.backend,
            jobs=self.manifest.jobs if self.manifest else None,
            known_queues=self.known,
            limits=self.limits,
            throughput=self.throughput,
        )


Page = Callable[[Dashboard, Request], Awaitable[Response]]
Action = Callable[[Dashboard, FormData], Awaitable[str]]


def page(dash: Dashboard, fn: Page) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await fn(dash, request)
        except ChronctlError as exc:
            return dash.render(request, "error.html", _status(exc), message=str(exc))

    return endpoint


def _status(exc: ChronctlError) -> int:
    """A name that is not there is a 404, a backend out of reach a 503, bad input a 400."""
    if isinstance(exc, TaskNotFoundError | UnknownQueueError | UnknownJobError):
        return 404
    if isinstance(exc, BackendError):
        return 503
    return 400


def action(dash: Dashboard, fn: Action) -> Callable[[Request], Awaitable[Response]]:
    """A POST that changes something: refused (403) without a session and its CSRF
    token; otherwise done, its outcome flashed on the page it came from."""

    async def endpoint(request: Request) -> Response:
        form = await request.form()
        session = dash.session(request)
        given = str(form.get("csrf") or "")
        if session is None or not given or not hmac.compare_digest(given, session.csrf):
            return dash.render(
                request,
                "error.html",
                403,
                message="refused: actions need a session (log in with the token) and the "
                "page's CSRF token; reload the page and try again",
            )
        try:
            session.flashes.append(("ok", await fn(dash, form)))
        except ChronctlError as exc:
            session.flashes.append(("error", str(exc)))
        return RedirectResponse(dash.back(form), status_code=303)

    return endpoint


def _name(form: FormData, key: str = "name") -> str:
    value = form.get(key)
    if not isinstance(value, str) or not value:
        raise ChronctlError(f"the form gave no {key}")
    return value


# -- pages ---------------------------------------------------------------------


async def overview_page(dash: Dashboard, request: Request) -> Response:
    return dash.render(request, "overview.html", nav="overview", o=await dash.overview())


async def jobs_page(dash: Dashboard, request: Request) -> Response:
    jobs = dash.manifest.jobs if dash.manifest else {}
    views = await schedule_admin.schedules_overview(dash.backend, jobs)
    shown = {v.name for v in views}
    untriggered = [spec for name, spec in jobs.items() if name not in shown]
    return dash.render(
        request, "jobs.html", nav="jobs", views=views, untriggered=untriggered, now=time.time()
    )


async def queues_page(dash: Dashboard, request: Request) -> Response:
    queues = await admin.list_queues(dash.backend, dash.known, dash.limits)
    return dash.render(request, "queues.html", nav="queues", queues=queues)


FILTER_STATUSES = [s for s in TaskStatus if s is not TaskStatus.FAILED]


async def tasks_page(dash: Dashboard, request: Request) -> Response:
    q = request.query_params
    status, job, queue = q.get("status") or None, q.get("job") or None, q.get("queue") or None
    statuses = admin.parse_statuses(status, FILTER_STATUSES)
    tasks = await dash.backend.list_tasks(status=statuses, job=job, queue=queue, limit=PAGE_LIMIT)
    return dash.render(
        request,
        "tasks.html",
        nav="tasks",
        tasks=tasks,
        statuses=[s.value for s in FILTER_STATUSES],
        status=status or "",
        job=job or "",
        queue=queue or "",
        limit=PAGE_LIMIT,
    )


async def task_page(dash: Dashboard, request: Request) -> Response:
    task = await admin.get_task(dash.backend, request.path_params["task_id"])
    runs = await dash.backend.history(task.job, limit=ATTEMPT_WINDOW)
    attempts = [r for r in runs if r.task_id == task.id]
    return dash.render(
        request,
        "task.html",
        nav="tasks",
        task=task,
        attempts=attempts,
        window=ATTEMPT_WINDOW,
        cancellable=task.status in (TaskStatus.PENDING, TaskStatus.RUNNING),
    )


async def dlq_page(dash: Dashboard, request: Request) -> Response:
    job = request.query_params.get("job") or None
    dead = await admin.dead_letters(dash.backend, job, PAGE_LIMIT)
    total = await admin.count_dead(dash.backend)
    return dash.render(
        request, "dlq.html", nav="dlq", dead=dead, total=total, job=job or "", limit=PAGE_LIMIT
    )


async def history_page(dash: Dashboard, request: Request) -> Response:
    job = request.query_params.get("job") or None
    runs = await dash.backend.history(job, PAGE_LIMIT)
    return dash.render(
        request, "history.html", nav="history", runs=runs, job=job or "", limit=PAGE_LIMIT
    )


@dataclass(slots=True)
class Chart:
    """Finished runs per bucket, oldest first, drawn as stacked bars (inline SVG)."""

    title: str
    bucket: str  # what one bar counts, e.g. "minute"
    ok: list[int]
    failed: list[int]  # failed, dead or cancelled
    start: float
    partial: bool  # the runs read reach back less far than the chart: counts are lower bounds

    @property
    def peak(self) -> int:
        return max((a + b for a, b in zip(self.ok, self.failed, strict=True)), default=0)


def charts(runs: list[Run], now: float, window: int) -> list[Chart]:
    """The last hour by minute and the last day by hour, from the newest `window` runs."""
    out = []
    oldest = runs[-1].finished_at if runs else now
    full = len(runs) >= window
    for title, bucket, seconds, count in (
        ("last hour", "minute", 60, 60),
        ("last day", "hour", 3600, 24),
    ):
        start = now - seconds * count
        ok, failed = [0] * count, [0] * count
        for run in runs:
            if run.finished_at < start:
                continue
            i = min(count - 1, int((run.finished_at - start) // seconds))
            if run.status is TaskStatus.SUCCEEDED:
                ok[i] += 1
            else:
                failed[i] += 1
        out.append(Chart(title, bucket, ok, failed, start, full and oldest > start))
    return out


async def charts_page(dash: Dashboard, request: Request) -> Response:
    job = request.query_params.get("job") or None
    runs = await dash.backend.history(job, CHART_WINDOW)
    return dash.render(
        request,
        "charts.html",
        nav="charts",
        charts=charts(runs, time.time(), CHART_WINDOW),
        job=job or "",
        window=CHART_WINDOW,
    )


async def login_page(dash: Dashboard, request: Request) -> Response:
    """The token form; `?token=` (the link `chronctl web` prints) logs in at once and
    sends the browser on without the token in its address bar."""
    given = request.query_params.get("token")
    if given is not None:
        return _login(dash, request, given)
    return dash.render(request, "login.html", nav="login", failed=False)


async def login_post(dash: Dashboard, request: Request) -> Response:
    form = await request.form()
    return _login(dash, request, str(form.get("token") or ""))


def _login(dash: Dashboard, request: Request, given: str) -> Response:
    if not given or not dash.token_ok(given):
        return dash.render(request, "login.html", 403, nav="login", failed=True)
    key, session = dash.new_session()
    session.flashes.append(("ok", "logged in: actions are enabled in this browser"))
    response = RedirectResponse(dash.base + "/", status_code=303)
    response.set_cookie(
        COOKIE,
        key,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=dash.base + "/",
    )
    return response


async def confirm_queue_purge(dash: Dashboard, request: Request) -> Response:
    name = request.query_params.get("name", "")
    info = await admin.known_queue(dash.backend, dash.known, name, dash.limits)
    return dash.render(
        request,
        "confirm.html",
        nav="queues",
        question=f"Delete the {info.pending} pending task(s) of queue '{name}'?",
        target="/actions/queue/purge",
        fields={"name": name},
        cancel=dash.base + "/queues",
    )


async def confirm_dlq_purge(dash: Dashboard, request: Request) -> Response:
    total = await admin.count_dead(dash.backend)
    return dash.render(
        request,
        "confirm.html",
        nav="dlq",
        question=f"Delete all {total} dead letter(s)?",
        target="/actions/dlq/purge",
        fields={},
        cancel=dash.base + "/dlq",
    )


# -- actions -------------------------------------------------------------------


def _jobs(dash: Dashboard) -> Mapping[str, Any]:
    return dash.manifest.jobs if dash.manifest else {}


async def pause_job(dash: Dashboard, form: FormData) -> str:
    name = _name(form)
    await admin.set_job_paused(dash.backend, _jobs(dash), name, True)
    return f"paused '{name}'"


async def resume_job(dash: Dashboard, form: FormData) -> str:
    name = _name(form)
    await admin.set_job_paused(dash.backend, _jobs(dash), name, False)
    return f"resumed '{name}'"


async def trigger_job(dash: Dashboard, form: FormData) -> str:
    name = _name(form)
    if dash.manifest is None:
        raise ChronctlError("triggering a job needs the manifest")
    task_id, created = await schedule_admin.trigger(dash.backend, dash.manifest, name)
    return f"triggered '{name}': task {task_id}" + ("" if created else " (already there)")


async def pause_queue(dash: Dashboard, form: FormData) -> str:
    name = _name(form)
    await admin.set_queue_paused(dash.backend, dash.known, name, True)
    return f"paused queue '{name}'"


async def resume_queue(dash: Dashboard, form: FormData) -> str:
    name = _name(form)
    await admin.set_queue_paused(dash.backend, dash.known, name, False)
    return f"resumed queue '{name}'"


async def purge_queue(dash: Dashboard, form: FormData) -> str:
    name = _name(form)
    if form.get("confirm") != "yes":
        raise ChronctlError("purging a queue needs its confirmation")
    count = await admin.purge_queue(dash.backend, dash.known, name)
    return f"purged {count} pending task(s) from '{name}'"


async def retry_dead(dash: Dashboard, form: FormData) -> str:
    count = await admin.retry_dead(dash.backend, [_name(form, "id")])
    return f"retried {count} task(s)"


async def retry_all_dead(dash: Dashboard, form: FormData) -> str:
    count = await admin.retry_dead(dash.backend, None)
    return f"retried {count} task(s)"


async def purge_dead(dash: Dashboard, form: FormData) -> str:
    if form.get("confirm") != "yes":
        raise ChronctlError("purging the dead letters needs its confirmation")
    count = await dash.backend.purge_dead(None)
    return f"purged {count} dead letter(s)"


async def cancel_task(dash: Dashboard, form: FormData) -> str:
    task = await admin.cancel_task(dash.backend, _name(form, "id"))
    return f"cancelled {task.id}"


ACTIONS: dict[str, Action] = {
    "/actions/job/pause": pause_job,
    "/actions/job/resume": resume_job,
    "/actions/job/trigger": trigger_job,
    "/actions/queue/pause": pause_queue,
    "/actions/queue/resume": resume_queue,
    "/actions/queue/purge": purge_queue,
    "/actions/dlq/retry": retry_dead,
    "/actions/dlq/retry-all": retry_all_dead,
    "/actions/dlq/purge": purge_dead,
    "/actions/task/cancel": cancel_task,
}


SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response (pages, errors, static files), and
    answers a request for a host name not allowed with 421 (WebConfig.allowed_hosts)."""

    def __init__(self, app: Any, allowed_hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.allowed_hosts is not None:
            headers = dict(scope.get("headers") or [])
            name = host_name(headers.get(b"host", b"").decode("latin-1")).lower()
            if name not in self.allowed_hosts:
                await Response("misdirected request: unknown host name\n", 421)(
                    scope, receive, send
                )
                return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    backend: QueueBackend, manifest: Manifest | None, config: WebConfig, *, connect: bool = True
) -> Starlette:
    """The dashboard over `backend`; it connects when the app starts (`connect`) and
    disconnects when it stops."""
    dash = Dashboard(backend, manifest, config)
    routes: list[BaseRoute] = [
        Route("/", page(dash, overview_page)),
        Route("/jobs", page(dash, jobs_page)),
        Route("/queues", page(dash, queues_page)),
        Route("/tasks", page(dash, tasks_page)),
        Route("/tasks/{task_id:path}", page(dash, task_page)),
        Route("/dlq", page(dash, dlq_page)),
        Route("/history", page(dash, history_page)),
        Route("/charts", page(dash, charts_page)),
        Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
    ]
    if not config.read_only:
        routes += [
            Route("/login", page(dash, login_page), methods=["GET"]),
            Route("/login", page(dash, login_post), methods=["POST"]),
            Route("/confirm/queue-purge", page(dash, confirm_queue_purge)),
            Route("/confirm/dlq-purge", page(dash, confirm_dlq_purge)),
        ]
        routes += [Route(path, action(dash, fn), methods=["POST"]) for path, fn in ACTIONS.items()]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if not connect:
            yield
            return
        async with backend:
            yield

    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(SecurityHeaders, allowed_hosts=config.allowed_hosts)
    app.state.dashboard = dash
    return app
