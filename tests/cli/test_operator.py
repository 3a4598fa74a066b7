"""The operator commands through a real subprocess on SQLite: JSON shapes, exit codes."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from .helpers import ROOT, chronctl, one_error_line

TASK_KEYS = {
    "id",
    "job",
    "status",
    "queue",
    "priority",
    "attempt",
    "args",
    "kwargs",
    "scheduled_at",
    "started_at",
    "finished_at",
    "duration",
    "result",
    "error",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "jobs.toml").write_text(f"""
[scheduler]
backend = "sqlite:///state.db"
pythonpath = ["{ROOT}"]

[defaults]
retry_delay = "0s"

[jobs.echo]
entrypoint = "tests.cli.jobs_for_cli:echo"

[jobs.fail]
entrypoint = "tests.cli.jobs_for_cli:fail"
max_retries = 1

[jobs.nightly]
command = ["true"]
cron = "0 2 * * *"
""")
    return tmp_path


def ok(project: Path, *args: str, input: str | None = None) -> Any:
    """Run with --json, expect exit 0, return the parsed document."""
    result = chronctl("--json", *args, cwd=project, input=input)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def fails(project: Path, code: int, *args: str) -> str:
    result = chronctl(*args, cwd=project)
    assert result.returncode == code, (result.stdout, result.stderr)
    return one_error_line(result)


def db_count(project: Path, where: str = "1") -> int:
    with sqlite3.connect(project / "state.db") as conn:
        return conn.execute(f"SELECT COUNT(*) FROM tasks WHERE {where}").fetchone()[0]


def test_enqueue_prints_id_and_key_is_idempotent(project: Path) -> None:
    first = ok(
        project,
        "enqueue",
        "echo",
        "--args",
        '["a", 1]',
        "--kwargs",
        "{}",
        "--priority",
        "8",
        "--queue",
        "mail",
        "--key",
        "order-42",
    )
    assert set(first) == {"id", "created"} and first["created"] is True
    again = ok(project, "enqueue", "echo", "--args", '["other"]', "--key", "order-42")
    assert again == {"id": first["id"], "created": False}
    shown = ok(project, "tasks", "show", first["id"])
    assert set(shown) == TASK_KEYS
    assert (shown["args"], shown["priority"], shown["queue"], shown["status"]) == (
        ["a", 1],
        8,
        "mail",
        "pending",
    )
    plain = chronctl("enqueue", "echo", cwd=project)
    assert plain.returncode == 0 and len(plain.stdout.strip()) == 24


def test_enqueue_in_and_at_set_the_scheduled_time(project: Path) -> None:
    later = ok(project, "enqueue", "echo", "--in", "10m")
    at = ok(project, "enqueue", "echo", "--at", "2030-01-02T03:04:05+00:00")
    tasks = {t["id"]: t for t in ok(project, "tasks", "list")}
    delay = (
        datetime.fromisoformat(tasks[later["id"]]["scheduled_at"]).timestamp()
        - datetime.now().timestamp()
    )
    assert 500 < delay <= 600
    assert tasks[at["id"]]["scheduled_at"] == "2030-01-02T03:04:05+00:00"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["enqueue", "echo", "--args", "[1,"], 2, "bad JSON in --args"),
        (["enqueue", "echo", "--kwargs", "[1]"], 2, "--kwargs must be an object"),
        (["enqueue", "echo", "--in", "soon"], 2, "bad --in 'soon'"),
        (["enqueue", "echo", "--at", "tomorrow"], 2, "bad date 'tomorrow'"),
        (["enqueue", "nope"], 1, "unknown job 'nope'"),
        (["trigger", "nope"], 1, "unknown job 'nope'"),
        (["pause", "nope"], 1, "unknown job 'nope'"),
        (["tasks", "show", "0123"], 1, "task '0123' not found"),
        (["tasks", "cancel", "0123"], 1, "task '0123' not found"),
        (["dlq", "retry", "0123"], 1, "task '0123' not found"),
        (["tasks", "list", "--status", "done"], 2, "bad status 'done'"),
        (["cleanup", "--older-than", "a while"], 2, "bad --older-than"),
        (["--backend", "memory://", "tasks", "list"], 1, "cannot reach a memory:// backend"),
        (["--backend", "sqlite:////nonexistent/dir/x.db", "tasks", "list"], 1, "nonexistent"),
    ],
)
def test_user_errors_are_one_line_with_the_spec_exit_code(
    project: Path, args: list[str], code: int, message: str
) -> None:
    assert message in fails(project, code, *args)


def test_credentials_in_a_backend_url_are_never_printed(project: Path) -> None:
    for url in ("redis://admin:s3cret@127.0.0.1:1/0", "weird://admin:s3cret@host/x"):
        result = chronctl("--backend", url, "tasks", "list", cwd=project)
        assert result.returncode != 0
        assert "s3cret" not in result.stderr + result.stdout


def test_bulk_enqueue_then_watch_fail_retry_and_prune(project: Path) -> None:
    lines = [json.dumps({"job": "echo", "args": [i], "priority": i % 10}) for i in range(9_990)]
    lines += [json.dumps({"job": "fail", "kwargs": {"message": f"bad {i}"}}) for i in range(10)]
    bulk = project / "tasks.jsonl"
    bulk.write_text("\n".join(lines) + "\n")
    created = ok(project, "enqueue", "--from", str(bulk))
    assert len(created) == 10_000 and all(c["created"] for c in created)
    assert ok(project, "queues", "list") == [
        {"name": "default", "pending": 10_000, "running": 0, "paused": False, "max_pending": None}
    ]

    ran = chronctl("run", "--once", cwd=project, timeout=240)
    assert ran.returncode == 0, ran.stderr
    dead = ok(project, "dlq", "list", "--limit", "1000")
    assert len(dead) == 10 and {d["job"] for d in dead} == {"fail"}
    assert all(d["attempt"] == 2 and d["error"].startswith("RuntimeError: bad") for d in dead)
    assert set(dead[0]) == TASK_KEYS
    assert ok(project, "dlq", "show", dead[0]["id"])["status"] == "dead"

    assert ok(project, "dlq", "retry", dead[0]["id"]) == {"count": 1}
    assert ok(project, "dlq", "retry", "--all") == {"count": 9}
    retried = ok(project, "tasks", "show", dead[0]["id"])
    assert (retried["status"], retried["attempt"]) == ("pending", 0)
    runs = ok(project, "history", "fail", "--limit", "100")
    assert len(runs) == 20 and set(runs[0]) == TASK_KEYS  # earlier runs kept

    assert ok(project, "queues", "purge", "default") == {"count": 10}
    assert ok(project, "cleanup", "--older-than", "0s", "--status", "succeeded") == {"count": 9_990}
    assert db_count(project) == 0  # purged pending ones are deleted, not kept
    assert ok(project, "dlq", "purge") == {"count": 0}


def test_bulk_enqueue_with_a_bad_line_stores_nothing(project: Path) -> None:
    bulk = project / "tasks.jsonl"
    bulk.write_text('{"job": "echo"}\n{"job": "echo", "args": [1}\n')
    assert "tasks.jsonl:2: bad JSON" in fails(project, 2, "enqueue", "--from", str(bulk))
    bulk.write_text('{"job": "echo"}\n{"job": "ghost"}\n')
    assert "tasks.jsonl:2: unknown job 'ghost'" in fails(project, 1, "enqueue", "--from", str(bulk))
    bulk.write_text('{"job": "echo", "colour": "red"}\n')
    assert "unknown field 'colour'" in fails(project, 2, "enqueue", "--from", str(bulk))
    assert not (project / "state.db").exists() or db_count(project) == 0


def test_bulk_enqueue_from_stdin_with_default_job(project: Path) -> None:
    created = ok(project, "enqueue", "echo", "--from", "-", input='{"args": [1]}\n{}\n')
    assert len(created) == 2
    assert sorted(json.dumps(t["args"]) for t in ok(project, "tasks", "list")) == ["[1]", "[]"]


def test_tasks_list_filters_and_cancel(project: Path) -> None:
    a = ok(project, "enqueue", "echo", "--queue", "mail")["id"]
    b = ok(project, "enqueue", "fail")["id"]
    assert [t["id"] for t in ok(project, "tasks", "list", "--queue", "mail")] == [a]
    assert [t["id"] for t in ok(project, "tasks", "list", "--job", "fail")] == [b]
    assert len(ok(project, "tasks", "list", "--limit", "1")) == 1
    assert ok(project, "tasks", "cancel", a)["status"] == "cancelled"
    assert "already cancelled" in fails(project, 1, "tasks", "cancel", a)
    assert [t["id"] for t in ok(project, "tasks", "list", "--status", "pending")] == [b]
    table = chronctl("tasks", "list", cwd=project)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "JOB", "STATUS"]
    assert a in table.stdout and b in table.stdout


def test_trigger_pause_resume(project: Path) -> None:
    triggered = ok(project, "trigger", "nightly")
    assert triggered["created"] is True
    assert ok(project, "tasks", "show", triggered["id"])["job"] == "nightly"
    assert ok(project, "pause", "nightly") == {"job": "nightly", "paused": True}
    [nightly] = [j for j in ok(project, "jobs", "list") if j["name"] == "nightly"]
    assert nightly["paused"] is True and nightly["trigger"] == "cron 0 2 * * *"
    assert ok(project, "resume", "nightly") == {"job": "nightly", "paused": False}
    assert ok(project, "pause", "--queue", "default") == {"queue": "default", "paused": True}
    # A paused queue is not worked: --once leaves the task pending.
    assert chronctl("run", "--once", cwd=project).returncode == 0
    assert ok(project, "tasks", "show", triggered["id"])["status"] == "pending"
    assert ok(project, "queues", "list")[0]["paused"] is True
    ok(project, "resume", "--queue", "default")
    assert chronctl("run", "--once", cwd=project).returncode == 0
    assert ok(project, "tasks", "show", triggered["id"])["status"] == "succeeded"
    assert "give a JOB or --queue" in fails(project, 2, "pause")


def test_status_reads_the_backend(project: Path) -> None:
    ok(project, "enqueue", "echo")
    report = ok(project, "status")
    assert set(report) == {"running", "pid", "backend", "schedulers", "queues", "dead", "retention"}
    assert report["running"] is False and report["pid"] is None
    assert report["backend"].endswith("state.db") and report["dead"] == 0
    assert report["queues"] == [
        {"name": "default", "pending": 1, "running": 0, "paused": False, "max_pending": None}
    ]
    assert isinstance(report["schedulers"], list)


def test_migrate_copies_everything_once(project: Path, tmp_path: Path) -> None:
    ok(project, "enqueue", "fail")
    assert chronctl("run", "--once", cwd=project).returncode == 0  # 1 retry pending
    assert chronctl("run", "--once", cwd=project).returncode == 0  # now dead
    pending = ok(project, "enqueue", "echo", "--args", "[7]", "--in", "1h")["id"]
    ok(project, "pause", "nightly")
    target = f"sqlite:///{tmp_path / 'new.db'}"
    first = ok(project, "migrate", "--to", target)
    none = {"schedules": 0, "schedules_already_there": 0}
    assert first == {"tasks": 2, "runs": 2, "jobs": 1, "already_there": 0, **none}
    second = ok(project, "migrate", "--to", target)
    assert second == {"tasks": 0, "runs": 0, "jobs": 1, "already_there": 2, **none}
    moved = ok(project, "--backend", target, "tasks", "show", pending)
    assert (moved["args"], moved["status"]) == ([7], "pending")
    assert len(ok(project, "--backend", target, "dlq", "list")) == 1
    assert len(ok(project, "--backend", target, "history")) == 2
    jobs = {j["name"]: j for j in ok(project, "--backend", target, "jobs", "list")}
    assert jobs["nightly"]["paused"] is True
    assert "cannot migrate to memory://" in fails(project, 2, "migrate", "--to", "memory://")
