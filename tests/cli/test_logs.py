"""What `chronctl run` logs by default: one line per finished run, none lost on a clean stop.

A worker's log goes to a file or a pipe in batches (at most 0.2 s late); these
tests read it the way an operator does, from the pipe or the file.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from .helpers import ROOT, chronctl, poll, spawn

JOBS = f"""
[scheduler]
backend = "sqlite:///state.db"
pythonpath = ["{ROOT}"]
shutdown_timeout = "10s"

[jobs.echo]
entrypoint = "tests.cli.jobs_for_cli:echo"

[jobs.fail]
entrypoint = "tests.cli.jobs_for_cli:fail"
max_retries = 0
"""


def project(tmp_path: Path) -> Path:
    (tmp_path / "jobs.toml").write_text(JOBS)
    return tmp_path


def enqueue_echoes(where: Path, count: int, name: str = "tasks.jsonl") -> list[str]:
    """`count` echo tasks in one bulk enqueue; their ids."""
    lines = "".join(json.dumps({"job": "echo", "args": [i]}) + "\n" for i in range(count))
    (where / name).write_text(lines)
    result = chronctl("--json", "enqueue", "--from", name, cwd=where)
    assert result.returncode == 0, result.stderr
    return [t["id"] for t in json.loads(result.stdout)]


def task_lines(text: str, word: str) -> list[str]:
    return [ln for ln in text.splitlines() if f"chronctl.worker: {word} job=" in ln]


def test_default_level_logs_one_line_per_finished_run(tmp_path: Path) -> None:
    where = project(tmp_path)
    [ok] = enqueue_echoes(where, 1)
    failed = chronctl("--json", "enqueue", "fail", cwd=where)
    assert failed.returncode == 0, failed.stderr
    bad = json.loads(failed.stdout)["id"]

    result = chronctl("run", "--once", cwd=where)

    assert result.returncode == 0, result.stderr
    assert task_lines(result.stderr, "start") == []
    [good, dead] = sorted(task_lines(result.stderr, "end"), key=lambda ln: "job=fail" in ln)
    assert " INFO " in good and f"job=echo task={ok} attempt=0 duration=" in good
    assert good.endswith("status=succeeded")
    assert " WARNING " in dead and f"job=fail task={bad} attempt=0" in dead
    assert dead.endswith("status=dead error=RuntimeError: boom")


def test_verbose_adds_the_start_line(tmp_path: Path) -> None:
    where = project(tmp_path)
    [ok] = enqueue_echoes(where, 1)

    result = chronctl("-v", "run", "--once", cwd=where)

    assert result.returncode == 0, result.stderr
    [start] = task_lines(result.stderr, "start")
    assert " DEBUG " in start and start.endswith(f"start job=echo task={ok} attempt=0")
    assert len(task_lines(result.stderr, "end")) == 1


def test_quiet_logs_no_task_line(tmp_path: Path) -> None:
    where = project(tmp_path)
    enqueue_echoes(where, 3)

    result = chronctl("-q", "run", "--once", cwd=where)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_every_line_reaches_a_pipe_by_the_end_of_a_once_run(tmp_path: Path) -> None:
    where = project(tmp_path)
    ids = enqueue_echoes(where, 1500)  # more than one batch

    result = chronctl("run", "--once", cwd=where, timeout=120)

    assert result.returncode == 0, result.stderr
    ends = task_lines(result.stderr, "end")
    assert sorted(ln.split(" task=")[1].split()[0] for ln in ends) == sorted(ids)


def test_lines_reach_the_log_while_running_and_all_of_them_on_a_clean_stop(
    tmp_path: Path,
) -> None:
    where = project(tmp_path)
    log = where / "run.log"
    runner = spawn("run", cwd=where, log=log)
    try:
        [first] = enqueue_echoes(where, 1)
        # Batched, not held: the line arrives while the worker runs on, idle.
        poll(lambda: f"task={first} " in log.read_text(), what="the first task's line")
        more = enqueue_echoes(where, 200, "more.jsonl")
        poll(lambda: all_succeeded(where, more), what="the other tasks")
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(30) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
    text = log.read_text()
    assert len(task_lines(text, "end")) == 201
    assert text.rstrip().endswith("chronctl stopped")


def all_succeeded(where: Path, ids: list[str]) -> bool:
    listed = chronctl(
        "--json", "tasks", "list", "--status", "succeeded", "--limit", "100000", cwd=where
    )
    assert listed.returncode == 0, listed.stderr
    return set(ids) <= {t["id"] for t in json.loads(listed.stdout)}
