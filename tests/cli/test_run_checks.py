"""`chronctl run` checks what `validate` checks before it starts, and on every reload."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import pytest

from .helpers import ROOT, chronctl, one_error_line, poll, spawn

GOOD = f"""
[scheduler]
backend = "sqlite:///state.db"
pythonpath = ["{ROOT}"]
shutdown_timeout = "5s"

[jobs.echo]
entrypoint = "tests.cli.jobs_for_cli:echo"
"""
BROKEN = GOOD + '\n[jobs.ghost]\nentrypoint = "tests.cli.no_such_module:run"\n'


@pytest.mark.parametrize("mode", [[], ["--daemon"], ["--once"]])
def test_run_refuses_an_entrypoint_that_does_not_import(tmp_path: Path, mode: list[str]) -> None:
    (tmp_path / "jobs.toml").write_text(BROKEN)
    validate = chronctl("validate", cwd=tmp_path)
    try:
        result = chronctl("run", *mode, cwd=tmp_path, timeout=30)
    finally:
        with contextlib.suppress(OSError, ValueError):  # never leave a daemon behind
            os.kill(int((tmp_path / "chronctl.pid").read_text()), signal.SIGKILL)
    assert result.returncode == validate.returncode == 2, result.stderr
    line = one_error_line(result)
    assert line == one_error_line(validate)  # the same line validate prints
    assert "jobs.toml:11: job 'ghost', key 'entrypoint': cannot import" in line
    assert not (tmp_path / "chronctl.pid").exists() and not (tmp_path / "state.db").exists()


def test_a_reload_with_an_entrypoint_that_does_not_import_keeps_running(tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.toml"
    manifest.write_text(GOOD)
    log = tmp_path / "run.log"
    proc = spawn("run", cwd=tmp_path, log=log)
    try:
        poll(lambda: "chronctl running" in log.read_text(), what="the scheduler to start")
        manifest.write_text(BROKEN)
        os.kill(proc.pid, signal.SIGHUP)
        poll(lambda: "reload failed" in log.read_text(), what="the refused reload")
        text = log.read_text()
        assert "keeping the running configuration" in text and "cannot import" in text
        assert "reloaded" not in text
        made = chronctl("--json", "enqueue", "echo", "--args", '["still here"]', cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        task_id = json.loads(made.stdout)["id"]

        def finished() -> dict[str, object] | None:
            shown = json.loads(chronctl("--json", "tasks", "show", task_id, cwd=tmp_path).stdout)
            return shown if shown["status"] == "succeeded" else None

        assert poll(finished, what="a task after the refused reload")["result"] == "still here"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_run_once_says_one_line_when_nothing_was_due(tmp_path: Path) -> None:
    (tmp_path / "jobs.toml").write_text(GOOD)
    quiet = chronctl("run", "--once", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr  # cron mails any output
    told = chronctl("run", "--once", "-v", cwd=tmp_path)
    assert told.returncode == 0, told.stderr
    assert one_error_line(told).endswith(
        "run --once: nothing was due (no trigger fired, no task waiting)"
    )
    chronctl("enqueue", "echo", "--args", "[1]", cwd=tmp_path)
    busy = chronctl("-v", "run", "--once", cwd=tmp_path)
    assert "run --once: 0 fire(s), 1 task run(s)" in busy.stderr, busy.stderr
