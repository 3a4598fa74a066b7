"""An operator's first day, through the real `chronctl` command: what a task carries
never drives the terminal, typos are caught and named, deletions ask first on a
terminal, and a failed shell job shows its exit status and output."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from chronctl import Scheduler
from chronctl.backends.sqlite import SQLiteBackend
from chronctl.errors import UsageError
from chronctl.models import Task

from .helpers import ROOT, chronctl, command, env, one_error_line

#: An exception message a hostile or careless task could raise: set the window title,
#: turn the screen red, reverse the line (RLO), forge a second log line, and rich markup
#: (`[/]` alone crashed rich; `[bold]` restyled the table).
HOSTILE = "\x1b]0;pwned\x07\x1b[31mred\x9b2J [bold]loud[/] [/] \u202eevil\nforged line"


WIPE = "\\\\033[2Jwiped\\\\n"  # printf turns it into ESC [2J: "clear the screen"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "jobs.toml").write_text(f"""
[scheduler]
backend = "sqlite:///state.db"
pythonpath = ["{ROOT}"]

[defaults]
retry_delay = "0s"
max_retries = 0

[jobs.echo]
entrypoint = "tests.cli.jobs_for_cli:echo"

[jobs.fail]
entrypoint = "tests.cli.jobs_for_cli:fail"

[jobs.resize]
entrypoint = "tests.cli.jobs_for_cli:echo"
queue = "mail"

[jobs.backup]
command = [
    "sh", "-c", "echo dumping; printf '{WIPE}'; echo 'pg_dump: connection refused' >&2; exit 3",
]
""")
    return tmp_path


def ok(project: Path, *args: str) -> Any:
    result = chronctl("--json", *args, cwd=project)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def text(project: Path, *args: str) -> str:
    result = chronctl(*args, cwd=project)
    assert result.returncode == 0, result.stderr
    return result.stdout


def run_once(project: Path) -> str:
    """Run what is due; returns the text log (stderr)."""
    result = chronctl("run", "--once", cwd=project)
    assert result.returncode == 0, result.stderr
    return result.stderr


def raw_controls(output: str) -> list[str]:
    """Characters that would reach the terminal as controls (line breaks aside)."""
    return [c for c in output if unicodedata.category(c) in ("Cc", "Cf") and c not in "\n"]


def assert_terminal_safe(output: str) -> None:
    assert raw_controls(output) == [], output
    assert "\\x1b]0;pwned\\x07\\x1b[31mred\\x9b2J" in output, output
    assert "[bold]loud[/] [/]" in output  # markup printed literally, not interpreted
    assert "\\u202eevil" in output


def test_task_errors_are_escaped_in_every_listing_and_the_log(project: Path) -> None:
    task_id = ok(project, "enqueue", "fail", "--kwargs", json.dumps({"message": HOSTILE}))["id"]
    log = run_once(project)
    assert_terminal_safe(log)
    assert "\\nforged line" in log  # one log line per record: the newline is escaped too
    assert not any(line.startswith("forged line") for line in log.splitlines())

    for args in (
        ["dlq", "list"],
        ["history"],
        ["tasks", "list"],
        ["tasks", "show", task_id],
        ["dlq", "show", task_id],
    ):
        output = text(project, *args)
        assert raw_controls(output) == [], (args, output)
        assert "\\x1b]0;pwned" in output and "[bold]loud[/]" in output, (args, output)
    shown = text(project, "dlq", "show", task_id)
    assert "\\u202eevil\\nforged line" in shown  # the error row stays one line
    assert_terminal_safe(shown)
    # JSON stays exact: the consumer gets the very string the task raised.
    assert ok(project, "tasks", "show", task_id)["error"] == f"RuntimeError: {HOSTILE}"


def test_stored_queue_names_and_args_are_escaped(project: Path) -> None:
    """Data written before names were checked (or by another writer) prints safely."""
    hostile = "q\x1b[2J\u202e"

    async def store() -> str:
        async with SQLiteBackend(project / "state.db") as backend:
            task = Task(job="echo", queue=hostile, args=["\x1b[31m[red]x[/]"])
            await backend.enqueue(task)
            return task.id

    task_id = asyncio.run(store())
    for args in (["queues", "list"], ["tasks", "list"], ["tasks", "show", task_id]):
        output = text(project, *args)
        assert raw_controls(output) == [], (args, output)
        assert "q\\x1b[2J\\u202e" in output, (args, output)
    assert '"\\u001b[31m[red]x[/]"' in text(project, "tasks", "show", task_id)
    names = [q["name"] for q in ok(project, "queues", "list")]
    assert hostile in names  # --json: the exact name


def test_queue_names_are_checked_wherever_a_task_is_made(project: Path) -> None:
    for bad in ("mail\x1b[31m", "two words", "a,b", "x" * 201):
        error = one_error_line(chronctl("enqueue", "echo", "--queue", bad, cwd=project))
        assert "queue name" in error and "\x1b" not in error
    line = json.dumps({"job": "echo", "queue": "\x1b]0;t\x07"}) + "\n"
    result = chronctl("enqueue", "--from", "-", cwd=project, input=f'{{"job": "echo"}}\n{line}')
    assert result.returncode == 2 and "-:2: bad queue name '\\x1b]0;t\\x07'" in one_error_line(
        result
    )
    assert ok(project, "tasks", "list") == []  # all or nothing: the good line is not stored
    assert ok(project, "enqueue", "echo", "--queue", "mail.high:1")["created"]  # printable is fine

    manifest = project / "jobs.toml"
    manifest.write_text(
        manifest.read_text() + '\n[jobs.bad]\ncommand = ["true"]\nqueue = "q\\u001b"\n'
    )
    result = chronctl("validate", cwd=project)
    assert result.returncode == 2
    assert "job 'bad', key 'queue': bad queue name 'q\\x1b'" in one_error_line(result)


def test_the_python_api_checks_job_and_queue_names() -> None:
    scheduler = Scheduler()
    with pytest.raises(UsageError, match="bad queue name"):
        scheduler.job(queue="a\x1bb")(lambda: None)
    with pytest.raises(UsageError, match="bad job name"):
        scheduler.job("report\n2")(lambda: None)
    scheduler.job("report")(lambda: None)
    with pytest.raises(UsageError, match="bad queue name"):
        asyncio.run(scheduler.enqueue("report", queue="\u202eliam"))


def test_failed_shell_job_shows_exit_status_and_output_not_a_traceback(project: Path) -> None:
    task_id = ok(project, "enqueue", "backup")["id"]
    run_once(project)
    shown = text(project, "dlq", "show", task_id)
    assert "command exited with status 3: pg_dump: connection refused" in shown
    assert "traceback" not in shown.lower() and "chronctl/" not in shown and ".py" not in shown
    output = shown.split("output (tail)", 1)[1]
    assert output.split() == ["dumping", "\\x1b[2Jwiped", "pg_dump:", "connection", "refused"]
    assert raw_controls(shown) == []
    listed = {t["id"]: t for t in ok(project, "dlq", "list")}
    assert listed[task_id]["error"] == "command exited with status 3: pg_dump: connection refused"
    assert "status 3: pg_dump" in text(project, "history", "backup")


def test_typos_name_the_known_queues_and_jobs(project: Path) -> None:
    ok(project, "enqueue", "echo", "--queue", "reports")
    error = one_error_line(result := chronctl("pause", "--queue", "mial", cwd=project))
    assert result.returncode == 1
    assert error == (
        "chronctl: unknown queue 'mial': did you mean 'mail'? "
        "(known queues: default, mail, reports)"
    )
    assert [q for q in ok(project, "queues", "list") if q["paused"]] == []  # nothing paused
    result = chronctl("queues", "purge", "nosuchq", cwd=project)
    assert result.returncode == 1
    assert one_error_line(result) == (
        "chronctl: unknown queue 'nosuchq' (known queues: default, mail, reports)"
    )
    assert len(ok(project, "tasks", "list", "--status", "pending")) == 1  # nothing purged
    result = chronctl("enqueue", "resiz", cwd=project)
    assert result.returncode == 1
    assert one_error_line(result) == "chronctl: unknown job 'resiz' (did you mean 'resize'?)"
    result = chronctl("history", "nosuchjob", cwd=project)
    assert result.returncode == 1
    assert one_error_line(result) == "chronctl: unknown job 'nosuchjob'"
    assert "did you mean 'echo'" in one_error_line(chronctl("history", "ecoh", cwd=project))
    assert text(project, "history", "resize").strip() == "no finished runs"  # known, no runs yet
    assert ok(project, "pause", "--queue", "reports") == {"queue": "reports", "paused": True}


def test_queues_list_shows_the_manifests_queues_and_resumed_ones(project: Path) -> None:
    def listed() -> list[dict[str, Any]]:
        return ok(project, "queues", "list")

    zero = {"pending": 0, "running": 0, "paused": False, "max_pending": None}
    assert listed() == [{"name": "default", **zero}, {"name": "mail", **zero}]
    ok(project, "enqueue", "resize", "--args", "[1]")
    ok(project, "enqueue", "echo", "--args", "[2]", "--queue", "adhoc")
    assert [(q["name"], q["pending"]) for q in listed()] == [
        ("adhoc", 1),
        ("default", 0),
        ("mail", 1),
    ]
    run_once(project)
    # Finished: the manifest's queues stay at zero; an ad-hoc queue goes with its tasks.
    assert listed() == [{"name": "default", **zero}, {"name": "mail", **zero}]
    ok(project, "pause", "--queue", "mail")
    assert listed()[1] == {
        "name": "mail",
        "pending": 0,
        "running": 0,
        "paused": True,
        "max_pending": None,
    }
    ok(project, "resume", "--queue", "mail")
    assert listed()[1] == {"name": "mail", **zero}
    table = text(project, "queues", "list").splitlines()
    assert [line.split() for line in table] == [
        ["QUEUE", "PENDING", "RUNNING", "PAUSED"],
        ["default", "0", "0", "no"],
        ["mail", "0", "0", "no"],
    ]


def test_a_duplicate_key_prints_only_the_id_on_stdout(project: Path) -> None:
    first = chronctl("enqueue", "echo", "--key", "order-42", cwd=project)
    again = chronctl("enqueue", "echo", "--key", "order-42", cwd=project)
    assert first.returncode == again.returncode == 0
    assert first.stdout == again.stdout and len(first.stdout.strip()) == 24
    assert first.stderr == ""
    assert one_error_line(again) == (
        f"chronctl: key 'order-42' belongs to unfinished task {first.stdout.strip()}: "
        "nothing new enqueued"
    )


# -- destructive commands on a terminal -------------------------------------------


def on_terminal(project: Path, *args: str, answer: str | None) -> tuple[int, str, str]:
    """Run with stdin and stderr on a pseudo-terminal; answer the prompt if one comes.

    Returns (exit code, stdout, what the terminal showed). With `answer=None`
    no prompt is expected: the command must finish without reading stdin.
    """
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [*command(), *args],
        cwd=project,
        env=env(),
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None or select.select([master], [], [], 0)[0]:
            if time.monotonic() > deadline:
                raise AssertionError(f"no prompt and no exit; the terminal showed {seen!r}")
            if select.select([master], [], [], 0.1)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the child closed the terminal: it has exited
                    break
            if b"[y/N]" in seen and answer is not None:
                os.write(master, answer.encode() + b"\n")
                answer = None
        stdout, _ = proc.communicate(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stdout.decode(), seen.decode(errors="replace")


def dead_letters(project: Path, count: int) -> None:
    for i in range(count):
        ok(project, "enqueue", "fail", "--kwargs", json.dumps({"message": f"m{i}"}))
    run_once(project)
    assert len(ok(project, "dlq", "list")) == count


def test_purges_ask_on_a_terminal_and_delete_only_on_yes(project: Path) -> None:
    for _ in range(3):
        ok(project, "enqueue", "resize")
    code, out, shown = on_terminal(project, "queues", "purge", "mail", answer="n")
    assert code == 1 and out == ""
    assert "Delete the 3 pending task(s) of queue 'mail'? [y/N]" in shown
    assert "chronctl: aborted: nothing was deleted" in shown
    assert ok(project, "queues", "list")[1]["pending"] == 3
    code, out, shown = on_terminal(project, "queues", "purge", "mail", answer="y")
    assert (code, out) == (0, "purged 3 pending task(s) from 'mail'\n"), shown
    assert ok(project, "queues", "list")[1]["pending"] == 0

    dead_letters(project, 2)
    code, out, shown = on_terminal(project, "dlq", "purge", answer="")
    assert code == 1 and "Delete all 2 dead letter(s)? [y/N]" in shown
    assert len(ok(project, "dlq", "list")) == 2
    code, out, shown = on_terminal(project, "--json", "dlq", "purge", answer="yes")
    assert code == 0 and json.loads(out) == {"count": 2}  # the prompt stays off stdout


def test_purges_do_not_ask_with_yes_older_than_or_without_a_terminal(project: Path) -> None:
    dead_letters(project, 1)
    code, out, shown = on_terminal(project, "dlq", "purge", "--older-than", "1h", answer=None)
    assert (code, out) == (0, "purged 0 dead letter(s)\n") and "[y/N]" not in shown
    code, out, shown = on_terminal(project, "dlq", "purge", "--yes", answer=None)
    assert (code, out) == (0, "purged 1 dead letter(s)\n") and "[y/N]" not in shown
    ok(project, "enqueue", "resize")
    code, out, shown = on_terminal(project, "queues", "purge", "-y", "mail", answer=None)
    assert (code, out) == (0, "purged 1 pending task(s) from 'mail'\n") and "[y/N]" not in shown
    ok(project, "enqueue", "resize")
    piped = chronctl("queues", "purge", "mail", cwd=project, input="")  # stdin: a pipe
    assert piped.returncode == 0 and piped.stderr == ""
    assert piped.stdout == "purged 1 pending task(s) from 'mail'\n"
