"""import-crontab: real crontab files become manifests whose fires match cron's."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from chronctl.crontab_import import host_timezone, import_crontab, parse_crontab
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
    # A string command: chronctl runs it with /bin/sh -c, as cron did.
    assert jobs["cron_hourly"].command == "cd / && run-parts --report /etc/cron.hourly"
    assert jobs["cron_hourly"].shell == "/bin/sh"
    assert jobs["tar"].user == "www-data" and jobs["check"].user is None  # root: omitted
    assert jobs["check"].cwd == str(Path.home())  # cron runs a job in its owner's home
    assert jobs["morning"].timezone == "America/New_York"  # CRON_TZ
    assert jobs["report"].trigger.describe() == "cron 0 0 1,15 * 5"  # type: ignore[union-attr]
    assert jobs["cron_hourly"].env["PATH"].startswith("/usr/local/sbin")
    warnings = "\n".join(imported.warnings)
    assert "MAILTO=ops@example.com" in warnings and "on_failure" in warnings
    assert "@reboot" in warnings and "bad schedule '61 * * * *'" in warnings
    # `echo "hi %there"`: cron cuts it at the %, leaving a quote open: said twice, skipped.
    assert "unescaped % in '%there\"'" in warnings and "Unterminated quoted string" in warnings
    assert len(imported.jobs) == 10


def test_user_crontab_mapping() -> None:
    imported = parse_crontab((DATA / "crontab.user").read_text(), "crontab.user")
    by_source = {j.source.split()[-1]: j for j in imported.jobs}
    manifest = imported.manifest()["jobs"]
    assert all(job["shell"] == "/bin/bash" for job in manifest.values())  # SHELL=/bin/bash
    assert all("SHELL" not in job["env"] for job in manifest.values())
    assert by_source["weekly"].schedule == "@weekly"
    warnings = "\n".join(imported.warnings)
    assert "unknown macro @every" in warnings  # a non-cron extension: skipped, said so
    assert "MAILTO" not in warnings  # MAILTO="" only turns mail off


def test_jobs_are_named_after_the_work() -> None:
    names = [j.name for j in import_crontab(DATA / "crontab.system")[0].jobs]
    names += [j.name for j in import_crontab(DATA / "crontab.user")[0].jobs]
    assert names == [
        "cron_hourly",
        "cron_daily",
        "cron_weekly",
        "cron_monthly",
        "tar",
        "check",
        "report",
        "start",
        "backup",
        "morning",
        "sync_assets",
        "manage_clearsessions",
        "find",
        "rotate",
        "report",
        "backup",
        "friday13",
        "month_end",
        "half_year",
    ]


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("[ -x /usr/lib/php/sessionclean ] && /usr/lib/php/sessionclean", "sessionclean"),
        (
            "test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )",
            "cron_daily",
        ),
        ("cd /srv/app && ./manage.py clearsessions >> log 2>&1", "manage_clearsessions"),
        ("nice -n 19 ionice -c3 /usr/local/bin/backup.sh --full", "backup"),
        ("flock -n /run/sync.lock rsync -a /src/ /dst/", "rsync"),
        ("timeout 5m python3 -u /opt/app/report.py --daily", "report"),
        ("sleep $((RANDOM % 60)) && curl -fsS https://example.com/ping", "curl"),
        ('FOO=1 /bin/sh -c "cd /x && make backup"', "make_backup"),
        ("php /var/www/artisan schedule:run >/dev/null 2>&1", "artisan_schedule_run"),
        ("true", "true"),
    ],
)
def test_job_name_from_a_line(line: str, name: str) -> None:
    [job] = parse_crontab(f"0 1 * * * {line.replace('%', chr(92) + '%')}\n", timezone="UTC").jobs
    assert job.name == name


def test_percent_becomes_stdin_of_the_whole_line() -> None:
    imported = parse_crontab('0 9 * * * mail -s "report" ops%Hello,%it ran.\\% done\n')
    [job] = imported.jobs
    assert job.command == 'mail -s "report" ops'
    assert job.stdin == "Hello,\nit ran.% done"
    assert job.shell_line == "printf '%s\\n' 'Hello,\nit ran.% done' | {\nmail -s \"report\" ops\n}"
    assert imported.warnings == []  # % used as cron means it: nothing to say


@pytest.mark.parametrize(
    ("line", "word"),
    [
        ("df -h | check -w 20%", "20%"),
        ("tar czf /b/$(date +%Y-%m-%d).tgz /srv", "+%Y-%m-%d).tgz"),
        ("printf '%s\\n' hi > /tmp/x", "'%s\\n'"),
    ],
)
def test_a_stray_percent_is_a_warning(line: str, word: str) -> None:
    imported = parse_crontab(f"0 1 * * * {line}\n", "c", timezone="UTC")
    assert [w for w in imported.warnings if "unescaped %" in w] == [
        f"c:1: unescaped % in '{word}' ends the command there (cron feeds the rest to "
        "stdin): write \\% for a literal %"
    ]


def test_host_timezone_order(tmp_path: Path) -> None:
    localtime = tmp_path / "localtime"
    localtime.symlink_to("/usr/share/zoneinfo/Europe/Paris")
    nothing = tmp_path / "none"
    assert host_timezone({"TZ": "America/New_York"}, localtime) == ("America/New_York", None)
    assert host_timezone({"TZ": ":Asia/Tokyo"}, localtime) == ("Asia/Tokyo", None)
    assert host_timezone({}, localtime) == ("Europe/Paris", None)
    zone, warning = host_timezone({"TZ": "Mars/Olympus"}, localtime)
    assert zone == "Europe/Paris" and warning and "TZ='Mars/Olympus'" in warning
    copied = tmp_path / "copied"
    copied.write_bytes(Path("/usr/share/zoneinfo/America/New_York").read_bytes())
    assert host_timezone({}, copied, nothing) == ("America/New_York", None)
    (tmp_path / "timezone").write_text("Europe/Berlin\n")
    assert host_timezone({}, nothing, tmp_path / "timezone") == ("Europe/Berlin", None)
    assert host_timezone({"TZ": "Etc/UTC"}, nothing, nothing) == ("UTC", None)
    zone, warning = host_timezone({}, nothing, nothing)
    assert zone == "UTC" and warning and "cannot tell" in warning


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
