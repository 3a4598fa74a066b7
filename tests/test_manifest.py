"""The manifest: every key, defaults, paths, and errors that point at the line."""

from __future__ import annotations

import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chronctl.errors import ManifestError, UsageError
from chronctl.jobs import JobSpec, RetryPolicy
from chronctl.manifest import (
    Manifest,
    SchedulerConfig,
    check_commands,
    check_entrypoints,
    load_manifest,
    parse_manifest,
    resolve_backend,
)
from chronctl.triggers import CronTrigger, DateTrigger, IntervalTrigger

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "jobs.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str) -> Manifest:
    return load_manifest(write(tmp_path, text))


def error(tmp_path: Path, text: str) -> tuple[ManifestError, Path]:
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    return info.value, path


FULL = """\
[scheduler]
backend = "sqlite:///data/chronctl.db"
state = "sqlite:///state.db"
timezone = "Europe/Paris"
workers = 4
misfire_grace_time = "2m"
coalesce = false
shutdown_timeout = 45
lease = "1m"
pythonpath = [".", "src", "/opt/lib"]
pidfile = "run/chronctl.pid"
log_file = "/var/log/chronctl.log"
queues = ["default", "mail"]
prefetch = 0

[defaults]
queue = "work"
priority = 3
max_retries = 5
retry_backoff = "fixed"
retry_delay = "2s"
retry_max_delay = "5m"
timeout = "1h"
max_instances = 2
jitter = "1s"
executor = "thread"
misfire_grace_time = "10s"
coalesce = true
timezone = "Asia/Tokyo"
rate_limit = "5/m"

[jobs.everything]
entrypoint = "pkg.mod:func"
env = { A = "1" }
cwd = "work"
cron = "0 2 * * *"
timezone = "America/New_York"
args = [1, "two", [3], { four = 4 }]
kwargs = { retention_days = 30, nested = { ok = true } }
queue = "special"
priority = 9
max_retries = 0
retry_backoff = "exponential"
retry_delay = "500ms"
retry_max_delay = "1h"
timeout = 0
max_instances = 1
jitter = "30s"
rate_limit = "100/s"
executor = "async"
misfire_grace_time = "1h"
coalesce = false

[jobs.inherits]
command = ["/bin/echo", "hi"]
every = "6h30m"

[jobs.shell_string]
command = "sh -c 'echo \\"a b\\"' --flag"
at = "2026-12-24T18:00:00"
cwd = "/tmp"
"""


def test_every_key_is_parsed(tmp_path: Path) -> None:
    manifest = load(tmp_path, FULL)
    base = tmp_path.resolve()
    assert manifest.path == base / "jobs.toml"
    assert manifest.config == SchedulerConfig(
        backend=f"sqlite:///{base}/data/chronctl.db",
        state=f"sqlite:///{base}/state.db",
        timezone="Europe/Paris",
        workers=4,
        misfire_grace_time=120.0,
        coalesce=False,
        shutdown_timeout=45.0,
        lease=60.0,
        pythonpath=[str(base / "."), str(base / "src"), "/opt/lib"],
        pidfile=str(base / "run/chronctl.pid"),
        log_file="/var/log/chronctl.log",
        queues=["default", "mail"],
        prefetch=0,
    )
    assert list(manifest.jobs) == ["everything", "inherits", "shell_string"]
    job = manifest.jobs["everything"]
    assert job == JobSpec(
        name="everything",
        entrypoint="pkg.mod:func",
        env={"A": "1"},
        cwd=str(base / "work"),
        trigger=CronTrigger("0 2 * * *", "America/New_York"),
        timezone="America/New_York",
        queue="special",
        priority=9,
        retry=RetryPolicy(max_retries=0, backoff="exponential", delay=0.5, max_delay=3600.0),
        timeout=None,  # 0 = no limit
        args=[1, "two", [3], {"four": 4}],
        kwargs={"retention_days": 30, "nested": {"ok": True}},
        max_instances=1,
        jitter=30.0,
        rate_limit=(100, 1.0),
        executor="async",
        misfire_grace_time=3600.0,
        coalesce=False,
        pythonpath=manifest.config.pythonpath,
    )
    assert isinstance(job.retry, RetryPolicy)


def test_defaults_apply_unless_overridden(tmp_path: Path) -> None:
    manifest = load(tmp_path, FULL)
    job = manifest.jobs["inherits"]
    assert job.command == ["/bin/echo", "hi"]
    assert job.entrypoint is None and job.is_shell
    assert job.trigger == IntervalTrigger(23400.0)
    assert job.trigger.anchor == 0.0  # set by the scheduler
    assert job.timezone == "Asia/Tokyo"  # [defaults] wins over [scheduler]
    assert job.queue == "work"
    assert job.priority == 3
    assert job.retry == RetryPolicy(max_retries=5, backoff="fixed", delay=2.0, max_delay=300.0)
    assert job.timeout == 3600.0
    assert job.max_instances == 2
    assert job.jitter == 1.0
    assert job.executor == "thread"
    assert job.misfire_grace_time == 10.0
    assert job.coalesce is True
    assert job.rate_limit == (5, 60.0)
    assert job.pythonpath == manifest.config.pythonpath
    assert job.pythonpath is not manifest.config.pythonpath  # a copy per job
    assert job.env == {} and job.args == [] and job.kwargs == {} and job.cwd is None


def test_command_string_is_a_shell_line(tmp_path: Path) -> None:
    job = load(tmp_path, FULL).jobs["shell_string"]
    assert job.command == "sh -c 'echo \"a b\"' --flag"
    # $0 is the job's name; task args are $1, $2, ..., never part of the line.
    assert job.argv(["x; rm -rf /"]) == [
        "/bin/sh",
        "-c",
        job.command,
        "shell_string",
        "x; rm -rf /",
    ]
    assert load(tmp_path, FULL).jobs["inherits"].argv(["a b"]) == ["/bin/echo", "hi", "a b"]
    assert job.cwd == "/tmp"
    # `at` without offset is in the job's timezone (here the [defaults] one).
    assert isinstance(job.trigger, DateTrigger)
    assert job.trigger.when == datetime(2026, 12, 24, 9, tzinfo=UTC)


def test_built_in_defaults(tmp_path: Path) -> None:
    manifest = load(tmp_path, '[jobs.a]\nentrypoint = "m:f"\n')
    base = tmp_path.resolve()
    assert manifest.config == SchedulerConfig(
        backend=f"sqlite:///{base}/chronctl.db",
        pythonpath=[str(base / ".")],
        pidfile=str(base / "chronctl.pid"),
        log_file=str(base / "chronctl.log"),
    )
    assert manifest.config.backend.startswith("sqlite:////")
    job = manifest.jobs["a"]
    assert job == JobSpec(name="a", entrypoint="m:f", timeout=600.0, pythonpath=[str(base / ".")])
    assert job.trigger is None and job.max_instances is None
    assert job.effective_max_instances is None


def test_scheduler_timezone_is_the_job_default(tmp_path: Path) -> None:
    manifest = load(
        tmp_path,
        '[scheduler]\ntimezone = "America/New_York"\n'
        '[jobs.a]\nentrypoint = "m:f"\ncron = "0 2 * * *"\n',
    )
    job = manifest.jobs["a"]
    assert job.timezone == "America/New_York"
    assert job.trigger == CronTrigger("0 2 * * *", "America/New_York")
    assert job.effective_max_instances == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///rel.db", "sqlite:///{base}/rel.db"),
        ("sqlite:///sub/dir/x.db", "sqlite:///{base}/sub/dir/x.db"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("memory://", "memory://"),
        ("redis://user:pw@host:6379/0", "redis://user:pw@host:6379/0"),
        ("amqp://guest:guest@localhost:5672/", "amqp://guest:guest@localhost:5672/"),
    ],
)
def test_backend_urls(tmp_path: Path, url: str, expected: str) -> None:
    manifest = load(tmp_path, f'[scheduler]\nbackend = "{url}"\n')
    assert manifest.config.backend == expected.format(base=tmp_path.resolve())


def test_state_url_and_relative_manifest_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf", '[scheduler]\nstate = "sqlite:///s.db"\npidfile = "p.pid"\n')
    monkeypatch.chdir(tmp_path)
    manifest = load_manifest("conf/jobs.toml")
    conf = tmp_path.resolve() / "conf"
    assert manifest.path == conf / "jobs.toml"
    assert manifest.config.state == f"sqlite:///{conf}/s.db"
    assert manifest.config.pidfile == str(conf / "p.pid")
    assert manifest.config.backend == f"sqlite:///{conf}/chronctl.db"


def test_parse_without_a_file_uses_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = parse_manifest('[jobs.a]\ncommand = ["true"]\ncwd = "w"\n')
    assert manifest.path is None
    assert manifest.jobs["a"].cwd == str(Path.cwd() / "w")
    assert manifest.config.pythonpath == [str(Path.cwd() / ".")]


def test_empty_manifest_and_queues_as_string(tmp_path: Path) -> None:
    assert load(tmp_path, "").jobs == {}
    manifest = load(tmp_path, '[scheduler]\nqueues = "a, b"\npythonpath = "/x"\n')
    assert manifest.config.queues == ["a", "b"]
    assert manifest.config.pythonpath == ["/x"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("100/s", (100, 1.0)),
        ("10/m", (10, 60.0)),
        ("5/h", (5, 3600.0)),
        ("1/d", (1, 86400.0)),
        ("10/30s", (10, 30.0)),
        ("3 / 2m", (3, 120.0)),
        ("7/min", (7, 60.0)),
    ],
)
def test_rate_limits(tmp_path: Path, spec: str, expected: tuple[int, float]) -> None:
    manifest = load(tmp_path, f'[jobs.a]\nentrypoint = "m:f"\nrate_limit = "{spec}"\n')
    assert manifest.jobs["a"].rate_limit == expected


def test_native_toml_datetimes_for_at(tmp_path: Path) -> None:
    manifest = load(
        tmp_path,
        """\
        [jobs.offset]
        command = ["true"]
        at = 2026-12-24T18:00:00+01:00

        [jobs.local]
        command = ["true"]
        timezone = "America/New_York"
        at = 2026-12-24T18:00:00

        [jobs.zulu]
        command = ["true"]
        at = 2026-12-24T18:00:00Z

        [jobs.date_only]
        command = ["true"]
        at = 2026-12-24

        [jobs.string_offset]
        command = ["true"]
        at = "2026-12-24T18:00:00-05:00"
    """,
    )
    when = {
        name: job.trigger.when
        for name, job in manifest.jobs.items()
        if isinstance(job.trigger, DateTrigger)
    }
    assert when == {
        "offset": datetime(2026, 12, 24, 17, tzinfo=UTC),
        "local": datetime(2026, 12, 24, 23, tzinfo=UTC),
        "zulu": datetime(2026, 12, 24, 18, tzinfo=UTC),
        "date_only": datetime(2026, 12, 24, tzinfo=UTC),
        "string_offset": datetime(2026, 12, 24, 23, tzinfo=UTC),
    }
    assert manifest.jobs["local"].trigger.next_fire(  # type: ignore[union-attr]
        datetime(2026, 1, 1, tzinfo=UTC)
    ) == datetime(2026, 12, 24, 23, tzinfo=UTC)


def test_inline_job_tables_and_quoted_names(tmp_path: Path) -> None:
    manifest = load(
        tmp_path,
        """\
        [jobs]
        a = { command = "true", every = 90 }
        "b.c-d" = { entrypoint = "m:f" }
    """,
    )
    assert manifest.jobs["a"].trigger == IntervalTrigger(90.0)
    assert "b.c-d" in manifest.jobs


# -- errors ---------------------------------------------------------------------


def test_syntax_error_has_file_and_line(tmp_path: Path) -> None:
    exc, path = error(tmp_path, '[scheduler]\nworkers = 2\n\n[jobs.a\nentrypoint = "m:f"\n')
    assert exc.path == str(path) and exc.line == 4
    assert str(exc).startswith(f"{path}:4: invalid TOML: ")
    assert "(at line" not in str(exc)
    assert isinstance(exc, UsageError) and exc.exit_code == 2


def test_syntax_error_at_end_of_document(tmp_path: Path) -> None:
    exc, _ = error(tmp_path, '[jobs.a]\nentrypoint = "m:f\n')
    assert exc.line == 2 and "invalid TOML" in str(exc)
    exc, _ = error(tmp_path, '[jobs.a]\nentrypoint = "m:f"\nentrypoint = "m:g"\n')
    assert exc.line is not None and "invalid TOML" in exc.message


@pytest.mark.parametrize(
    ("text", "line", "job", "key", "hint"),
    [
        ('[jobs.a]\nentrypoint = "m:f"\nretries = 3\n', 3, "a", "retries", "max_retries"),
        ('[jobs.a]\nentrypoint = "m:f"\n\ncrn = "* * * * *"\n', 4, "a", "crn", "cron"),
        ('[jobs.a]\nentrypoint = "m:f"\ntimezon = "UTC"\n', 3, "a", "timezon", "timezone"),
        ('[jobs.a]\nentrypoint = "m:f"\nxyzzy = 1\n', 3, "a", "xyzzy", None),
        ("[scheduler]\nworker = 3\n", 2, None, "worker", "workers"),
        ('[scheduler]\nbackened = "memory://"\n', 2, None, "backened", "backend"),
        ("[defaults]\nprority = 3\n", 2, None, "prority", "priority"),
        ("[defaults]\n\nmax_retry = 3\n", 3, None, "max_retry", "max_retries"),
    ],
)
def test_unknown_keys_suggest_the_closest(
    tmp_path: Path, text: str, line: int, job: str | None, key: str, hint: str | None
) -> None:
    exc, path = error(tmp_path, text)
    assert (exc.path, exc.line, exc.job, exc.key, exc.hint) == (str(path), line, job, key, hint)
    assert "unknown key" in exc.message
    rendered = str(exc)
    assert rendered.startswith(f"{path}:{line}: ")
    if hint:
        assert rendered.endswith(f"(did you mean '{hint}'?)")
    if job:
        assert f"job '{job}', key '{key}'" in rendered


def test_retries_typo_renders_one_clear_line(tmp_path: Path) -> None:
    exc, path = error(tmp_path, '[jobs.a]\nentrypoint = "m:f"\nretries = 3\n')
    assert str(exc) == (
        f"{path}:3: job 'a', key 'retries': unknown key (did you mean 'max_retries'?)"
    )
    assert "\n" not in str(exc)


def test_unknown_key_in_the_right_job(tmp_path: Path) -> None:
    exc, _ = error(
        tmp_path,
        """\
        [jobs.a]
        entrypoint = "m:f"
        crn = "x"

        [jobs.b]
        entrypoint = "m:f"
        crn = "x"
    """,
    )
    assert (exc.job, exc.line) == ("a", 3)
    exc, _ = error(
        tmp_path,
        """\
        [jobs.a]
        entrypoint = "m:f"
        cron = "* * * * *"

        [jobs.b]
        entrypoint = "m:f"
        cron = "61 * * * *"
    """,
    )
    assert (exc.job, exc.key, exc.line) == ("b", "cron", 7)


def test_unknown_top_level(tmp_path: Path) -> None:
    exc, _ = error(tmp_path, '[scheduler]\nworkers = 1\n\n[job.a]\nentrypoint = "m:f"\n')
    assert (exc.line, exc.hint) == (4, "jobs")
    assert "unknown table [job]" in str(exc)
    exc, _ = error(tmp_path, '[defaults]\nqueue = "q"\n[schedule]\nworkers = 1\n')
    assert (exc.line, exc.hint) == (3, "scheduler")
    exc, _ = error(tmp_path, 'backend = "memory://"\n')
    assert (exc.line, exc.key) == (1, "backend")
    assert "[scheduler]" in exc.message
    exc, _ = error(tmp_path, "jobs = 1\n")
    assert (exc.line, exc.key) == (1, "jobs")


def test_job_only_keys_are_not_defaults(tmp_path: Path) -> None:
    exc, _ = error(tmp_path, '[defaults]\ncron = "* * * * *"\n')
    assert (exc.line, exc.key) == (2, "cron")
    assert "cannot be a default" in exc.message


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ("entrypoint = 3", "entrypoint", "expected a string"),
        ('entrypoint = "no_colon"', "entrypoint", "package.module:function"),
        ('entrypoint = "m:"', "entrypoint", "package.module:function"),
        ("command = []", "command", "must name a program"),
        ('command = ["ls", 3]', "command", "array of strings"),
        ("command = 5", "command", "array of strings or a string"),
        ('command = "  "', "command", "must name a program"),
        ('command = ["ls"]\nshell = "/bin/bash"', "shell", "string command only"),
        ('entrypoint = "m:f"\nshell = "/bin/bash"', "shell", "string command only"),
        ('command = ["ls"]\nenv = { A = 1 }', "env", "must be a string"),
        ('command = ["ls"]\nenv = ["A=1"]', "env", "table of strings"),
        ('command = ["ls"]\ncwd = 1', "cwd", "expected a string"),
        ('command = ["ls"]\npriority = 10', "priority", "between 0 and 9"),
        ('command = ["ls"]\npriority = "high"', "priority", "expected an integer"),
        ('command = ["ls"]\npriority = true', "priority", "expected an integer"),
        ('command = ["ls"]\nmax_retries = -1', "max_retries", "at least 0"),
        ('command = ["ls"]\nmax_retries = 1.5', "max_retries", "expected an integer"),
        ('command = ["ls"]\nmax_instances = 0', "max_instances", "at least 1"),
        ('command = ["ls"]\nretry_backoff = "linear"', "retry_backoff", "'exponential'"),
        ('command = ["ls"]\nretry_delay = "soon"', "retry_delay", "bad duration"),
        ('command = ["ls"]\ntimeout = "-1s"', "timeout", "bad duration"),
        ('command = ["ls"]\ntimeout = inf', "timeout", "finite"),
        ('command = ["ls"]\njitter = [1]', "jitter", "expected a duration"),
        ('command = ["ls"]\nexecutor = "fork"', "executor", "'process'"),
        ('command = ["ls"]\ncoalesce = "yes"', "coalesce", "true or false"),
        ('command = ["ls"]\nqueue = ""', "queue", "must not be empty"),
        ('command = ["ls"]\nrate_limit = "fast"', "rate_limit", "bad rate limit"),
        ('command = ["ls"]\nrate_limit = "0/s"', "rate_limit", "at least 1"),
        ('command = ["ls"]\nrate_limit = "5/0s"', "rate_limit", "positive"),
        ('command = ["ls"]\nrate_limit = "5/fortnight"', "rate_limit", "bad rate limit"),
        ('command = ["ls"]\nargs = { a = 1 }', "args", "expected an array"),
        ('command = ["ls"]\nargs = [1979-05-27T07:32:00Z]', "args", "JSON values only"),
        ('command = ["ls"]\nkwargs = [1]', "kwargs", "expected a table"),
        ('command = ["ls"]\nkwargs = { x = nan }', "kwargs", "JSON values only"),
        ('command = ["ls"]\ncron = "61 * * * *"', "cron", "bad cron '61 * * * *'"),
        ('command = ["ls"]\ncron = "0 0 30 2 *"', "cron", "never fires"),
        ('command = ["ls"]\ncron = "@weird"', "cron", "bad cron '@weird'"),
        ('command = ["ls"]\ncron = 5', "cron", "expected a string"),
        ('command = ["ls"]\nevery = "soon"', "every", "bad duration"),
        ('command = ["ls"]\nevery = 0', "every", "positive"),
        ('command = ["ls"]\nat = "tomorrow"', "at", "bad date 'tomorrow'"),
        ('command = ["ls"]\nat = 12:00:00', "at", "expected a date and time"),
        (
            'command = ["ls"]\ntimezone = "Mars/Olympus"',
            "timezone",
            "unknown timezone 'Mars/Olympus'",
        ),
        (
            'command = ["ls"]\ncron = "* * * * *"\ntimezone = "Mars/Olympus"',
            "timezone",
            "unknown timezone",
        ),
    ],
)
def test_bad_values_name_job_key_and_line(
    tmp_path: Path, body: str, key: str, fragment: str
) -> None:
    text = f"[scheduler]\nworkers = 2\n\n[jobs.j]\n{body}\n"
    exc, path = error(tmp_path, text)
    lines = text.splitlines()
    expected_line = next(
        i for i, line in enumerate(lines, 1) if i > 4 and line.startswith(f"{key} =")
    )
    assert (exc.path, exc.line, exc.job, exc.key) == (str(path), expected_line, "j", key)
    assert fragment in exc.message
    assert str(exc).startswith(f"{path}:{expected_line}: job 'j', key '{key}': ")


def test_value_typos_get_suggestions(tmp_path: Path) -> None:
    exc, _ = error(tmp_path, '[jobs.j]\ncommand = ["ls"]\nretry_backoff = "fixd"\n')
    assert exc.hint == "fixed"
    exc, _ = error(tmp_path, '[jobs.j]\ncommand = ["ls"]\ntimezone = "America/New_Yrok"\n')
    assert exc.hint == "America/New_York"
    exc, _ = error(tmp_path, '[scheduler]\nbackend = "sqllite:///x.db"\n')
    assert (exc.key, exc.line, exc.hint) == ("backend", 2, "sqlite://")


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ("workers = 0", "workers", "at least 1"),
        ('workers = "many"', "workers", "expected an integer"),
        ("lease = 0", "lease", "positive"),
        ('lease = "forever"', "lease", "bad duration"),
        ("misfire_grace_time = -5", "misfire_grace_time", "negative"),
        ("coalesce = 1", "coalesce", "true or false"),
        ('timezone = "Nowhere/Land"', "timezone", "unknown timezone"),
        ('backend = "mysql://db"', "backend", "unknown URL scheme"),
        ('backend = "chronctl.db"', "backend", "bad URL"),
        ('backend = "sqlite://rel.db"', "backend", "sqlite:///relative.db"),
        ('state = "amqp://host"', "state", "unknown URL scheme"),
        ("pythonpath = [1]", "pythonpath", "non-empty strings"),
        ("pidfile = 3", "pidfile", "expected a string"),
        ("queues = 3", "queues", "array of strings"),
        ("prefetch = -1", "prefetch", "at least 0"),
    ],
)
def test_bad_scheduler_values(tmp_path: Path, body: str, key: str, fragment: str) -> None:
    exc, path = error(tmp_path, f"# comment\n[scheduler]\n{body}\n")
    assert (exc.path, exc.line, exc.job, exc.key) == (str(path), 3, None, key)
    assert fragment in exc.message


def test_bad_default_values(tmp_path: Path) -> None:
    exc, _ = error(tmp_path, '[defaults]\nqueue = "q"\npriority = 12\n')
    assert (exc.line, exc.job, exc.key) == (3, None, "priority")
    exc, _ = error(tmp_path, '[defaults]\ntimezone = "Mars/Olympus"\n[jobs.a]\ncommand="ls"\n')
    assert (exc.line, exc.key) == (2, "timezone")


def test_entrypoint_and_command_together(tmp_path: Path) -> None:
    exc, _ = error(tmp_path, '[jobs.both]\nentrypoint = "m:f"\ncommand = ["ls"]\n')
    assert (exc.line, exc.job, exc.key) == (3, "both", "command")
    assert "both 'entrypoint' and 'command'" in str(exc)


def test_neither_entrypoint_nor_command(tmp_path: Path) -> None:
    exc, path = error(tmp_path, '[scheduler]\nworkers = 1\n\n[jobs.empty]\ncron = "@daily"\n')
    assert (exc.path, exc.line, exc.job, exc.key) == (str(path), 4, "empty", None)
    assert str(exc).startswith(f"{path}:4: job 'empty': needs 'entrypoint'")


def test_more_than_one_trigger(tmp_path: Path) -> None:
    exc, _ = error(tmp_path, '[jobs.t]\nentrypoint = "m:f"\ncron = "@daily"\nevery = "1h"\n')
    assert (exc.line, exc.job, exc.key) == (4, "t", "every")
    assert "'cron' and 'every'" in exc.message and "at most one trigger" in exc.message
    exc, _ = error(
        tmp_path, '[jobs.t]\nentrypoint = "m:f"\nat = 2026-01-01T00:00:00\ncron = "@daily"\n'
    )
    assert (exc.line, exc.key) == (4, "cron")


def test_process_executor_refused_for_a_command(tmp_path: Path) -> None:
    exc, _ = error(tmp_path, '[jobs.s]\ncommand = ["ls"]\nexecutor = "process"\n')
    assert (exc.line, exc.job, exc.key) == (3, "s", "executor")
    exc, _ = error(tmp_path, '[defaults]\nexecutor = "process"\n[jobs.s]\ncommand = ["ls"]\n')
    assert (exc.line, exc.job, exc.key) == (4, "s", "command")


def test_bad_job_names_and_shapes(tmp_path: Path) -> None:
    exc, _ = error(tmp_path, '[jobs."has space"]\ncommand = ["ls"]\n')
    assert (exc.line, exc.job) == (1, "has space")
    assert "bad job name" in exc.message
    exc, _ = error(tmp_path, "[jobs]\nbroken = 3\n")
    assert (exc.line, exc.job) == (2, "broken")
    assert "must be a table" in exc.message


def test_inline_job_errors_point_at_the_job_line(tmp_path: Path) -> None:
    exc, _ = error(
        tmp_path, '[jobs]\nok = { command = "true" }\nbad = { command = "true", crn = "x" }\n'
    )
    assert (exc.line, exc.job, exc.key, exc.hint) == (3, "bad", "crn", "cron")


def test_header_variants_are_found(tmp_path: Path) -> None:
    exc, _ = error(
        tmp_path, '[ jobs . "x" ]   # spaced and quoted\ncommand = ["ls"]\npriority = 99\n'
    )
    assert (exc.line, exc.job, exc.key) == (3, "x", "priority")


def test_load_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ManifestError) as info:
        load_manifest(missing)
    assert str(info.value).startswith(f"{missing}: ") and "not found" in str(info.value)
    with pytest.raises(ManifestError, match="directory"):
        load_manifest(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ManifestError, match="UTF-8"):
        load_manifest(binary)


def test_parse_without_path_still_gives_lines() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest('[jobs.a]\ncommand = ["ls"]\nretries = 1\n')
    assert info.value.path is None and info.value.line == 3
    assert str(info.value).startswith("job 'a', key 'retries'")


# -- entrypoints ----------------------------------------------------------------


def test_check_entrypoints_reports_instead_of_raising(tmp_path: Path) -> None:
    pkg = tmp_path / "ep_pkg_for_manifest_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tasks.py").write_text("def good():\n    return 1\n\nNOT_CALLABLE = 3\n")
    path = write(
        tmp_path,
        """\
        [jobs.good]
        entrypoint = "ep_pkg_for_manifest_test.tasks:good"

        [jobs.missing_module]
        entrypoint = "ep_pkg_for_manifest_test.nope:good"

        [jobs.missing_attr]
        entrypoint = "ep_pkg_for_manifest_test.tasks:bad"

        [jobs.not_callable]
        entrypoint = "ep_pkg_for_manifest_test.tasks:NOT_CALLABLE"

        [jobs.shell]
        command = ["true"]
    """,
    )
    try:
        manifest = load_manifest(path)
        errors = check_entrypoints(manifest)
        assert [(e.job, e.key, e.line) for e in errors] == [
            ("missing_module", "entrypoint", 5),
            ("missing_attr", "entrypoint", 8),
            ("not_callable", "entrypoint", 11),
        ]
        assert all(e.path == str(path) for e in errors)
        assert "cannot import" in errors[0].message
        assert "no attribute" in errors[1].message
        assert "not callable" in errors[2].message
        assert manifest.jobs["good"].func is not None
        assert manifest.jobs["good"].func() == 1
    finally:
        for name in [m for m in sys.modules if m.startswith("ep_pkg_for_manifest_test")]:
            del sys.modules[name]
        while str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))


# -- the shipped example ----------------------------------------------------------


def test_example_manifest() -> None:
    example = ROOT / "jobs.example.toml"
    if not example.exists():
        pytest.skip("jobs.example.toml not shipped yet")
    manifest = load_manifest(example)
    assert manifest.jobs
    for job in manifest.jobs.values():
        assert (job.entrypoint is None) != (job.command is None)
        assert job.pythonpath == manifest.config.pythonpath
    assert check_entrypoints(manifest) == []


def test_check_commands_asks_the_shell(tmp_path: Path) -> None:
    manifest = load(
        tmp_path,
        """
        [jobs.ok]
        command = "pg_dump db > /tmp/db.sql && echo done"

        [jobs.quote]
        command = "echo 'unbalanced"

        [jobs.nosh]
        command = "echo hi"
        shell = "/no/such/shell"

        [jobs.list]
        command = ["echo", "'unbalanced"]

        [jobs.bash]
        shell = "bash"
        command = "[[ -n x ]] && echo ("
        """,
    )
    errors = {e.job: e for e in check_commands(manifest)}
    assert set(errors) == {"quote", "nosh", "bash"}
    assert (errors["bash"].key, errors["bash"].line) == ("command", 17)
    assert (errors["quote"].key, errors["quote"].line) == ("command", 6)
    assert "shell syntax error: Unterminated quoted string" in errors["quote"].message
    assert (errors["nosh"].key, errors["nosh"].line) == ("shell", 10)
    assert "'/no/such/shell' not found" in errors["nosh"].message


def test_on_failure_in_defaults(tmp_path: Path) -> None:
    jobs = load(
        tmp_path,
        """
        [defaults]
        on_failure = "alert"

        [jobs.backup]
        command = "backup"

        [jobs.quiet]
        command = "noisy"
        on_failure = ""

        [jobs.alert]
        command = "mail ops"
        """,
    ).jobs
    assert jobs["backup"].on_failure == "alert"
    assert jobs["quiet"].on_failure is None  # opted out
    assert jobs["alert"].on_failure is None  # not its own alert


def test_on_failure_naming_itself_in_the_job_points_at_the_key(tmp_path: Path) -> None:
    exc, _ = error(tmp_path, '[jobs.a]\ncommand = "x"\n\non_failure = "a"\n')
    assert (exc.line, exc.key) == (4, "on_failure")
    assert "cannot name the job itself" in exc.message


def test_one_backend_resolution_for_run_and_state_commands(tmp_path: Path) -> None:
    """`--backend` is relative to the current directory, the manifest's URL to the
    manifest; a RabbitMQ broker named either way keeps its state in the manifest's
    `state` store (state commands used to fall back to ./chronctl.db with --backend)."""
    from chronctl.admin import open_backend

    path = write(
        tmp_path,
        """
        [scheduler]
        backend = "amqp://guest:guest@127.0.0.1:5672/"
        state = "sqlite:///state.db"

        [jobs.a]
        command = ["true"]
        """,
    )
    manifest = load_manifest(path)
    for backend in (
        resolve_backend(manifest),
        resolve_backend(manifest, "amqp://guest:guest@127.0.0.1:5672/other"),
        open_backend(path, "amqp://guest:guest@127.0.0.1:5672/other", "tasks list", manifest),
    ):
        assert backend.state.db_path == tmp_path / "state.db"  # type: ignore[attr-defined]
    assert resolve_backend(None, "sqlite:///here.db").db_path == Path.cwd() / "here.db"  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="no backend"):
        resolve_backend(None)
