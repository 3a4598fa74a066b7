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
    }
    assert rows["heartbeat"]["trigger"] == "every 10s"
    assert rows["cleanup_logs"]["trigger"] == "cron 0 2 * * *"
    assert rows["send_email"]["trigger"] is None and rows["send_email"]["next_fire"] is None


def test_credentials_never_printed(tmp_path: Path) -> None:
    path = write(tmp_path, '[jobs.a]\ncommand = ["true"]\n')
    result = chronctl("-f", str(path), "--backend", "bogus://admin:hunter2@db:1/0", "jobs", "list")
    assert result.returncode == 2
    line = one_error_line(result)
    assert "hunter2" not in line and "***@db" in line
