"""`chronctl web` (issue 19) through Starlette's TestClient on SQLite: every page
renders; an action without a session or without its CSRF token is refused (403) and
changes nothing, with both it works (a dead letter retried is pending again);
`--read-only` serves no action; task data (markup, terminal escapes) shows as text;
a backend URL's password never reaches a page; `--root-path` prefixes every link and
form; the core install imports no web library, and `chronctl web` without the extra
says so in one line (exit 2)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from chronctl.admin import open_backend
from chronctl.manifest import load_manifest
from chronctl.models import TaskStatus
from chronctl.web.app import COOKIE, WebConfig, create_app
from tests.cli.helpers import ROOT, chronctl, env
from tests.conftest import (
    POSTGRES_URL,
    need_service,
    postgres_reachable,
    postgres_schema,
)

#: Markup a page would run and escapes a terminal would obey, in a task's args and error.
NASTY = "\x1b[2J\x1b]0;pwned\x07<script>alert(1)</script><img src=x onerror=alert(2)>"
TOKEN = "test-token-0123456789abcdef"
PAGES = ["/", "/jobs", "/queues", "/tasks", "/dlq", "/history", "/charts"]


def manifest_text(backend_lines: str) -> str:
    return (
        f'[scheduler]\n{backend_lines}\npythonpath = ["{ROOT}"]\n\n'
        '[defaults]\nretry_delay = "0s"\n\n'
        '[jobs.fail]\nentrypoint = "tests.cli.jobs_for_cli:fail"\nmax_retries = 0\n\n'
        '[jobs.echo]\nentrypoint = "tests.cli.jobs_for_cli:echo"\nqueue = "held"\n\n'
        '[jobs.tick]\nentrypoint = "tests.cli.jobs_for_cli:echo"\nargs = ["x"]\nevery = "1h"\n'
    )


def ok(project: Path, *args: str) -> str:
    result = chronctl(*args, cwd=project)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A SQLite project with a dead letter whose args and error carry NASTY."""
    (tmp_path / "jobs.toml").write_text(manifest_text('backend = "sqlite:///state.db"'))
    ok(tmp_path, "enqueue", "fail", "--args", json.dumps([NASTY]))
    ok(tmp_path, "run", "--once")
    return tmp_path


def client_for(project: Path, **config: object) -> TestClient:
    manifest = load_manifest(project / "jobs.toml")
    backend = open_backend(project / "jobs.toml", None, "web", manifest)
    settings = {"token": TOKEN, **config}
    app = create_app(backend, manifest, WebConfig(**settings))
    # As uvicorn does with --root-path: the prefix goes in the scope's root_path.
    return TestClient(app, root_path=str(config.get("root_path", "")))


@pytest.fixture
def client(project: Path) -> Iterator[TestClient]:
    with client_for(project) as c:
        yield c


def dead_id(project: Path) -> str:
    [task] = json.loads(ok(project, "--json", "dlq", "list"))
    return str(task["id"])


def task_status(project: Path, task_id: str) -> str:
    return str(json.loads(ok(project, "--json", "tasks", "show", task_id))["status"])


def login(client: TestClient, prefix: str = "") -> str:
    """Log in with the token; returns the CSRF token the pages' forms carry."""
    response = client.post(f"{prefix}/login", data={"token": TOKEN}, follow_redirects=False)
    assert response.status_code == 303
    assert COOKIE in response.cookies
    return csrf_of(client.get(f"{prefix}/dlq").text)


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no form with a CSRF token on the page"
    return match.group(1)


def test_every_page_renders(client: TestClient, project: Path) -> None:
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert "<h2>" in response.text
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert "tick" in client.get("/jobs").text and "held" in client.get("/queues").text
    task = dead_id(project)
    page = client.get(f"/tasks/{task}")
    assert page.status_code == 200 and "Attempts" in page.text and "RuntimeError" in page.text
    assert task in client.get("/tasks?status=dead&job=fail").text
    assert task not in client.get("/tasks?status=pending").text
    assert client.get("/tasks/no-such-task").status_code == 404


def test_live_part_and_etag(client: TestClient) -> None:
    """The refresh script's request gets only the live part; the same ETag gets a 304."""
    live = client.get("/dlq", headers={"X-Chronctl-Live": "1"})
    assert live.status_code == 200 and "<html" not in live.text and "Dead letters" in live.text
    again = client.get(
        "/dlq", headers={"X-Chronctl-Live": "1", "If-None-Match": live.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""


def test_actions_need_the_session_and_its_csrf_token(client: TestClient, project: Path) -> None:
    task = dead_id(project)
    # No session at all.
    refused = client.post("/actions/dlq/retry", data={"id": task, "csrf": "x"})
    assert refused.status_code == 403
    # A wrong token does not log in.
    assert client.post("/login", data={"token": "wrong"}).status_code == 403
    assert client.get("/login?token=wrong").status_code == 403
    csrf = login(client)
    # A session without the form's CSRF token (what another site's form would send).
    assert client.post("/actions/dlq/retry", data={"id": task}).status_code == 403
    assert client.post("/actions/dlq/retry", data={"id": task, "csrf": "bad"}).status_code == 403
    # A GET never acts.
    assert client.get(f"/actions/dlq/retry?id={task}&csrf={csrf}").status_code == 405
    assert task_status(project, task) == "dead"
    done = client.post(
        "/actions/dlq/retry",
        data={"id": task, "csrf": csrf, "next": "/dlq"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/dlq"
    assert task_status(project, task) == TaskStatus.PENDING.value
    assert "retried 1 task(s)" in client.get("/dlq").text  # the outcome, said once
    # An off-site `next` is not followed.
    elsewhere = client.post(
        "/actions/job/pause",
        data={"name": "tick", "csrf": csrf, "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert elsewhere.headers["location"] == "/"
    for trick in ["/\t/evil.example/", "/\\evil.example/", "https://evil.example/"]:
        response = client.post(
            "/actions/job/resume",
            data={"name": "tick", "csrf": csrf, "next": trick},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/", trick


def test_job_and_queue_actions_use_the_library(client: TestClient, project: Path) -> None:
    csrf = login(client)

    def post(path: str, **data: str) -> None:
        response = client.post(path, data={"csrf": csrf, **data}, follow_redirects=False)
        assert response.status_code == 303, response.text

    post("/actions/job/pause", name="tick")
    jobs = {j["name"]: j for j in json.loads(ok(project, "--json", "jobs", "list"))}
    assert jobs["tick"]["paused"] is True
    post("/actions/job/resume", name="tick")
    post("/actions/job/trigger", name="echo")
    post("/actions/queue/pause", name="held")
    queues = {q["name"]: q for q in json.loads(ok(project, "--json", "queues", "list"))}
    assert (queues["held"]["paused"], queues["held"]["pending"]) == (True, 1)
    post("/actions/job/pause", name="no-such-job")  # a typo: said, nothing paused
    assert "no-such-job" in client.get("/").text
    # Purging asks first; the form without its confirmation purges nothing.
    confirm = client.get("/confirm/queue-purge?name=held")
    assert "Delete the 1 pending task(s) of queue" in confirm.text
    post("/actions/queue/purge", name="held")
    assert json.loads(ok(project, "--json", "queues", "list"))[1]["pending"] == 1
    post("/actions/queue/purge", name="held", confirm="yes")
    queues = {q["name"]: q for q in json.loads(ok(project, "--json", "queues", "list"))}
    assert queues["held"]["pending"] == 0
    post("/actions/dlq/purge", confirm="yes")
    assert json.loads(ok(project, "--json", "dlq", "list")) == []


def test_read_only_serves_no_action(project: Path) -> None:
    with client_for(project, read_only=True) as client:
        for path in PAGES:
            page = client.get(path)
            assert page.status_code == 200
            assert 'method="post"' not in page.text and "/actions/" not in page.text
        task = dead_id(project)
        assert client.post("/actions/dlq/retry", data={"id": task}).status_code in (404, 405)
        assert client.get("/login").status_code == 404
        assert client.post("/login", data={"token": TOKEN}).status_code in (404, 405)
        assert task_status(project, task) == "dead"


def test_task_data_is_shown_as_text(client: TestClient, project: Path) -> None:
    task = dead_id(project)
    for path in ["/", "/tasks", "/dlq", "/history", f"/tasks/{task}"]:
        page = client.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert "\x1b" not in page and "\x07" not in page, path
    detail = client.get(f"/tasks/{task}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail  # shown, as text
    assert "\\x1b[2J" in detail  # the terminal escape, spelled out


def test_root_path_prefixes_every_link_and_form(project: Path) -> None:
    with client_for(project, root_path="/chronctl") as client:
        csrf = login(client, "/chronctl")
        for path in PAGES:
            page = client.get("/chronctl" + path).text
            targets = re.findall(r'(?:href|src|action)="([^"]*)"', page)
            assert targets, path
            for target in targets:
                assert target.startswith("/chronctl/"), (path, target)
        # An action returns to the page it came from, under the prefix.
        task = dead_id(project)
        done = client.post(
            "/chronctl/actions/dlq/retry",
            data={"id": task, "csrf": csrf, "next": "/chronctl/dlq"},
            follow_redirects=False,
        )
        assert done.headers["location"] == "/chronctl/dlq"
        assert task_status(project, task) == "pending"


def test_backend_password_never_shown(tmp_path: Path) -> None:
    ok_, why = postgres_reachable()
    need_service("PostgreSQL", ok_, why)
    # Trust authentication ignores the password: the URL connects and still holds one.
    secret = "s3cretPassw0rd"
    url = POSTGRES_URL.replace("postgresql://postgres@", f"postgresql://postgres:{secret}@")
    assert secret in url, "CHRONCTL_TEST_POSTGRES has a form this test does not know"
    url += ("&" if "?" in url else "?") + f"schema={postgres_schema()}"
    (tmp_path / "jobs.toml").write_text(manifest_text(f'backend = "{url}"'))
    ok(tmp_path, "enqueue", "fail")
    ok(tmp_path, "run", "--once")
    try:
        with client_for(tmp_path) as client:
            task = dead_id(tmp_path)
            login(client)
            for path in [*PAGES, f"/tasks/{task}", "/login", "/confirm/dlq-purge"]:
                page = client.get(path).text
                assert secret not in page, path
                assert "postgresql://" in client.get("/").text
    finally:
        from chronctl.backends import from_url
        from tests.conftest import forget_test_data

        async def drop() -> None:
            backend = from_url(url, base=tmp_path)
            await forget_test_data(backend)
            await backend.disconnect()

        asyncio.run(drop())


def test_core_install_imports_no_web_library() -> None:
    code = (
        "import sys, chronctl, chronctl.cli, chronctl.admin, chronctl.overview\n"
        "bad = [m for m in ('starlette', 'uvicorn', 'jinja2') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env(), cwd=ROOT)


def test_web_without_the_extra_says_so(tmp_path: Path) -> None:
    """No starlette importable (a meta path finder refuses it): one line, exit 2."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoWeb:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('starlette', 'uvicorn'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, NoWeb())\n"
    )
    (tmp_path / "jobs.toml").write_text(manifest_text('backend = "sqlite:///state.db"'))
    paths = f"{tmp_path}:{env()['PYTHONPATH']}"
    result = chronctl("web", cwd=tmp_path, extra_env={"PYTHONPATH": paths})
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "chronctl: chronctl web needs the web extra: pip install 'chronctl[web]'\n"
    )


def test_templates_and_static_files_ship_in_the_wheel() -> None:
    """Every file the app reads is matched by pyproject's package data (so `pip install .`,
    not only an editable install, has it)."""
    import fnmatch
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["chronctl.web"]
    package = ROOT / "chronctl" / "web"
    shipped = [p for p in package.rglob("*") if p.is_file() and p.suffix != ".pyc"]
    assets = [p.relative_to(package).as_posix() for p in shipped if p.suffix != ".py"]
    assert {"templates/base.html", "static/live.js", "static/style.css"} <= set(assets)
    for asset in assets:
        assert any(fnmatch.fnmatch(asset, g) for g in globs), asset


def test_web_refuses_bad_options_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "jobs.toml").write_text(manifest_text('backend = "sqlite:///state.db"'))
    (tmp_path / "short").write_text("abc\n")
    cases = {
        ("--token-file", "short"): "the token in short is too short: 16 characters at least",
        ("--token-file", "missing"): "cannot read --token-file missing: No such file or directory",
        ("--root-path", "chronctl/"): "--root-path must start with / and not end with one",
    }
    for args, message in cases.items():
        result = chronctl("web", *args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_on_loopback_only_loopback_host_names_are_answered(project: Path) -> None:
    """DNS rebinding: another site's name resolved to 127.0.0.1 gets no page."""
    from chronctl.web.app import LOOPBACK_NAMES

    with client_for(project, allowed_hosts=LOOPBACK_NAMES) as client:
        for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"]:
            assert client.get("/dlq", headers={"Host": host}).status_code == 200, host
        for host in ["evil.example", "evil.example:8080", "127.0.0.1.evil.example"]:
            response = client.get("/dlq", headers={"Host": host})
            assert response.status_code == 421, host
            assert "fail" not in response.text


def test_charts_count_runs_per_minute_and_hour(client: TestClient) -> None:
    from chronctl.models import Run
    from chronctl.web.app import charts

    page = client.get("/charts").text
    assert "1 not succeeded" in page and "Last hour" in page and "Last day" in page
    now = 1_000_000.0

    def run(ago: float, status: TaskStatus) -> Run:
        return Run("t", "j", "q", 0, status, now - ago - 1, now - ago)

    runs = [
        run(10, TaskStatus.SUCCEEDED),
        run(30, TaskStatus.DEAD),
        run(7300, TaskStatus.SUCCEEDED),
    ]
    hour, day = charts(runs, now, window=100)
    assert (hour.ok[-1], hour.failed[-1], sum(hour.ok), hour.partial) == (1, 1, 1, False)
    assert (day.ok[-1], day.failed[-1], day.ok[-3], sum(day.ok), day.peak) == (1, 1, 1, 2, 2)
    # A full window whose oldest run is inside the day: the day's counts are lower bounds.
    _, day = charts(runs, now, window=3)
    assert day.partial
