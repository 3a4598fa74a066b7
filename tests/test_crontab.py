"""import-crontab: real crontab files become manifests whose fires match cron's."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from chronctl.crontab import import_crontab, parse_crontab
from chronctl.manifest import parse_manifest

from .cli.helpers import chronctl

DATA = Path(__file__).parent / "data"


def cron_fires(expr: str, tz: str, start: datetime, n: int) -> list[datetime]:
    """What cron itself would do: croniter with the classic day-of-month OR day-of-week."""
    itr = croniter(expr, start.astimezone(ZoneInfo(tz)), day_or=True)
    return [itr.get_next(datetime).astimezone(UTC) for _ in range(n)]


@pytest.mark.parametrize("name", ["crontab.system", "crontab.user"])
def test_imported_jobs_fire_when_cron_would(name: str) -> None:
    imported, text = import_crontab(DATA / name)
    manifest = parse_manifest(text, "imported.toml")
    start = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    checked = 0
    for job in imported.jobs:
        spec = manifest.jobs[job.name]
        if job.schedule is None:
            assert spec.trigger is None  # @reboot: enqueue-only, with a warning
            continue
        ours = [f.astimezone(UTC) for f in spec.trigger.fires(start, 8)]  # type: ignore[union-attr]
        assert ours == cron_fires(job.schedule, spec.timezone, start, 8), job.source
        checked += 1
    assert checked >= 8


def test_system_crontab_mapping() -> None:
    imported, text = import_crontab(DATA / "crontab.system")
    jobs = parse_manifest(text).jobs
    assert jobs["run_parts"].command == [
        "/bin/sh",
        "-c",
        "cd / && run-parts --report /etc/cron.hourly",
    ]
    assert jobs["tar"].user == "www-data" and jobs["check_sh"].user is None  # root: omitted
    assert jobs["morning_sh"].timezone == "America/New_York"  # CRON_TZ
    assert jobs["report"].trigger.describe() == "cron 0 0 1,15 * 5"  # type: ignore[union-attr]
    assert jobs["run_parts"].env["PATH"].startswith("/usr/local/sbin")
    warnings = "\n".join(imported.warnings)
    assert "MAILTO=ops@example.com" in warnings and "on_failure" in warnings
    assert "@reboot" in warnings and "bad schedule '61 * * * *'" in warnings
    assert len(imported.jobs) == 11


def test_user_crontab_mapping() -> None:
    imported = parse_crontab((DATA / "crontab.user").read_text(), "crontab.user")
    by_source = {j.source.split()[-1]: j for j in imported.jobs}
    assert imported.jobs[0].env["SHELL"] == "/bin/bash"
    manifest = imported.manifest()["jobs"]
    assert manifest[imported.jobs[0].name]["command"][0] == "/bin/bash"
    assert by_source["weekly"].schedule == "@weekly"
    warnings = "\n".join(imported.warnings)
    assert "unknown macro @every" in warnings  # a non-cron extension: skipped, said so


def test_percent_becomes_stdin() -> None:
    imported = parse_crontab('0 9 * * * mail -s "report" ops%Hello,%it ran.\\% done\n')
    [job] = imported.jobs
    assert job.command == 'mail -s "report" ops'
    assert job.stdin == "Hello,\nit ran.% done"


def test_cli_writes_a_manifest_that_validates(tmp_path: Path) -> None:
    out = tmp_path / "jobs.toml"
    result = chronctl("import-crontab", str(DATA / "crontab.system"), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "MAILTO" in result.stderr
    assert chronctl("validate", str(out), cwd=tmp_path).returncode == 0
    again = chronctl("import-crontab", str(DATA / "crontab.system"), "-o", str(out), cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    as_json = chronctl("--json", "import-crontab", str(DATA / "crontab.user"), cwd=tmp_path)
    doc = json.loads(as_json.stdout)
    assert doc["jobs"] >= 8 and doc["manifest"].startswith("# Imported")
    missing = chronctl("import-crontab", str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
