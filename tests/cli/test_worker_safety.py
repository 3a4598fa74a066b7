"""What a job does can fail its own task, never the worker: a broken exception, a hung thread."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .helpers import ROOT, chronctl


def write_manifest(project: Path, body: str, scheduler: str = "") -> None:
    (project / "jobs.toml").write_text(
        f'[scheduler]\nbackend = "sqlite:///state.db"\npythonpath = ["{ROOT}"]\n{scheduler}\n'
        + body
    )


def enqueue(project: Path, job: str, *args: str) -> str:
    result = chronctl("--json", "enqueue", job, *args, cwd=project)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["id"])


def show(project: Path, task_id: str) -> dict[str, Any]:
    result = chronctl("--json", "tasks", "show", task_id, cwd=project)
    assert result.returncode == 0, result.stderr
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


def test_an_exception_whose_str_raises_is_recorded_as_that_tasks_failure(tmp_path: Path) -> None:
    write_manifest(
        tmp_path,
        """
[jobs.in_thread]
entrypoint = "tests.cli.jobs_for_cli:fail_unprintably"
max_retries = 0

[jobs.on_loop]
entrypoint = "tests.cli.jobs_for_cli:fail_unprintably_async"
max_retries = 0

[jobs.in_child]
entrypoint = "tests.cli.jobs_for_cli:fail_unprintably"
executor = "process"
max_retries = 0
""",
    )
    ids = {job: enqueue(tmp_path, job) for job in ("in_thread", "on_loop", "in_child")}
    ran = chronctl("run", "--once", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    for job, task_id in ids.items():
        task = show(tmp_path, task_id)
        assert (job, task["status"], task["attempt"]) == (job, "dead", 1)
        assert task["error"] == "Unprintable: <str() raised RuntimeError>", job
    assert "could not record the outcome" not in ran.stderr
