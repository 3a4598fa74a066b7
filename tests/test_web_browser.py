"""`chronctl web` in a real browser (issue 19): headless Chromium driven by Playwright
against `chronctl web` and `chronctl run` started as an operator starts them, over a
SQLite manifest. A task enqueued with the CLI appears without a reload; a dead letter
retried with a click runs again and succeeds; a job is paused with a click; an action
without the session or its CSRF token is refused; with JavaScript off every page
reads and a form still acts; markup in task data shows as text
and never runs.

Chromium: $CHRONCTL_CHROMIUM, else `chromium` on PATH (Debian's package), else the
one `python -m playwright install chromium` downloads. Without any, the test skips
with that reason; one that does not start fails with CHRONCTL_REQUIRE_SERVICES=1.
CHRONCTL_WEB_SCREENSHOTS=DIR saves the README's screenshots there (docs/img)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_SERVICES

from .cli.helpers import ROOT, chronctl, poll, spawn

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NASTY = "\x1b]0;pwned\x07<script>alert(1)</script><img src=x onerror=alert(2)>"
TOKEN = "browser-test-token-0123456789"


def chromium_path() -> str | None:
    return (
        os.environ.get("CHRONCTL_CHROMIUM")
        or shutil.which("chromium")
        or (shutil.which("chromium-browser"))
    )


@pytest.fixture
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with playwright_api.sync_playwright() as pw:
        path = chromium_path()
        if path is None and not os.path.exists(pw.chromium.executable_path):
            # A browser is a tool, not a service: a machine without one skips this test
            # even in CI (whose .ci/run installs Debian's chromium where apt can).
            pytest.skip("no Chromium installed: apt-get install chromium")
        try:
            chromium = pw.chromium.launch(headless=True, executable_path=path)
        except Exception as exc:  # a browser that does not start: fails where CI requires
            message = f"no Chromium to drive ({type(exc).__name__}): apt-get install chromium"
            if REQUIRE_SERVICES:
                pytest.fail(f"{message} (CHRONCTL_REQUIRE_SERVICES=1)")
            pytest.skip(message)
        try:
            yield chromium
        finally:
            chromium.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ok(project: Path, *args: str) -> str:
    result = chronctl(*args, cwd=project)
    assert result.returncode == 0, result.stderr
    return result.stdout


def answering(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def test_dashboard_in_a_browser(tmp_path: Path, browser: Any) -> None:
    (tmp_path / "jobs.toml").write_text(
        f'[scheduler]\nbackend = "sqlite:///state.db"\npythonpath = ["{ROOT}"]\n'
        'shutdown_timeout = "1s"\n\n[defaults]\nretry_delay = "0s"\n\n'
        '[jobs.fail]\nentrypoint = "tests.cli.jobs_for_cli:fail"\nmax_retries = 0\n\n'
        # Fails until the file `ready` exists: retried after it is made, it succeeds.
        '[jobs.flaky]\ncommand = "test -e ready"\nmax_retries = 0\n\n'
        '[jobs.echo]\nentrypoint = "tests.cli.jobs_for_cli:echo"\n\n'
        '[jobs.tick]\nentrypoint = "tests.cli.jobs_for_cli:echo"\nargs = ["x"]\nevery = "1h"\n'
    )
    nasty = ok(tmp_path, "enqueue", "fail", "--args", json.dumps([NASTY])).strip()
    flaky = ok(tmp_path, "enqueue", "flaky").strip()
    ok(tmp_path, "run", "--once")
    dead = {t["id"] for t in json.loads(ok(tmp_path, "--json", "dlq", "list"))}
    assert dead == {nasty, flaky}

    (tmp_path / "token").write_text(TOKEN + "\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = spawn(
        "web", "--port", str(port), "--token-file", "token", cwd=tmp_path, log=tmp_path / "web.log"
    )
    worker = spawn("run", cwd=tmp_path, log=tmp_path / "run.log")
    dialogs: list[str] = []
    try:
        poll(lambda: answering(base + "/"), timeout=30, what="chronctl web answering")
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        # Live: a task enqueued with the CLI appears on the open page, no reload.
        page.goto(base + "/tasks")
        page.evaluate("window.__sameDocument = true")
        task = ok(tmp_path, "enqueue", "echo", "--args", "[42]").strip()
        page.locator(f"text={task}").wait_for(timeout=15_000)
        assert page.evaluate("window.__sameDocument") is True

        # Without a session the buttons are off, and a POST is refused.
        page.goto(base + "/dlq")
        assert page.locator(f"#dead-{flaky} button").is_disabled()
        refused = context.request.post(
            base + "/actions/dlq/retry", form={"id": flaky, "csrf": "guess"}
        )
        assert refused.status == 403

        # Log in with the token; a POST without the page's CSRF token is still refused.
        page.goto(f"{base}/login?token={TOKEN}")
        assert "logged in" in page.locator(".flash").inner_text()
        assert page.url == base + "/"
        forged = context.request.post(base + "/actions/dlq/retry", form={"id": flaky})
        assert forged.status == 403
        assert {t["id"] for t in json.loads(ok(tmp_path, "--json", "dlq", "list"))} == dead

        # Retry a dead letter with a click; the worker runs it, and this time it succeeds.
        (tmp_path / "ready").touch()
        page.goto(base + "/dlq")
        page.locator(f"#dead-{flaky} button", has_text="Retry").click()
        assert "retried 1 task(s)" in page.locator(".flash").inner_text()
        page.goto(f"{base}/tasks/{flaky}")
        page.locator(".st-succeeded").first.wait_for(timeout=30_000)  # live, no reload
        assert json.loads(ok(tmp_path, "--json", "tasks", "show", flaky))["status"] == "succeeded"

        # Pause a job with a click.
        page.goto(base + "/jobs")
        page.locator("#job-tick button", has_text="Pause").click()
        assert "paused 'tick'" in page.locator(".flash").inner_text()
        assert page.locator("#job-tick .paused").inner_text() == "yes"
        jobs = {j["name"]: j for j in json.loads(ok(tmp_path, "--json", "jobs", "list"))}
        assert jobs["tick"]["paused"] is True

        # Markup in task data is text: shown as written, never run.
        page.goto(f"{base}/tasks/{nasty}")
        error = page.locator("td.err").first.inner_text()
        assert "<script>alert(1)</script><img src=x onerror=alert(2)>" in error
        assert "\\x1b]0;pwned\\x07" in error
        assert page.locator("img").count() == 0
        assert page.locator("main script").count() == 0
        shots = os.environ.get("CHRONCTL_WEB_SCREENSHOTS")
        if shots:
            out = ROOT / shots
            out.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out / "web-task.png"), full_page=True)
            page.goto(base + "/")
            page.locator("text=Processes").wait_for()
            page.screenshot(path=str(out / "web-overview.png"), full_page=True)
        page.goto(base + "/")
        assert "<script>alert(1)</script>" in page.locator("main").inner_text()
        assert dialogs == []
        context.close()

        # JavaScript off: every page reads, and the forms still act (plain POSTs).
        plain = browser.new_context(java_script_enabled=False)
        page = plain.new_page()
        for path in ["/", "/jobs", "/queues", "/tasks", "/dlq", "/history", f"/tasks/{nasty}"]:
            response = page.goto(base + path)
            assert response is not None and response.status == 200, path
            assert page.locator("h2").count() >= 1, path
        page.goto(f"{base}/login?token={TOKEN}")
        page.goto(base + "/jobs")
        page.locator("#job-tick button", has_text="Resume").click()
        assert "resumed 'tick'" in page.locator(".flash").inner_text()
        plain.close()
    finally:
        stop(worker)
        stop(web)
    assert "Traceback" not in (tmp_path / "web.log").read_text()
