"""What a job does can fail its own task, never the worker: a broken exception, a hung thread."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .helpers import ROOT, chronctl, poll, spawn


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


HANG_AND_ECHO = """
[jobs.hang]
entrypoint = "tests.cli.jobs_for_cli:hang"
max_retries = 0
{timeout}

[jobs.echo]
entrypoint = "tests.cli.jobs_for_cli:echo"
"""


def start_hung_run(
    project: Path, shutdown_timeout: str, timeout: str = ""
) -> tuple[subprocess.Popen[bytes], str]:
    """A one-slot `chronctl run` whose only thread is stuck in `hang`; and that task's id."""
    write_manifest(
        project,
        HANG_AND_ECHO.format(timeout=timeout),
        f'workers = 1\nshutdown_timeout = "{shutdown_timeout}"\n',
    )
    marker = project / "hung"
    hung = enqueue(project, "hang", "--args", json.dumps([str(marker)]))
    runner = spawn("run", cwd=project, log=project / "run.log")
    poll(marker.exists, what="the hung job to start")
    return runner, hung


def stopped_within(runner: subprocess.Popen[bytes], seconds: float) -> int:
    try:
        return runner.wait(seconds)
    except subprocess.TimeoutExpired:
        runner.kill()
        runner.wait()
        raise AssertionError(f"chronctl run did not stop within {seconds}s") from None


def test_a_timed_out_thread_frees_the_only_slot_and_never_blocks_the_stop(tmp_path: Path) -> None:
    runner, hung = start_hung_run(tmp_path, shutdown_timeout="5s", timeout='timeout = "1s"')
    try:
        poll(lambda: show(tmp_path, hung)["status"] == "dead", what="the hung run to time out")
        assert show(tmp_path, hung)["error"] == "timed out after 1s"
        # Its thread is still blocked, yet the one slot runs the next task.
        after = enqueue(tmp_path, "echo", "--args", '["after"]')
        poll(lambda: show(tmp_path, after)["status"] == "succeeded", what="a task after it")
        assert show(tmp_path, after)["result"] == "after"
        runner.send_signal(signal.SIGTERM)
        assert stopped_within(runner, 5 + 10) == 0
    finally:
        runner.kill()
        runner.wait()
    log = (tmp_path / "run.log").read_text()
    assert "job hang: its thread is still running after its 1s timeout" in log
    assert "chronctl stopped" in log


@pytest.mark.parametrize("signals", [1, 2], ids=["graceful", "second-signal"])
def test_a_stop_is_not_held_up_by_a_thread_that_never_returns(tmp_path: Path, signals: int) -> None:
    # Graceful: give up on it after shutdown_timeout; a second signal: at once.
    runner, hung = start_hung_run(tmp_path, shutdown_timeout="2s" if signals == 1 else "120s")
    try:
        runner.send_signal(signal.SIGTERM)
        if signals == 2:
            poll(
                lambda: "stopping gracefully" in (tmp_path / "run.log").read_text(),
                what="the first signal to be taken",
            )
            runner.send_signal(signal.SIGTERM)
        assert stopped_within(runner, 2 + 10) == 0
    finally:
        runner.kill()
        runner.wait()
    task = show(tmp_path, hung)  # handed back before the exit, no attempt counted
    assert (task["status"], task["attempt"]) == ("pending", 0)
    assert "returned 1 unfinished task(s) to the queue" in (tmp_path / "run.log").read_text()
