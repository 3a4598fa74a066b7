"""`chronctl validate`, `jobs next`, `jobs list`, `--version` through a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import ROOT, chronctl, one_error_line


def write(tmp_path: Path, text: str, name: str = "jobs.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_version() -> None:
    result = chronctl("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("chronctl ")


#: What `--version` and `--help` never need: client libraries, the engine, the manifest,
#: and asyncio (a fifth of the start-up; only a command that talks to a backend loads it).
NOT_AT_START = (
    "asyncio",
    "aio_pika",
    "aiormq",
    "redis",
    "aiosqlite",
    "croniter",
    "chronctl.backends",
    "chronctl.scheduler",
    "chronctl.worker",
    "chronctl.manifest",
)


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("run", "--help")])
def test_version_and_help_import_no_client_library(args: tuple[str, ...]) -> None:
    # Python's own import log (-X importtime) names every module the command loaded.
    result = chronctl(*args, extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr
    loaded = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "chronctl.cli" in loaded  # the log is there
    below = tuple(f"{name}." for name in NOT_AT_START)
    assert not {m for m in loaded if m in NOT_AT_START or m.startswith(below)}


def test_example_manifest_validates_with_next_fires() -> None:
    result = chronctl("validate", "jobs.example.toml")
    assert result.returncode == 0, result.stderr
    for job in ("heartbeat", "disk_usage", "uptime", "cleanup_logs", "fib", "send_email"):
        assert job in result.stdout
    data = json.loads(chronctl("--json", "validate", "jobs.example.toml").stdout)
    assert data["ok"] is True
    fires = {j["name"]: j["next_fire"] for j in data["jobs"]}
    assert fires["send_email"] is None
    assert fires["cleanup_logs"].endswith(("-05:00", "-04:00"))  # America/New_York


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[jobs.a\nentrypoint = 1", "jobs.toml:1"),
        ('[jobs.a]\nentrypoint = "x:y"\ncron = "61 * * * *"\n', "job 'a', key 'cron'"),
        (
            '[jobs.a]\nentrypoint = "x:y"\ncron = "* * * * *"\ntimezone = "Mars/Olympus"\n',
            "unknown timezone 'Mars/Olympus'",
        ),
        ('[jobs.a]\nentrypoint = "x:y"\nretries = 3\n', "did you mean 'max_retries'"),
        ('[jobs.a]\nentrypoint = "x:y"\nevery = "soon"\n', "key 'every'"),
    ],
)
def test_broken_manifests_give_one_line_and_exit_2(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    result = chronctl("validate", str(path))
    assert result.returncode == 2
    assert expected in one_error_line(result)


def test_manifest_errors_show_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[scheduler]\ntimezone = "UTC"\n\n[jobs.a]\nentrypoint = "x:y"\ncron = "0 0 30 2 *"\n',
    )
    line = one_error_line(chronctl("validate", str(path)))
    assert f"{path}:6" in line and "never fires" in line


def test_missing_manifest(tmp_path: Path) -> None:
    result = chronctl("-f", str(tmp_path / "nope.toml"), "jobs", "next", "x")
    assert result.returncode == 2
    assert "nope.toml" in one_error_line(result)


def test_entrypoint_that_does_not_import_fails_validate(tmp_path: Path) -> None:
    path = write(tmp_path, '[jobs.a]\nentrypoint = "no_such_module_xyz:f"\n')
    result = chronctl("validate", str(path))
    assert result.returncode == 2
    assert "no_such_module_xyz" in result.stderr and "Traceback" not in result.stderr
    data = json.loads(chronctl("--json", "validate", str(path)).stdout)
    assert data["ok"] is False and "no_such_module_xyz" in data["errors"][0]


def test_jobs_next_across_dst(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[jobs.nightly]\ncommand = ["true"]\ncron = "30 2 * * *"\ntimezone = "America/New_York"\n',
    )
    result = chronctl("-f", str(path), "--json", "jobs", "next", "nightly", "-n", "3")
    assert result.returncode == 0, result.stderr
    fires = json.loads(result.stdout)
    assert len(fires) == 3 and all(
        f.endswith(("T02:30:00-05:00", "T02:30:00-04:00", "T03:00:00-04:00")) for f in fires
    )


def test_jobs_next_unknown_job_exits_1() -> None:
    result = chronctl("-f", "jobs.example.toml", "jobs", "next", "nope")
    assert result.returncode == 1
    assert one_error_line(result) == "chronctl: unknown job 'nope'"


def test_jobs_list_json_shape(tmp_path: Path) -> None:
    manifest = (
        (ROOT / "jobs.example.toml")
        .read_text()
        .replace('backend = "sqlite:///chronctl.db"', f'backend = "sqlite:///{tmp_path}/x.db"')
    )
    manifest = manifest.replace('pythonpath = ["."]', f'pythonpath = ["{ROOT}"]')
    path = write(tmp_path, manifest)
    result = chronctl("-f", str(path), "--json", "jobs", "list")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows["heartbeat"]) == {
        "name",
        "trigger",
        "timezone",
        "next_fire",
        "paused",
        "last_status",
        "last_run",
        "last_skip",
        "overridden",
    }
    assert rows["heartbeat"]["last_skip"] is None
    assert rows["heartbeat"]["trigger"] == "every 10s"
    assert rows["cleanup_logs"]["trigger"] == "cron 0 2 * * *"
    assert rows["send_email"]["trigger"] is None and rows["send_email"]["next_fire"] is None


def test_credentials_never_printed(tmp_path: Path) -> None:
    path = write(tmp_path, '[jobs.a]\ncommand = ["true"]\n')
    result = chronctl("-f", str(path), "--backend", "bogus://admin:hunter2@db:1/0", "jobs", "list")
    assert result.returncode == 2
    line = one_error_line(result)
    assert "hunter2" not in line and "***@db" in line


NEXT_FIRE_JOBS = """
[scheduler]
backend = "sqlite:///state.db"

[jobs.beat]
command = ["true"]
every = "1h"

[jobs.nightly]
command = ["true"]
cron = "30 2 * * *"
timezone = "America/New_York"

[jobs.launch]
command = ["true"]
at = "2099-01-01T00:00:00+00:00"

[jobs.gone]
command = ["true"]
at = "2020-01-01T00:00:00+00:00"
"""


def shown_next_fires(path: Path) -> dict[str, dict[str, str | None]]:
    """Each job's next fire as `validate`, `jobs list` and `jobs next` print it (--json)."""
    validated = chronctl("--json", "validate", str(path))
    listed = chronctl("-f", str(path), "--json", "jobs", "list")
    assert validated.returncode == 0 and listed.returncode == 0, validated.stderr + listed.stderr
    views: dict[str, dict[str, str | None]] = {}
    for job in json.loads(validated.stdout)["jobs"]:
        views[job["name"]] = {"validate": job["next_fire"]}
    for job in json.loads(listed.stdout):
        views[job["name"]]["jobs list"] = job["next_fire"]
    for name, view in views.items():
        result = chronctl("-f", str(path), "--json", "jobs", "next", name, "-n", "1")
        assert result.returncode == 0, result.stderr
        view["jobs next"] = next(iter(json.loads(result.stdout)), None)
    return views


def test_validate_jobs_list_and_jobs_next_show_the_stored_anchor(tmp_path: Path) -> None:
    """With job state stored by a running scheduler, the three commands print one next
    fire per job: `every` counts from when the job was first seen (validate used to
    print now + 1h), a cron after its last fire, an `at` that fired has none."""
    import asyncio
    import time
    from datetime import datetime

    from chronctl.backends.sqlite import SQLiteBackend

    path = write(tmp_path, NEXT_FIRE_JOBS)
    first_seen = time.time() - 1000.5
    nightly_last = time.time() + 3 * 86400  # ahead of this clock: a peer's skewed fire

    async def seed() -> None:
        async with SQLiteBackend(tmp_path / "state.db") as backend:
            for job in ("beat", "nightly", "launch", "gone"):
                await backend.job_state(job, first_seen)
            await backend.record_fire("nightly", nightly_last, None, None)
            await backend.record_fire(
                "gone", datetime.fromisoformat("2020-01-01T00:00Z").timestamp(), None, None
            )

    asyncio.run(seed())
    views = shown_next_fires(path)
    for job, view in views.items():
        assert len(set(view.values())) == 1, (job, view)
    fire = {job: view["validate"] for job, view in views.items()}
    assert fire["beat"] is not None
    assert datetime.fromisoformat(fire["beat"]).timestamp() == pytest.approx(first_seen + 3600)
    assert fire["nightly"] is not None
    assert 0 < datetime.fromisoformat(fire["nightly"]).timestamp() - nightly_last <= 86400
    assert fire["launch"] == "2099-01-01T00:00:00+00:00"
    assert fire["gone"] is None


def test_next_fires_without_stored_state_and_no_store_created(tmp_path: Path) -> None:
    """A new backend: every view counts a new job from now, and `validate` and `jobs
    next`, which only read, leave no database file behind."""
    from datetime import datetime

    path = write(tmp_path, NEXT_FIRE_JOBS)
    before = datetime.now().timestamp()
    validated = json.loads(chronctl("--json", "validate", str(path)).stdout)
    upcoming = chronctl("-f", str(path), "--json", "jobs", "next", "beat", "-n", "1")
    after = datetime.now().timestamp()
    assert not (tmp_path / "state.db").exists()
    fires = {j["name"]: j["next_fire"] for j in validated["jobs"]}
    for fire in (fires["beat"], json.loads(upcoming.stdout)[0]):
        assert before + 3600 <= datetime.fromisoformat(fire).timestamp() <= after + 3600
    views = shown_next_fires(path)  # `jobs list` opens (and creates) the store
    for job in ("nightly", "launch", "gone"):
        assert len(set(views[job].values())) == 1, (job, views[job])


def test_validate_works_when_the_backend_is_out_of_reach(tmp_path: Path) -> None:
    path = write(tmp_path, '[jobs.a]\ncommand = ["true"]\nevery = "1h"\n')
    result = chronctl("--backend", "redis://127.0.0.1:1/0", "--json", "validate", str(path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
    line = one_error_line(result)
    assert line.startswith("chronctl: note: next fires assume no stored job state (")
    assert "127.0.0.1:1" in line
