"""A custom backend written from the README: the ten core methods of
`examples/spool_backend.py`, installed as a plugin the way a package would be
(an entry point), runs `chronctl run` and `chronctl enqueue` end to end, and
the CLI names, in one line, what it cannot do."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from .helpers import ROOT, chronctl, one_error_line, poll, spawn

MANIFEST = f"""
[scheduler]
backend = "spool:///spool"
pythonpath = ["{ROOT}"]

[jobs.record]
entrypoint = "tests.cli.jobs_for_cli:record"
"""


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """What `pip install` of a package declaring the entry point leaves on sys.path."""
    site = tmp_path / "site"
    info = site / "spool_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spool-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[chronctl.backends]\nspool = examples.spool_backend:create\n"
    )
    return {"PYTHONPATH": f"{site}:{ROOT}"}


def test_a_custom_backend_runs_what_another_process_enqueues(
    tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    (tmp_path / "jobs.toml").write_text(MANIFEST)
    out = tmp_path / "runs.txt"
    worker = spawn("run", cwd=tmp_path, log=tmp_path / "run.log", extra_env=plugin_env)
    try:
        ids = []
        for token in ("one", "two", "three"):
            result = chronctl(
                "--json",
                "enqueue",
                "record",
                "--args",
                json.dumps([str(out), token]),
                cwd=tmp_path,
                extra_env=plugin_env,
            )
            assert result.returncode == 0, result.stderr
            ids.append(json.loads(result.stdout)["id"])
        poll(lambda: out.exists() and len(out.read_text().split()) == 3, what="three runs")
        assert sorted(out.read_text().split()) == ["one", "three", "two"]  # each exactly once
        poll(lambda: not list((tmp_path / "spool" / "running").iterdir()), what="acks")
        assert len(set(ids)) == 3
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, (tmp_path / "run.log").read_text()
    assert "Traceback" not in (tmp_path / "run.log").read_text()


@pytest.mark.parametrize(
    ("args", "capability"),
    [
        (["dlq", "list"], "task state (tasks, dlq and status)"),
        (["history"], "run history"),
        (["tasks", "list"], "task state (tasks, dlq and status)"),
        (["queues", "list"], "listing or pausing queues"),
    ],
)
def test_what_a_custom_backend_lacks_is_one_line(
    tmp_path: Path, plugin_env: dict[str, str], args: list[str], capability: str
) -> None:
    (tmp_path / "jobs.toml").write_text(MANIFEST)
    result = chronctl(*args, cwd=tmp_path, extra_env=plugin_env)
    assert result.returncode == 1
    assert one_error_line(result) == f"chronctl: spool:///spool does not support {capability}"


def test_jobs_with_a_trigger_are_refused_not_fired_twice(
    tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    (tmp_path / "jobs.toml").write_text(
        MANIFEST + '\n[jobs.tick]\ncommand = "true"\nevery = "1m"\n'
    )
    result = chronctl("run", "--once", cwd=tmp_path, extra_env=plugin_env)
    assert result.returncode == 1
    assert one_error_line(result) == (
        "chronctl: spool:///spool does not support job state and fire records, "
        "which cron, every and at jobs need"
    )
