"""`chronctl run` as a real process: --once, graceful Ctrl-C, kill -9 recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path

from chronctl.backends.base import LEASE_EXPIRED_ERROR
from chronctl.backends.sqlite import SQLiteBackend
from chronctl.models import Task

from .helpers import ROOT, chronctl, poll, spawn


def manifest(tmp_path: Path, jobs: str, *, lease: str = "30s") -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(
        f'[scheduler]\nbackend = "sqlite:///state.db"\nlease = "{lease}"\n'
        f'pythonpath = ["{ROOT}"]\nshutdown_timeout = "5s"\n\n'
        '[defaults]\nretry_delay = "0s"\n\n' + jobs
    )
    return path


def enqueue(db: Path, *tasks: Task) -> None:
    async def go() -> None:
        async with SQLiteBackend(db) as backend:
            await backend.enqueue_many(list(tasks))

    asyncio.run(go())


def task_row(db: Path, task_id: str) -> sqlite3.Row | None:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()


def test_run_once_runs_due_tasks_and_exits(tmp_path: Path) -> None:
    path = manifest(
        tmp_path,
        '[jobs.echo]\nentrypoint = "tests.cli.jobs_for_cli:echo"\n\n'
        '[jobs.fail]\nentrypoint = "tests.cli.jobs_for_cli:fail"\n'
        'retry_delay = "1h"\n',
    )
    ok, bad = Task(job="echo", args=[{"n": 1}]), Task(job="fail", args=["nope"])
    later = Task(job="echo", args=[2], scheduled_at=4_000_000_000.0)
    chronctl("validate", str(path))  # creates nothing; the db comes with the first run
    db = tmp_path / "state.db"
    enqueue(db, ok, bad, later)
    assert os.stat(db).st_mode & 0o777 == 0o600
    result = chronctl("run", str(path), "--once", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ok_row, bad_row, later_row = (task_row(db, t.id) for t in (ok, bad, later))
    assert ok_row and (ok_row["status"], ok_row["result"]) == ("succeeded", '{"n":1}')
    assert bad_row and (bad_row["status"], bad_row["attempt"], bad_row["error"]) == (
        "pending",
        1,
        "RuntimeError: nope",
    )
    assert later_row and later_row["status"] == "pending"


def test_ctrl_c_stops_gracefully(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    path = manifest(
        tmp_path, f'[jobs.tick]\ncommand = ["sh", "-c", "echo tick >> {out}"]\nevery = "100ms"\n'
    )
    proc = spawn("run", str(path), cwd=tmp_path, log=tmp_path / "run.log")
    try:
        poll(lambda: out.exists() and len(out.read_text().splitlines()) >= 3, what="3 ticks")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "run.log").read_text()
    assert "stopping gracefully" in log and "chronctl stopped" in log
    assert "Traceback" not in log


def test_task_of_a_killed_worker_runs_again_after_restart(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = manifest(
        tmp_path, '[jobs.slow]\nentrypoint = "tests.cli.jobs_for_cli:crash_once"\n', lease="1s"
    )
    db = tmp_path / "state.db"
    victim = Task(job="slow", args=[str(marker)])
    enqueue(db, victim)
    first = spawn("run", str(path), cwd=tmp_path, log=tmp_path / "first.log")
    try:
        poll(marker.exists, what="the task to start")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    row = task_row(db, victim.id)
    assert row and row["status"] == "running"  # left behind by the dead worker

    second = spawn("run", str(path), cwd=tmp_path, log=tmp_path / "second.log")
    try:
        poll(
            lambda: (r := task_row(db, victim.id)) and r["status"] == "succeeded",
            what="the task to run again",
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0
    finally:
        if second.poll() is None:
            second.kill()
    row = task_row(db, victim.id)
    assert row and (row["result"], row["attempt"]) == ('"recovered"', 1)
    with sqlite3.connect(db) as conn:
        runs = conn.execute(
            "SELECT status, error FROM runs WHERE task_id = ? ORDER BY id", (victim.id,)
        ).fetchall()
    assert runs == [("failed", LEASE_EXPIRED_ERROR), ("succeeded", None)]


def test_an_idle_worker_runs_a_task_enqueued_by_another_process(tmp_path: Path) -> None:
    """`chronctl enqueue` in its own process reaches a `chronctl run` waiting for work
    (woken through the `-wal` file: inotify on Linux, a poll elsewhere)."""
    path = manifest(tmp_path, '[jobs.echo]\nentrypoint = "tests.cli.jobs_for_cli:echo"\n')
    log = tmp_path / "run.log"
    worker = spawn("run", str(path), cwd=tmp_path, log=log)
    try:
        poll(lambda: "chronctl running" in log.read_text(), what="the worker to start")
        result = chronctl("enqueue", "echo", "--args", '["hello"]', "-f", str(path), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        task_id = result.stdout.strip()
        poll(
            lambda: (r := task_row(tmp_path / "state.db", task_id)) and r["status"] == "succeeded",
            what="the enqueued task to run",
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    row = task_row(tmp_path / "state.db", task_id)
    assert row and row["result"] == '"hello"'
