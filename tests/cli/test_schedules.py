"""`chronctl schedules ...` and `jobs reschedule` through the console command, on SQLite,
one process at a time: JSON shapes, exit codes, nothing stored by a refused command."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .helpers import ROOT, chronctl, one_error_line
from .test_arguments import complete

MANIFEST = f"""
[scheduler]
backend = "sqlite:///state.db"
pythonpath = ["{ROOT}"]

[defaults]
retry_delay = "0s"

[jobs.echo]
entrypoint = "tests.cli.jobs_for_cli:echo"

[jobs.record]
entrypoint = "tests.cli.jobs_for_cli:record"

[jobs.nightly]
command = ["true"]
cron = "0 2 * * *"
"""

SCHEDULE_KEYS = {
    "name",
    "job",
    "cron",
    "every",
    "at",
    "timezone",
    "args",
    "kwargs",
    "queue",
    "priority",
    "jitter",
    "override",
    "created",
    "updated",
}
VIEW_KEYS = {
    "name",
    "job",
    "source",
    "trigger",
    "timezone",
    "next_fire",
    "paused",
    "last_fire",
    "last_result",
    "orphaned",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "jobs.toml").write_text(MANIFEST)
    return tmp_path


def ok(project: Path, *args: str) -> Any:
    """Run with --json, expect exit 0, return the parsed document."""
    result = chronctl("--json", *args, cwd=project)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def fails(project: Path, code: int, *args: str) -> str:
    result = chronctl(*args, cwd=project)
    assert result.returncode == code, (result.stdout, result.stderr)
    return one_error_line(result)


def listed(project: Path) -> dict[str, dict[str, Any]]:
    rows = ok(project, "schedules", "list")
    for row in rows:
        assert set(row) == VIEW_KEYS
    return {row["name"]: row for row in rows}


def test_add_list_show_edit_remove_round_trip(project: Path) -> None:
    added = ok(
        project,
        "schedules",
        "add",
        "acme-report",
        "--job",
        "echo",
        "--cron",
        "0  9 * * MON-FRI",
        "--timezone",
        "Europe/Paris",
        "--kwargs",
        '{"value": {"customer": 42}}',
        "--queue",
        "reports",
        "--priority",
        "7",
        "--jitter",
        "30s",
    )
    assert set(added) == SCHEDULE_KEYS
    assert added["name"] == "acme-report" and added["job"] == "echo"
    assert added["cron"] == "0 9 * * MON-FRI"  # stored in its one canonical form
    assert (added["every"], added["at"], added["args"]) == (None, None, None)
    assert added["kwargs"] == {"value": {"customer": 42}}
    assert (added["queue"], added["priority"], added["jitter"]) == ("reports", 7, 30.0)
    assert added["override"] is False

    rows = listed(project)
    assert set(rows) == {"nightly", "acme-report"}  # echo and record have no trigger
    assert rows["nightly"]["source"] == "manifest"
    assert rows["nightly"]["trigger"] == "cron 0 2 * * *"
    row = rows["acme-report"]
    assert (row["source"], row["job"], row["orphaned"], row["paused"]) == (
        "runtime",
        "echo",
        False,
        False,
    )
    assert (row["trigger"], row["timezone"]) == ("cron 0 9 * * MON-FRI", "Europe/Paris")
    fire = datetime.fromisoformat(row["next_fire"])
    assert (fire.hour, fire.minute, fire.weekday() < 5) == (9, 0, True)
    assert fire.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert row["last_result"] is None and row["last_fire"] is None

    shown = ok(project, "schedules", "show", "acme-report")
    assert set(shown) == SCHEDULE_KEYS | VIEW_KEYS
    assert shown["kwargs"] == {"value": {"customer": 42}} and shown["source"] == "runtime"
    assert shown["next_fire"] == row["next_fire"]
    text = chronctl("schedules", "show", "acme-report", cwd=project)
    assert text.returncode == 0 and "cron 0 9 * * MON-FRI" in text.stdout
    table = chronctl("schedules", "list", cwd=project)
    assert table.returncode == 0 and "acme-report" in table.stdout and "runtime" in table.stdout

    edited = ok(project, "schedules", "edit", "acme-report", "--every", "2h", "--priority", "3")
    assert (edited["cron"], edited["every"], edited["priority"]) == (None, 7200.0, 3)
    assert edited["kwargs"] == {"value": {"customer": 42}}  # fields not given are kept
    assert edited["created"] == added["created"] and edited["updated"] >= added["updated"]
    assert listed(project)["acme-report"]["trigger"] == "every 2h"
    assert "nothing to change" in fails(project, 2, "schedules", "edit", "acme-report")

    removed = ok(project, "schedules", "remove", "acme-report")
    assert removed["name"] == "acme-report"
    assert set(listed(project)) == {"nightly"}
    assert "no schedule named 'acme-report'" in fails(
        project, 1, "schedules", "show", "acme-report"
    )
    assert "no schedule named 'acme-report'" in fails(
        project, 1, "schedules", "remove", "acme-report"
    )
    assert "no schedule named 'acme-report'" in fails(
        project, 1, "schedules", "edit", "acme-report", "--every", "1h"
    )


ADD = ["schedules", "add", "s1"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([*ADD, "--job", "nope", "--cron", "0 9 * * *"], 1, "unknown job 'nope'"),
        ([*ADD, "--job", "ehco", "--every", "1h"], 1, "did you mean 'echo'?"),
        ([*ADD, "--job", "echo", "--cron", "61 9 * * *"], 2, "minute 61 is out of range 0-59"),
        ([*ADD, "--job", "echo", "--cron", "0 9 * * FRY"], 2, "day of week"),
        (
            [*ADD, "--job", "echo", "--cron", "0 9 * * *", "--timezone", "Mars/Olympus"],
            2,
            "unknown timezone 'Mars/Olympus'",
        ),
        ([*ADD, "--job", "echo", "--every", "1h", "--kwargs", "[1,"], 2, "bad JSON in --kwargs"),
        ([*ADD, "--job", "echo", "--every", "1h", "--kwargs", "[1]"], 2, "--kwargs must be"),
        ([*ADD, "--job", "echo", "--every", "1h", "--args", '{"a": 1}'], 2, "--args must be"),
        ([*ADD, "--job", "echo"], 2, "give --cron, --every or --at"),
        ([*ADD, "--job", "echo", "--every", "1h", "--cron", "* * * * *"], 2, "give one of"),
        ([*ADD, "--job", "echo", "--every", "soon"], 2, "bad --every 'soon'"),
        ([*ADD, "--job", "echo", "--at", "tomorrow"], 2, "bad date 'tomorrow'"),
        ([*ADD, "--job", "echo", "--every", "1h", "--jitter", "lots"], 2, "bad --jitter"),
        ([*ADD, "--job", "echo", "--every", "1h", "--priority", "12"], 2, "--priority"),
        ([*ADD, "--job", "echo", "--every", "1h", "--queue", "a,b"], 2, "bad queue name"),
        (["schedules", "add", "a b", "--job", "echo", "--every", "1h"], 2, "bad schedule name"),
        (
            ["schedules", "add", "nightly", "--job", "echo", "--every", "1h"],
            2,
            "schedule 'nightly' already exists",
        ),
        (["schedules", "show", "nope"], 1, "no schedule named 'nope'"),
        (["schedules", "edit", "nope", "--every", "1h"], 1, "no schedule named 'nope'"),
        (["schedules", "edit", "nightly", "--every", "1h"], 1, "jobs reschedule nightly"),
        (["jobs", "reschedule", "nope", "--every", "1h"], 1, "unknown job 'nope'"),
        (["jobs", "reschedule", "nightly"], 2, "give --cron, --every or --at"),
        (["jobs", "reschedule", "nightly", "--reset", "--every", "1h"], 2, "--reset takes no"),
        (["jobs", "reschedule", "nightly", "--cron", "0 25 * * *"], 2, "hour 25"),
        (["pause", "nope"], 1, "unknown job 'nope'"),
        (["trigger", "nope"], 1, "unknown job 'nope'"),
        (["jobs", "next", "nope"], 1, "unknown job 'nope'"),
    ],
)
def test_refused_commands_are_one_line_and_store_nothing(
    project: Path, args: list[str], code: int, message: str
) -> None:
    assert message in fails(project, code, *args)
    rows = listed(project)
    assert set(rows) == {"nightly"} and rows["nightly"]["source"] == "manifest"


def test_a_taken_name_keeps_the_stored_schedule(project: Path) -> None:
    ok(project, "schedules", "add", "r", "--job", "echo", "--every", "1h", "--args", "[1]")
    line = fails(project, 2, "schedules", "add", "r", "--job", "echo", "--every", "5m")
    assert line == "chronctl: schedule 'r' already exists"
    assert ok(project, "schedules", "show", "r")["args"] == [1]
    assert listed(project)["r"]["trigger"] == "every 1h"


def test_reschedule_overrides_a_job_until_reset(project: Path) -> None:
    stored = ok(project, "jobs", "reschedule", "nightly", "--every", "30m")
    assert set(stored) == SCHEDULE_KEYS
    assert (stored["name"], stored["job"], stored["override"]) == ("nightly", "nightly", True)
    assert (stored["cron"], stored["every"]) == (None, 1800.0)

    jobs = {j["name"]: j for j in ok(project, "jobs", "list")}
    assert (jobs["nightly"]["trigger"], jobs["nightly"]["overridden"]) == ("every 30m", True)
    assert jobs["echo"]["overridden"] is False
    text = chronctl("jobs", "list", cwd=project)
    assert "every 30m (override)" in text.stdout
    row = listed(project)["nightly"]
    assert (row["source"], row["trigger"]) == ("override", "every 30m")
    fires = [datetime.fromisoformat(f) for f in ok(project, "jobs", "next", "nightly", "-n", "3")]
    assert [b - a for a, b in itertools.pairwise(fires)] == [timedelta(minutes=30)] * 2
    assert ok(project, "schedules", "show", "nightly")["source"] == "override"

    # Overrides are changed by `jobs reschedule`, not by the schedule commands.
    line = fails(project, 2, "schedules", "remove", "nightly")
    assert "jobs reschedule nightly --reset" in line
    assert "jobs reschedule nightly" in fails(project, 2, "schedules", "edit", "nightly")

    # A second reschedule replaces the trigger; the timezone alone keeps it.
    ok(project, "jobs", "reschedule", "nightly", "--cron", "15 3 * * *")
    zoned = ok(project, "jobs", "reschedule", "nightly", "--timezone", "Asia/Tokyo")
    assert (zoned["cron"], zoned["timezone"]) == ("15 3 * * *", "Asia/Tokyo")
    fire = datetime.fromisoformat(ok(project, "jobs", "next", "nightly", "-n", "1")[0])
    assert (fire.hour, fire.minute, fire.utcoffset()) == (3, 15, timedelta(hours=9))

    assert ok(project, "jobs", "reschedule", "nightly", "--reset") == {
        "job": "nightly",
        "reset": True,
    }
    jobs = {j["name"]: j for j in ok(project, "jobs", "list")}
    assert (jobs["nightly"]["trigger"], jobs["nightly"]["overridden"]) == (
        "cron 0 2 * * *",
        False,
    )
    assert listed(project)["nightly"]["source"] == "manifest"
    # Reset is idempotent: no override is already the manifest's trigger.
    assert ok(project, "jobs", "reschedule", "nightly", "--reset")["reset"] is False
    again = chronctl("jobs", "reschedule", "nightly", "--reset", cwd=project)
    assert again.returncode == 0 and "has no override" in again.stdout


def test_reschedule_gives_a_job_without_trigger_one(project: Path) -> None:
    ok(project, "jobs", "reschedule", "echo", "--cron", "*/5 * * * *")
    rows = listed(project)
    assert (rows["echo"]["source"], rows["echo"]["trigger"]) == ("override", "cron */5 * * * *")
    ok(project, "jobs", "reschedule", "echo", "--reset")
    assert "echo" not in listed(project)


def test_reschedule_of_a_runtime_schedule_edits_its_trigger(project: Path) -> None:
    ok(project, "schedules", "add", "r", "--job", "echo", "--every", "1h", "--args", "[1]")
    changed = ok(project, "jobs", "reschedule", "r", "--cron", "0 6 * * *")
    assert (changed["cron"], changed["every"], changed["args"]) == ("0 6 * * *", None, [1])
    assert changed["override"] is False
    assert "schedules remove r" in fails(project, 2, "jobs", "reschedule", "r", "--reset")


def test_pause_resume_trigger_and_next_take_a_schedule_name(project: Path) -> None:
    out = project / "out.txt"
    ok(
        project,
        "schedules",
        "add",
        "rec",
        "--job",
        "record",
        "--every",
        "6h",
        "--kwargs",
        json.dumps({"path": str(out), "token": "from-schedule"}),
        "--priority",
        "8",
    )
    assert ok(project, "pause", "rec") == {"schedule": "rec", "paused": True}
    assert listed(project)["rec"]["paused"] is True
    assert listed(project)["nightly"]["paused"] is False  # only the schedule's name
    text = chronctl("resume", "rec", cwd=project)
    assert text.returncode == 0 and text.stdout.strip() == "resumed schedule 'rec'"
    assert listed(project)["rec"]["paused"] is False

    fires = [datetime.fromisoformat(f) for f in ok(project, "jobs", "next", "rec", "-n", "3")]
    assert len(fires) == 3
    assert [b - a for a, b in itertools.pairwise(fires)] == [timedelta(hours=6)] * 2
    assert fires[0] == datetime.fromisoformat(listed(project)["rec"]["next_fire"])

    task_id = ok(project, "trigger", "rec")["id"]
    task = ok(project, "tasks", "show", task_id)
    assert (task["job"], task["priority"]) == ("record", 8)
    assert task["kwargs"] == {"path": str(out), "token": "from-schedule"}
    result = chronctl("run", "--once", cwd=project)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "from-schedule\n"
    assert ok(project, "tasks", "show", task_id)["status"] == "succeeded"


def test_last_result_is_the_newest_task_the_schedule_fired(project: Path) -> None:
    ok(project, "schedules", "add", "r", "--job", "echo", "--every", "1h", "--args", "[1]")
    assert listed(project)["r"]["last_result"] is None
    # A fired task carries the key NAME@FIRE_TIME; a task enqueued by hand does not count.
    ok(project, "enqueue", "echo", "--args", "[1]", "--key", "r@2026-01-01T00:00:00+00:00")
    ok(project, "enqueue", "echo", "--args", "[2]")
    rows = listed(project)
    assert rows["r"]["last_result"] == "pending"
    assert chronctl("run", "--once", cwd=project).returncode == 0
    assert listed(project)["r"]["last_result"] == "succeeded"
    assert ok(project, "schedules", "show", "r")["last_result"] == "succeeded"


def test_run_fires_a_due_schedule_with_its_arguments_unless_paused(project: Path) -> None:
    out = project / "out.txt"
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    kwargs = json.dumps({"path": str(out), "token": "fired"})
    for name in ("due", "held"):
        ok(project, "schedules", "add", name, "--job", "record", "--at", past, "--kwargs", kwargs)
    ok(project, "pause", "held")
    result = chronctl("run", "--once", cwd=project)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "fired\n"  # once: the paused schedule did not fire
    rows = listed(project)
    assert (rows["due"]["last_result"], rows["due"]["next_fire"]) == ("succeeded", None)
    assert rows["due"]["last_fire"] is not None
    assert rows["held"]["last_result"] is None and rows["held"]["paused"] is True


def test_a_schedule_whose_job_left_the_manifest_is_orphaned(project: Path) -> None:
    ok(project, "schedules", "add", "r", "--job", "echo", "--every", "1h")
    (project / "jobs.toml").write_text(MANIFEST.replace("[jobs.echo]", "[jobs.echo2]"))
    result = chronctl("--json", "schedules", "list", cwd=project)
    assert result.returncode == 0, result.stderr
    row = {r["name"]: r for r in json.loads(result.stdout)}["r"]
    assert (row["orphaned"], row["next_fire"], row["trigger"]) == (True, None, "every 1h")
    assert "never fire" in result.stderr and "r" in result.stderr
    assert "(orphaned)" in chronctl("schedules", "list", cwd=project).stdout
    assert "orphaned" in fails(project, 1, "trigger", "r")
    assert "orphaned" in fails(project, 1, "jobs", "next", "r")
    assert "edit it with --job" in fails(project, 1, "schedules", "edit", "r", "--every", "2h")
    # Still stored: it can be moved to a job the manifest has, or removed.
    moved = ok(project, "schedules", "edit", "r", "--job", "echo2")
    assert moved["job"] == "echo2"
    assert listed(project)["r"]["orphaned"] is False
    ok(project, "schedules", "remove", "r")


def test_migrate_copies_schedules_and_overrides_once(project: Path, tmp_path: Path) -> None:
    ok(project, "schedules", "add", "r", "--job", "echo", "--cron", "0 9 * * *", "--args", "[5]")
    ok(project, "jobs", "reschedule", "nightly", "--every", "45m")
    target = f"sqlite:///{tmp_path / 'new.db'}"
    first = ok(project, "migrate", "--to", target)
    assert (first["schedules"], first["schedules_already_there"]) == (2, 0)
    second = ok(project, "migrate", "--to", target)
    assert (second["schedules"], second["schedules_already_there"]) == (0, 2)
    moved = {r["name"]: r for r in ok(project, "--backend", target, "schedules", "list")}
    assert (moved["r"]["source"], moved["r"]["trigger"]) == ("runtime", "cron 0 9 * * *")
    assert (moved["nightly"]["source"], moved["nightly"]["trigger"]) == ("override", "every 45m")
    assert ok(project, "--backend", target, "schedules", "show", "r")["args"] == [5]
    text = chronctl("migrate", "--to", target, cwd=project)
    assert "2 schedule(s)" in text.stdout


def test_schedule_data_is_printed_safely(project: Path) -> None:
    ok(
        project,
        "schedules",
        "add",
        "r",
        "--job",
        "echo",
        "--every",
        "1h",
        "--kwargs",
        json.dumps({"value": "\x1b]0;owned\x07"}),
    )
    shown = chronctl("schedules", "show", "r", cwd=project)
    assert shown.returncode == 0 and "\x1b" not in shown.stdout and "owned" in shown.stdout


def test_completion_offers_schedule_names(project: Path) -> None:
    ok(project, "schedules", "add", "acme", "--job", "echo", "--every", "1h")
    ok(project, "jobs", "reschedule", "nightly", "--every", "2h")
    assert complete(project, "chronctl schedules show ") == ["acme", "nightly"]
    assert complete(project, "chronctl pause ") == ["acme", "echo", "nightly", "record"]
    assert complete(project, "chronctl jobs next ac") == ["acme"]
