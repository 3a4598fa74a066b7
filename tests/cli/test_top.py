"""`chronctl top` through the console command (issue 19) on SQLite, Redis, PostgreSQL
and RabbitMQ: one frame (`--once`) with a running `chronctl run`, a paused queue with
a pending task, a running task against its timeout and a dead letter whose error
carries terminal escapes; 80x24 output that fits; NO_COLOR; `--json --once`; and the
live view on a pseudo-terminal, quit with q or Ctrl-C, the terminal put back."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    POSTGRES_URL,
    RABBITMQ_URL,
    REDIS_URL,
    need_rabbitmq,
    need_service,
    postgres_reachable,
    postgres_schema,
    redis_reachable,
    with_query,
)

from .helpers import ROOT, chronctl, command, env, one_error_line, poll, spawn

#: The dead letter's error: a screen clear, a window title and markup a web page would run.
NASTY = "\x1b[2J\x1b]0;pwned\x07<script>alert(1)</script>"


@pytest.fixture(params=["sqlite", "redis", "postgres", "rabbitmq"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The manifest's [scheduler] backend lines; what the test stored is dropped after."""
    kind = request.param
    if kind == "sqlite":
        yield 'backend = "sqlite:///state.db"'
        return
    if kind == "redis":
        ok, why = redis_reachable()
        need_service("Redis", ok, why)
        url = with_query(REDIS_URL, prefix=f"chronctl-test-{uuid.uuid4().hex[:10]}:")
        yield f'backend = "{url}"'
        _forget(url, tmp_path)
        return
    if kind == "postgres":
        ok, why = postgres_reachable()
        need_service("PostgreSQL", ok, why)
        url = with_query(POSTGRES_URL, schema=postgres_schema())
        yield f'backend = "{url}"'
        _forget(url, tmp_path)
        return
    need_rabbitmq()
    prefix = f"chronctl-test-{uuid.uuid4().hex[:10]}"
    amqp = with_query(RABBITMQ_URL, queue_name=prefix, exchange_name=prefix)
    yield f'backend = "{amqp}"\nstate = "sqlite:///state.db"'

    async def drop() -> None:
        from chronctl.backends import from_url
        from chronctl.backends.rabbitmq import RabbitMQBackend

        cleaner = RabbitMQBackend(
            RABBITMQ_URL, prefix, prefix, state=from_url("sqlite:///state.db", base=tmp_path)
        )
        await cleaner.connect()
        await cleaner.delete_layout(["default", "held"])
        await cleaner.disconnect()

    asyncio.run(drop())


def _forget(url: str, base: Path) -> None:
    from chronctl.backends import from_url
    from tests.conftest import forget_test_data

    async def drop() -> None:
        backend = from_url(url, base=base)
        await forget_test_data(backend)
        await backend.disconnect()

    asyncio.run(drop())


def write_manifest(project: Path, backend_lines: str) -> None:
    (project / "jobs.toml").write_text(
        f'[scheduler]\n{backend_lines}\npythonpath = ["{ROOT}"]\nshutdown_timeout = "1s"\n\n'
        '[defaults]\nretry_delay = "0s"\n\n'
        '[jobs.fail]\nentrypoint = "tests.cli.jobs_for_cli:fail"\nmax_retries = 0\n\n'
        '[jobs.echo]\nentrypoint = "tests.cli.jobs_for_cli:echo"\nqueue = "held"\n\n'
        '[jobs.slow]\ncommand = ["sleep", "60"]\ntimeout = "90s"\n\n'
        '[jobs.tick]\nentrypoint = "tests.cli.jobs_for_cli:echo"\nargs = ["x"]\nevery = "1h"\n'
    )


def ok(project: Path, *args: str) -> Any:
    result = chronctl(*args, cwd=project)
    assert result.returncode == 0, result.stderr
    return result.stdout


def snapshot(project: Path) -> dict[str, Any]:
    return json.loads(ok(project, "--json", "top", "--once"))


def test_top_once_on_each_backend(tmp_path: Path, store: str) -> None:
    write_manifest(tmp_path, store)
    ok(tmp_path, "enqueue", "fail", "--args", json.dumps([NASTY]))
    ok(tmp_path, "run", "--once")  # the failure, straight to the dead letters
    failed_at = time.time()
    ok(tmp_path, "pause", "--queue", "held")
    ok(tmp_path, "enqueue", "echo", "--args", "[1]")
    slow = ok(tmp_path, "enqueue", "slow").strip()
    runner = spawn("run", cwd=tmp_path, log=tmp_path / "run.log")
    try:

        def running() -> dict[str, Any] | None:
            seen = snapshot(tmp_path)
            mine = [p for p in seen["processes"] if p["pid"] == runner.pid]
            busy = mine and mine[0]["tasks_running"] == 1
            # A snapshot's reads are not one transaction: the queue counts may have
            # been read just before the worker claimed the task the listing shows.
            counted = {q["name"]: q["running"] for q in seen["queues"]}.get("default") == 1
            listed = [r["id"] for r in seen["running"]] == [slow]
            return seen if busy and listed and counted else None

        seen = poll(running, timeout=60, what="the runner's heartbeat and its running task")
        [process] = [p for p in seen["processes"] if p["pid"] == runner.pid]
        assert (process["state"], process["role"]) == ("alive", "all")
        queues = {q["name"]: q for q in seen["queues"]}
        assert (queues["held"]["pending"], queues["held"]["paused"]) == (1, True)
        assert queues["default"]["running"] == 1
        if time.time() - failed_at < 55:  # counted while it is under a minute old
            assert queues["default"]["finished_last_minute"] >= 1
            assert sum(queues["default"]["series"]) >= 1
        assert len(queues["default"]["series"]) == seen["throughput"]["rate_seconds"] * 2 / 5
        [run] = seen["running"]
        assert (run["job"], run["timeout"]) == ("slow", 90.0)
        [failure] = seen["failures"]
        assert (failure["job"], failure["status"]) == ("fail", "dead")
        assert NASTY in failure["error"]  # JSON carries it as stored, escaped by json
        assert seen["dead"] == 1 and seen["running_total"] == 1
        jobs = {j["name"]: j for j in seen["jobs"]}
        assert set(jobs) == {"fail", "echo", "slow", "tick"}
        assert jobs["fail"]["last_status"] == "failed" and jobs["tick"]["next_fire"]
        assert seen["unsupported"] == []

        small = chronctl("top", "--once", cwd=tmp_path, extra_env={"COLUMNS": "80", "LINES": "24"})
        assert small.returncode == 0, small.stderr
        frame = small.stdout
        lines = frame.splitlines()
        assert len(lines) <= 24, frame
        assert max(len(line) for line in lines) <= 80, frame
        assert "\x1b" not in frame and "\x07" not in frame
        assert "\\x1b[2J\\x1b]0;pwned\\x07<script>" in frame
        for word in ("held", "paused", "slow", "fail", "dead", "/1m30s", "alive", "tick"):
            assert word in frame, (word, frame)
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.wait(30)


SQLITE = 'backend = "sqlite:///state.db"'


def _plain_env(**extra: str) -> dict[str, str]:
    out = env()
    out.pop("NO_COLOR")
    return {**out, **extra}


def test_no_color_means_no_escape_sequences(tmp_path: Path) -> None:
    write_manifest(tmp_path, SQLITE)
    ok(tmp_path, "enqueue", "fail", "--args", json.dumps([NASTY]))
    ok(tmp_path, "run", "--once")

    def frame(**extra: str) -> str:
        result = subprocess.run(
            [*command(), "top", "--once"],
            cwd=tmp_path,
            env=_plain_env(**extra),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "\x1b[" in frame(FORCE_COLOR="1")  # a colour terminal gets styles...
    plain = frame(FORCE_COLOR="1", NO_COLOR="1")  # ...and none at all with NO_COLOR
    assert "\x1b" not in plain
    assert "\\x1b[2J" in plain and "dead" in plain


def test_tiny_terminal_keeps_every_line_inside_it(tmp_path: Path) -> None:
    write_manifest(tmp_path, SQLITE)
    for n in range(6):
        ok(tmp_path, "enqueue", "echo", "--args", f"[{n}]", "--queue", f"q{n}")
    result = chronctl("top", "--once", cwd=tmp_path, extra_env={"COLUMNS": "40", "LINES": "8"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) <= 8 and max(len(line) for line in lines) <= 40, result.stdout
    assert "more" in result.stdout  # rows left out are counted, not silently dropped
    # --json is one document even without --once: every queue, none cut to a terminal.
    seen = json.loads(ok(tmp_path, "--json", "top"))
    assert {q["name"]: q["pending"] for q in seen["queues"] if q["pending"]} == {
        f"q{n}": 1 for n in range(6)
    }


def test_jobs_panel_shows_runtime_schedules(tmp_path: Path) -> None:
    write_manifest(tmp_path, SQLITE)
    ok(tmp_path, "schedules", "add", "hourly-echo", "--job", "echo", "--every", "30m")
    seen = json.loads(ok(tmp_path, "--json", "top", "--once"))
    [view] = [j for j in seen["jobs"] if j["name"] == "hourly-echo"]
    assert (view["job"], view["source"], view["trigger"]) == ("echo", "runtime", "every 30m")
    assert [j["name"] for j in seen["jobs"]][:2] == ["hourly-echo", "tick"]  # soonest first
    frame = ok(tmp_path, "top", "--once")
    assert "every 30m, runs echo" in frame


def test_top_without_a_terminal_or_once_is_one_usage_line(tmp_path: Path) -> None:
    write_manifest(tmp_path, SQLITE)
    result = chronctl("top", cwd=tmp_path)
    assert result.returncode == 2
    assert one_error_line(result) == (
        "chronctl: `chronctl top` draws on a terminal; use --once for one frame"
    )


@pytest.mark.parametrize("key", [b"q", b"\x03"], ids=["q", "ctrl-c"])
def test_live_view_quits_on_a_key_and_puts_the_terminal_back(tmp_path: Path, key: bytes) -> None:
    """On a pseudo-terminal, as over ssh: frames redraw until q or Ctrl-C, exit 0, and
    the shell after it finds echo and line editing on again."""
    import pty

    write_manifest(tmp_path, SQLITE)
    ok(tmp_path, "enqueue", "echo", "--args", "[1]")
    chronctl_path = command()[0]
    # The shell traps INT (its child gets the default), so a Ctrl-C reaches `top` and
    # the shell carries on to report how it ended and the terminal settings after it.
    script = (
        "trap 'true' INT; stty sane rows 24 cols 80; "
        f"'{chronctl_path}' top --interval 0.2; echo rc=$?; stty -a"
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: a shell on the pseudo-terminal, 80x24
        os.chdir(tmp_path)
        os.environ.update(_plain_env(COLUMNS="80", LINES="24", TERM="xterm"))
        os.environ.pop("NO_COLOR", None)  # styled, as a colour terminal gets it
        os.execvp("sh", ["sh", "-c", script])
    output = b""

    def read_until(done: Callable[[bytes], bool], timeout: float = 30) -> None:
        nonlocal output
        deadline = time.monotonic() + timeout
        while not done(output):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; the terminal got {output[-2000:]!r}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the shell is gone and the pty closed
                    chunk = b""
                if not chunk:  # end of output: what was awaited is checked by the caller
                    return
                output += chunk

    try:
        read_until(lambda out: b"FAILURES" in out)
        assert b"FAILURES" in output, output[-2000:]
        first = output.count(b"chronctl top")
        read_until(lambda out: out.count(b"chronctl top") > first, timeout=10)  # redrawn
        os.write(fd, key)
        read_until(lambda out: False, timeout=30)  # to the end: the shell exits
    finally:
        status = _reap(pid)
        os.close(fd)
    text = output.decode(errors="replace")
    assert "rc=0" in text, text[-2000:]
    settings = text[text.index("rc=0") :].split()
    assert "echo" in settings and "icanon" in settings  # not -echo, -icanon
    assert os.waitstatus_to_exitcode(status) == 0


def _reap(pid: int, timeout: float = 10) -> int:
    """The shell's wait status; if it has not ended (the test failed before the key
    worked), its process group (the shell and `top`) is killed first, never left over."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.killpg(pid, signal.SIGKILL)  # pty.fork made the shell a session (and group) leader
    return os.waitpid(pid, 0)[1]


def test_an_unreachable_backend_is_one_line(tmp_path: Path) -> None:
    result = chronctl("--backend", "redis://:hunter2@127.0.0.1:1/0", "top", "--once", cwd=tmp_path)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "127.0.0.1:1" in line and "hunter2" not in line


def _crowded() -> Any:
    """A snapshot with more of everything than any terminal shows, task data hostile."""
    from chronctl.backends.base import QueueInfo
    from chronctl.models import Process, Task
    from chronctl.overview import (
        Failure,
        JobView,
        Overview,
        ProcessView,
        QueueView,
        RunningView,
    )

    now = time.time()
    return Overview(
        at=now,
        backend="redis://***@cache.internal:6379/0",
        processes=[
            ProcessView(
                Process(f"h{i}:1:x", f"host-{i}.example.com", 1000 + i, "all", now, now), "alive", i
            )
            for i in range(6)
        ],
        queues=[
            QueueView(QueueInfo(f"queue-{i}-{NASTY}", 10**i, i, i % 2 == 0), i, [i] * 24)
            for i in range(8)
        ],
        jobs=[
            JobView(f"job{i}{NASTY}", "j", "runtime", "every 1h", "UTC", None, i == 1, "dead", now)
            for i in range(20)
        ],
        jobs_total=40,
        running=[
            RunningView(Task(f"job{i}", queue=f"q{NASTY}", worker="w"), 65.0 * i, 600.0)
            for i in range(30)
        ],
        running_total=300,
        failures=[
            Failure(f"id{i}", f"job{i}", "q", "dead", 0, now - i, f"Boom{NASTY}\nsecond line")
            for i in range(10)
        ],
        dead=12345,
    )


@pytest.mark.parametrize("width", [20, 40, 80, 132])
@pytest.mark.parametrize("height", [3, 10, 24, 60])
def test_every_frame_fits_its_terminal(width: int, height: int) -> None:
    import io

    from rich.console import Console

    from chronctl.cli.top import SPARKS, Frame

    sink = io.StringIO()
    out = Console(file=sink, width=width, height=height, color_system=None, legacy_windows=False)
    out.print(Frame(_crowded(), height, None, SPARKS))
    lines = sink.getvalue().splitlines()
    assert len(lines) <= height
    assert max(len(line) for line in lines) <= width
    assert "\x1b" not in sink.getvalue() and "\x07" not in sink.getvalue()
    if height >= 24:
        assert "+" in sink.getvalue() and "more" in sink.getvalue()  # what was left out


def test_top_needs_no_manifest_with_backend(tmp_path: Path) -> None:
    write_manifest(tmp_path, SQLITE)
    ok(tmp_path, "enqueue", "echo", "--args", "[1]")
    (tmp_path / "jobs.toml").unlink()
    result = chronctl("--backend", "sqlite:///state.db", "--json", "top", "--once", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert [(q["name"], q["pending"]) for q in seen["queues"]] == [("held", 1)]
    assert seen["jobs"] == [] and seen["jobs_total"] == 0  # the jobs are the manifest's
