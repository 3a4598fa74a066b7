"""Input at the edges of what Python can parse: exit 2 in one line naming where, never
"unexpected error"; nothing stored."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .helpers import chronctl, one_error_line

HEADER = '[scheduler]\nbackend = "sqlite:///state.db"\n\n[jobs.echo]\ncommand = ["echo"]\n'
DEEP = 600  # past the 500 levels the issue names, and past what tomllib can recurse into


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "jobs.toml").write_text(HEADER)
    return tmp_path


def fails_with_2(result: object) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    line = one_error_line(result)  # type: ignore[arg-type]
    assert "unexpected error" not in line, line
    return line


def stored(project: Path) -> int:
    if not (project / "state.db").exists():
        return 0
    with sqlite3.connect(project / "state.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]


@pytest.mark.parametrize(
    ("job", "says"),
    [
        ('every = "99999999999d"', "jobs.toml:8: job 'x', key 'every': bad duration"),
        ("every = 1e300", "jobs.toml:8: job 'x', key 'every'"),
        ("jitter = \"99999999999d\"\ncron = '0 2 * * *'", "jobs.toml:8: job 'x', key 'jitter'"),
        ("max_retries = 99999999999999999999999", "jobs.toml:8: job 'x', key 'max_retries'"),
        ("max_retries = " + "9" * 4400, "jobs.toml:8: invalid TOML"),
        ("kwargs = {a = " + "[" * DEEP + "]" * DEEP + "}", "jobs.toml:8: invalid TOML"),
        ("args = [" + "[" * 150 + "]" * 150 + "]", "jobs.toml:8: job 'x', key 'args'"),
        ("at = 9999-12-31T23:59:59-12:00", "jobs.toml:8: job 'x', key 'at': bad date"),
    ],
)
def test_extreme_manifest_values_name_the_line(project: Path, job: str, says: str) -> None:
    (project / "jobs.toml").write_text(f'{HEADER}[jobs.x]\ncommand = ["true"]\n{job}\n')
    for command in ("validate", "jobs list"):
        line = fails_with_2(chronctl(*command.split(), cwd=project))
        assert says in line, line


def test_a_malformed_ipv6_backend_url_in_the_manifest(project: Path) -> None:
    (project / "jobs.toml").write_text('[scheduler]\nbackend = "redis://[::1"\n')
    line = fails_with_2(chronctl("validate", cwd=project))
    assert "jobs.toml:2: key 'backend': bad URL 'redis://[::1': Invalid IPv6 URL" in line


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--args", "[" + "9" * 4400 + "]", "bad JSON in --args: Exceeds the limit (4300 digits)"),
        ("--args", "[" * 30_000 + "]" * 30_000, "bad JSON in --args: nested too deeply"),
        ("--kwargs", '{"a": ' + "[" * DEEP + "]" * DEEP + "}", "--kwargs nests deeper than 100"),
        ("--in", "99999999999d", "bad --in '99999999999d': must be at most 100 years"),
        ("--at", "0001-01-01T00:00:00+14:00", "bad date '0001-01-01T00:00:00+14:00': out of range"),
    ],
)
def test_extreme_enqueue_options_name_the_option(
    project: Path, option: str, value: str, says: str
) -> None:
    line = fails_with_2(chronctl("enqueue", "echo", f"{option}={value}", cwd=project))
    assert says in line, line
    assert stored(project) == 0


@pytest.mark.parametrize(
    ("line2", "says"),
    [
        (b'{"job": "echo", "args": ["caf\xe9"]}', "jobs.jsonl:2: not UTF-8 text"),
        (b'{"args": [' + b"9" * 4400 + b"]}", "jobs.jsonl:2: bad JSON: Exceeds the limit"),
        (b'{"args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "jobs.jsonl:2: bad JSON: nested"),
        (
            b'{"args": ' + b"[" * DEEP + b"]" * DEEP + b"}",
            "jobs.jsonl:2: args nests deeper than 100",
        ),
        (b'{"key": ["not", "a", "string"]}', 'jobs.jsonl:2: "key" must be a string'),
        (b'{"in": "99999999999d"}', "jobs.jsonl:2: bad in '99999999999d'"),
    ],
)
def test_extreme_bulk_lines_name_the_line(project: Path, line2: bytes, says: str) -> None:
    bulk = project / "jobs.jsonl"
    bulk.write_bytes(b'{"job": "echo"}\n' + line2 + b"\n")
    line = fails_with_2(chronctl("enqueue", "echo", "--from", str(bulk), cwd=project))
    assert says in line, line
    assert stored(project) == 0


def test_an_unknown_job_argument_with_from_fails_even_when_lines_name_their_job(
    project: Path,
) -> None:
    bulk = project / "jobs.jsonl"
    bulk.write_text('{"job": "echo", "args": [1]}\n{"job": "echo", "args": [2]}\n')
    result = chronctl("enqueue", "ehco", "--from", str(bulk), cwd=project)
    assert result.returncode == 1, result.stderr
    assert "unknown job 'ehco'" in one_error_line(result)
    assert stored(project) == 0
    good = chronctl("--json", "enqueue", "echo", "--from", str(bulk), cwd=project)
    assert good.returncode == 0, good.stderr
    assert len(json.loads(good.stdout)) == 2 and stored(project) == 2


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 0 0 * *", "day of month 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 1-8", "day of week 8 is out of range 0-7"),
        ("0 0 * * MON-FRY", "day of week: unknown name 'FRY' (did you mean 'FRI'?)"),
        ("0 0 * SEPT *", "month: unknown name 'SEPT' (did you mean 'SEP'?)"),
        ("0 0 * * XYZ", "day of week: unknown name 'XYZ' (expected SUN-SAT)"),
        ("60 0 0 * * *", "second 60 is out of range 0-59"),
        ("*/0 * * * *", "minute: bad step '0' in '*/0' (expected a whole number from 1)"),
    ],
)
def test_cron_errors_name_the_field_and_its_range(project: Path, cron: str, says: str) -> None:
    (project / "jobs.toml").write_text(f'{HEADER}[jobs.x]\ncommand = ["true"]\ncron = "{cron}"\n')
    line = fails_with_2(chronctl("validate", cwd=project))
    assert line == f"chronctl: jobs.toml:8: job 'x', key 'cron': bad cron '{cron}': {says}"
