"""A crontab moved to chronctl behaves as it did under cron (issue 14, "Cron parity").

Each test drives the installed `chronctl` command: import a crontab or write a
manifest, run it with `run --once`, and look at what the jobs did on disk.
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

from .helpers import ROOT, chronctl, one_error_line

DATA = ROOT / "tests" / "data"
NEW_YORK = {"TZ": "America/New_York"}


def ok(*args: str, cwd: Path, extra_env: dict[str, str] | None = None) -> str:
    result = chronctl(*args, cwd=cwd, extra_env=extra_env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def import_crontab(tmp_path: Path, crontab: str, **env: str) -> tuple[Path, str]:
    """Import `crontab` as an admin would; returns the manifest and the warnings."""
    (tmp_path / "mycron").write_text(crontab)
    result = chronctl(
        "import-crontab", "mycron", "-o", "jobs.toml", cwd=tmp_path, extra_env=env or None
    )
    assert result.returncode == 0, result.stderr
    return tmp_path / "jobs.toml", result.stderr


def run_once(tmp_path: Path, manifest: Path) -> None:
    ok("run", str(manifest), "--once", cwd=tmp_path)


def enqueue(tmp_path: Path, manifest: Path, job: str, *args: str) -> str:
    out = ok("-f", str(manifest), "--json", "enqueue", job, *args, cwd=tmp_path)
    return str(json.loads(out)["id"])


def statuses(tmp_path: Path, manifest: Path) -> dict[str, str]:
    out = ok("-f", str(manifest), "--json", "tasks", "list", "--limit", "100", cwd=tmp_path)
    return {t["job"]: t["status"] for t in json.loads(out)}


# -- local time ------------------------------------------------------------------


def test_import_keeps_the_host_zone(tmp_path: Path) -> None:
    manifest, _ = import_crontab(
        tmp_path,
        "0 2 * * * /usr/local/bin/nightly\nCRON_TZ=Asia/Tokyo\n0 2 * * * /bin/tokyo\n",
        **NEW_YORK,
    )
    assert '[scheduler]\ntimezone = "America/New_York"' in manifest.read_text()
    # The manifest carries the zone: the same fires whatever zone reads it later.
    report = json.loads(
        ok("--json", "validate", str(manifest), cwd=tmp_path, extra_env={"TZ": "UTC"})
    )
    jobs = {j["name"]: j for j in report["jobs"]}
    assert jobs["nightly"]["timezone"] == "America/New_York"
    assert jobs["nightly"]["next_fire"][10:] in ("T02:00:00-05:00", "T02:00:00-04:00")
    assert jobs["tokyo"]["timezone"] == "Asia/Tokyo"  # CRON_TZ still wins for its jobs
    assert jobs["tokyo"]["next_fire"].endswith("T02:00:00+09:00")
    listed = json.loads(ok("-f", str(manifest), "--json", "jobs", "list", cwd=tmp_path))
    assert {r["name"]: r["timezone"] for r in listed} == {
        "nightly": "America/New_York",
        "tokyo": "Asia/Tokyo",
    }
    table = ok("-f", str(manifest), "jobs", "list", cwd=tmp_path)
    assert "ZONE" in table and "America/New_York" in table and "Asia/Tokyo" in table
    table = ok("validate", str(manifest), cwd=tmp_path)
    [nightly] = [line for line in table.splitlines() if line.startswith("nightly")]
    assert "America/New_York" in nightly and "T02:00:00-0" in nightly


# -- string commands are shell lines -------------------------------------------------


def test_string_command_is_a_shell_line_and_args_stay_arguments(tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.toml"
    manifest.write_text(
        "[defaults]\nmax_retries = 0\n\n"
        "[jobs.dump]\n"
        'command = "echo dumped > dump.sql && printf \'%s|\' \\"$0\\" \\"$@\\" > args.txt"\n\n'
        '[jobs.bashy]\ncommand = "[[ -n $BASH_VERSION ]] && echo bash > shell.txt"\n'
        'shell = "/bin/bash"\n\n'
        '[jobs.literal]\ncommand = ["touch", "a > b"]\n'
    )
    ok("validate", str(manifest), cwd=tmp_path)
    hostile = json.dumps(["a b", "$(touch pwned); echo > spliced"])
    enqueue(tmp_path, manifest, "dump", "--args", hostile)
    enqueue(tmp_path, manifest, "bashy")
    enqueue(tmp_path, manifest, "literal")
    run_once(tmp_path, manifest)
    assert statuses(tmp_path, manifest) == {
        "dump": "succeeded",
        "bashy": "succeeded",
        "literal": "succeeded",
    }
    assert (tmp_path / "dump.sql").read_text() == "dumped\n"  # `>` redirected, as in crontab
    # $0 is the job's name; the args are $1 and $2, word for word, never run.
    assert (tmp_path / "args.txt").read_text() == "dump|a b|$(touch pwned); echo > spliced|"
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "spliced").exists()
    assert (tmp_path / "shell.txt").read_text() == "bash\n"  # the job's `shell`
    assert (tmp_path / "a > b").exists() and not (tmp_path / "b").exists()  # a list: no shell


def test_validate_asks_the_shell_whether_a_line_parses(tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.toml"
    manifest.write_text('[jobs.dump]\ncommand = "pg_dump db > \'/backup/db.sql"\n')
    result = chronctl("validate", str(manifest), cwd=tmp_path)
    assert result.returncode == 2
    assert one_error_line(result) == (
        f"chronctl: {manifest}:2: job 'dump', key 'command': "
        "shell syntax error: Unterminated quoted string"
    )


def test_imported_crontab_keeps_its_shell_and_home(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    manifest, _ = import_crontab(
        tmp_path,
        f"SHELL=/bin/bash\n0 0 1 1 * [[ -n $BASH_VERSION ]] && pwd > {out}/where.txt\n",
    )
    [name] = json.loads(ok("--json", "validate", str(manifest), cwd=tmp_path))["jobs"]
    enqueue(tmp_path, manifest, name["name"])
    run_once(tmp_path, manifest)
    # cron runs a job with the crontab's SHELL, in its owner's home directory.
    assert (out / "where.txt").read_text() == f"{Path.home()}\n"


def test_user_job_runs_in_that_users_home(tmp_path: Path) -> None:
    me = pwd.getpwuid(os.getuid())
    manifest = tmp_path / "jobs.toml"
    manifest.write_text(
        f'[jobs.who]\ncommand = "pwd > {tmp_path}/where.txt; echo $SHELL >> {tmp_path}/where.txt"\n'
        f'user = "{me.pw_name}"\n'
    )
    enqueue(tmp_path, manifest, "who")
    run_once(tmp_path, manifest)
    # As cron: the user's home, and SHELL is the shell running the line (not the login one).
    assert (tmp_path / "where.txt").read_text() == f"{me.pw_dir}\n/bin/sh\n"


# -- % in crontab lines -----------------------------------------------------------------


def test_percent_feeds_the_whole_line(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    manifest, warnings = import_crontab(
        tmp_path, f"0 0 1 1 * cd {sub} && cat > got.txt %first%second\n"
    )
    assert "warning" not in warnings
    [job] = json.loads(ok("--json", "validate", str(manifest), cwd=tmp_path))["jobs"]
    enqueue(tmp_path, manifest, job["name"])
    run_once(tmp_path, manifest)
    assert (sub / "got.txt").read_text() == "first\nsecond\n"  # cron's stdin reaches `cat`


def test_import_warns_on_a_stray_percent_not_on_mail_off(tmp_path: Path) -> None:
    _, warnings = import_crontab(
        tmp_path,
        'MAILTO=""\n'
        "0 1 * * * df -P / | check_disk -w 20%\n"
        "0 2 * * * tar czf /b/$(date +%F).tgz /srv\n"
        "0 3 * * * tar czf /b/$(date +\\%F).tgz /srv\n"
        "0 4 * * * mail -s report ops%Dear ops,%all done.\n",
    )
    assert warnings.splitlines() == [
        "chronctl: warning: mycron:2: unescaped % in '20%' ends the command there "
        "(cron feeds the rest to stdin): write \\% for a literal %",
        "chronctl: warning: mycron:3: unescaped % in '+%F).tgz' ends the command there "
        "(cron feeds the rest to stdin): write \\% for a literal %",
        # What is left of line 3 does not parse: cron fails it every run; not imported.
        'chronctl: warning: mycron:3: shell syntax error: end of file unexpected (expecting ")"): '
        "line skipped (it fails every run under cron)",
    ]


# -- job names ------------------------------------------------------------------------


def test_import_names_jobs_after_the_work(tmp_path: Path) -> None:
    names: list[str] = []
    for crontab in ("crontab.system", "crontab.user"):
        out = ok("--json", "import-crontab", str(DATA / crontab), cwd=tmp_path)
        text = json.loads(out)["manifest"]
        names += [ln[len("[jobs.") : -1] for ln in text.splitlines() if ln.startswith("[jobs.")]
    names = [n for n in names if not n.endswith(".env")]
    assert names == [
        "cron_hourly",  # cd / && run-parts --report /etc/cron.hourly
        "cron_daily",  # test -x /usr/sbin/anacron || ( cd / && run-parts ... /etc/cron.daily )
        "cron_weekly",
        "cron_monthly",
        "tar",
        "check",  # /usr/local/bin/check.sh >/dev/null 2>&1
        "report",
        "start",
        "backup",
        "morning",
        "sync_assets",
        "manage_clearsessions",  # cd /srv/app && ./manage.py clearsessions >> log 2>&1
        "find",
        "rotate",
        "report",
        "backup",
        "friday13",
        "month_end",
        "half_year",
    ]
    crontab = tmp_path / "php"
    crontab.write_text(
        "09,39 * * * * root [ -x /usr/lib/php/sessionclean ] && /usr/lib/php/sessionclean\n"
    )
    out = ok("--json", "import-crontab", "--system", str(crontab), cwd=tmp_path)
    assert "[jobs.sessionclean]" in json.loads(out)["manifest"]


# -- MAILTO parity: on_failure ----------------------------------------------------------


ALERTS = """
[scheduler]
pythonpath = ["{root}"]

[defaults]
on_failure = "alert"
max_retries = 0

[jobs.backup]
command = "echo disk is full; exit 3"

[jobs.quiet]
command = "echo nobody hears; exit 4"
on_failure = ""

[jobs.pyfail]
entrypoint = "tests.cli.jobs_for_cli:fail"
args = ["no space left"]
on_failure = "pyalert"

[jobs.legacy]
entrypoint = "tests.cli.jobs_for_cli:fail"
on_failure = "legacy_alert"

[jobs.alert]
command = "printf '%s\\\\n' \\"$1\\" \\"$2\\" \\"$3\\" \\"$4\\" >> alerts.txt"

[jobs.pyalert]
entrypoint = "tests.cli.alerts_for_cli:alert"
kwargs = {{ path = "py.jsonl" }}

[jobs.legacy_alert]
entrypoint = "tests.cli.alerts_for_cli:legacy_alert"
kwargs = {{ path = "legacy.jsonl" }}
"""


def test_on_failure_from_defaults_alerts_with_the_output(tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.toml"
    manifest.write_text(ALERTS.format(root=ROOT))
    ok("validate", str(manifest), cwd=tmp_path)  # the alert job is not its own alert
    ids = {job: enqueue(tmp_path, manifest, job) for job in ("backup", "quiet", "pyfail", "legacy")}
    run_once(tmp_path, manifest)
    # A command alert: JOB TASK_ID ERROR OUTPUT as $1..$4, once.
    assert (tmp_path / "alerts.txt").read_text() == (
        f"backup\n{ids['backup']}\ncommand exited with status 3: disk is full\ndisk is full\n\n"
    )
    # A Python alert: the same facts as kwargs; a failed Python run's output is its traceback.
    [py] = [json.loads(line) for line in (tmp_path / "py.jsonl").read_text().splitlines()]
    assert (py["job"], py["task_id"], py["error"]) == (
        "pyfail",
        ids["pyfail"],
        "RuntimeError: no space left",
    )
    assert py["output"].startswith("Traceback") and "no space left" in py["output"]
    # An alert function without an `output` parameter still gets called.
    [legacy] = [json.loads(line) for line in (tmp_path / "legacy.jsonl").read_text().splitlines()]
    assert legacy == {"job": "legacy", "task_id": ids["legacy"], "error": "RuntimeError: boom"}
    final = statuses(tmp_path, manifest)
    assert final["quiet"] == "dead" and final["alert"] == "succeeded"  # quiet opted out
    assert sorted(final) == [
        "alert",
        "backup",
        "legacy",
        "legacy_alert",
        "pyalert",
        "pyfail",
        "quiet",
    ]


def test_imported_line_runs_once_per_fire_like_cron(tmp_path: Path) -> None:
    """cron never retried a failing line; an imported one must not run it again either."""
    manifest, _ = import_crontab(tmp_path, f"0 0 1 1 * echo ran >> {tmp_path}/runs.txt; exit 3\n")
    assert "[defaults]\nmax_retries = 0" in manifest.read_text()
    [job] = json.loads(ok("--json", "validate", str(manifest), cwd=tmp_path))["jobs"]
    enqueue(tmp_path, manifest, job["name"])
    run_once(tmp_path, manifest)
    assert (tmp_path / "runs.txt").read_text() == "ran\n"
    assert statuses(tmp_path, manifest) == {job["name"]: "dead"}
