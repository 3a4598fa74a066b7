"""A real daemon in a temp dir: start, enqueue through the CLI, reload with HUP, stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chronctl.daemon import daemon_pid, pid_alive

from .helpers import ROOT, chronctl, one_error_line, poll

JOBS = f"""
[scheduler]
backend = "sqlite:///state.db"
pythonpath = ["{ROOT}"]
shutdown_timeout = "10s"

[jobs.echo]
entrypoint = "tests.cli.jobs_for_cli:echo"
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "jobs.toml").write_text(JOBS)
    yield tmp_path
    # Never leave a daemon behind, and never kill what a test wrote into the pidfile.
    pid = daemon_pid(tmp_path / "chronctl.pid")
    if pid is not None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def task_status(project: Path, task_id: str) -> str:
    shown = chronctl("--json", "tasks", "show", task_id, cwd=project)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["status"]


def enqueue(project: Path, job: str, *args: str) -> str:
    result = chronctl("--json", "enqueue", job, *args, cwd=project)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["id"]


def log_text(project: Path) -> str:
    return (project / "chronctl.log").read_text()


def test_daemon_lifecycle(project: Path) -> None:
    started = chronctl("--json", "run", "--daemon", cwd=project)
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    pid = info["pid"]
    pidfile, logfile = project / "chronctl.pid", project / "chronctl.log"
    assert pidfile.read_text().strip() == str(pid) and pid_alive(pid)
    for path in (pidfile, logfile, project / "state.db"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    # A second daemon on the same pidfile is refused in one line.
    again = chronctl("run", "--daemon", cwd=project)
    assert again.returncode == 1
    assert f"already running (pid {pid}" in one_error_line(again)

    status = json.loads(chronctl("--json", "status", cwd=project).stdout)
    assert (status["running"], status["pid"]) == (True, pid)
    [me] = status["schedulers"]
    assert (me["pid"], me["role"], me["alive"]) == (pid, "all", True)

    first = enqueue(project, "echo", "--args", '["hello"]')
    poll(lambda: task_status(project, first) == "succeeded", what="the enqueued task")

    # HUP with a new job: the daemon runs it without a restart.
    (project / "jobs.toml").write_text(
        JOBS
        + """
[jobs.late]
entrypoint = "tests.cli.jobs_for_cli:echo"
args = ["added by reload"]
"""
    )
    os.kill(pid, signal.SIGHUP)
    poll(lambda: "reloaded" in log_text(project), what="the reload")
    assert "1 added" in log_text(project)
    late = enqueue(project, "late")
    poll(lambda: task_status(project, late) == "succeeded", what="the reloaded job's task")

    # A broken manifest on HUP keeps the running configuration.
    (project / "jobs.toml").write_text(JOBS + "\n[jobs.broken\n")
    os.kill(pid, signal.SIGHUP)
    poll(lambda: "reload failed" in log_text(project), what="the failed reload")
    (project / "jobs.toml").write_text(
        JOBS
        + """
[jobs.late]
entrypoint = "tests.cli.jobs_for_cli:echo"
"""
    )
    third = enqueue(project, "late", "--args", '["still running"]')
    poll(lambda: task_status(project, third) == "succeeded", what="work after a failed reload")

    stopped = chronctl("--json", "stop", cwd=project)
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout) == {"stopped": True, "pid": pid}
    assert not pid_alive(pid) and not pidfile.exists()
    log = log_text(project)
    assert "stopping gracefully" in log and "chronctl stopped" in log
    assert f"end job=echo task={first}" in log  # one line per task finish
    after = json.loads(chronctl("--json", "status", cwd=project).stdout)
    assert (after["running"], after["schedulers"]) == (False, [])  # a clean stop says goodbye
    missing = chronctl("stop", cwd=project)
    assert missing.returncode == 1 and "not running" in one_error_line(missing)


def test_stop_never_signals_a_process_that_is_not_the_daemon(project: Path) -> None:
    pidfile = project / "chronctl.pid"
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        pidfile.write_text(f"{sleeper.pid}\n")  # a live process, but not a chronctl daemon
        stopped = chronctl("stop", cwd=project)
        assert stopped.returncode == 1
        line = one_error_line(stopped)
        assert f"stale pidfile {pidfile}: pid {sleeper.pid} is not the chronctl daemon" in line
        assert sleeper.poll() is None  # nobody was signalled
        status = chronctl("--json", "status", cwd=project)
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        assert (shown["running"], shown["pid"]) == (False, None)
        text = chronctl("status", cwd=project).stdout
        assert f"not running (stale pidfile: pid {sleeper.pid} is not this daemon)" in text

        # Pid 1 only once a live process survived above: init is never ours to signal.
        pidfile.write_text("1\n")
        stopped = chronctl("stop", cwd=project)
        assert stopped.returncode == 1 and "stale pidfile" in one_error_line(stopped)
        assert json.loads(chronctl("--json", "status", cwd=project).stdout)["running"] is False
        for junk in ("0\n", "-1\n", "not a pid\n"):  # kill(0)/kill(-1) hit whole groups
            pidfile.write_text(junk)
            stopped = chronctl("stop", cwd=project)
            assert stopped.returncode == 1 and "not running" in one_error_line(stopped)
        assert sleeper.poll() is None

        # A real daemon replaces the stale pidfile and is still stopped by `stop`.
        started = chronctl("--json", "run", "--daemon", cwd=project)
        assert started.returncode == 0, started.stderr
        pid = json.loads(started.stdout)["pid"]
        assert json.loads(chronctl("--json", "status", cwd=project).stdout)["pid"] == pid
        stopped = chronctl("--json", "stop", cwd=project)
        assert stopped.returncode == 0, stopped.stderr
        assert json.loads(stopped.stdout) == {"stopped": True, "pid": pid}
        assert not pid_alive(pid) and sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_pidfile_is_replaced(project: Path) -> None:
    (project / "chronctl.pid").write_text("999999\n")  # no such process
    started = chronctl("--json", "run", "--daemon", cwd=project)
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["pid"]
    assert (project / "chronctl.pid").read_text().strip() == str(pid)
    assert chronctl("stop", cwd=project).returncode == 0


def test_pidfile_symlink_is_not_followed(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    victim = tmp_path_factory.mktemp("victim") / "important"
    victim.write_text("keep me")
    (project / "chronctl.pid").symlink_to(victim)
    started = chronctl("--json", "run", "--daemon", cwd=project)
    assert started.returncode == 0, started.stderr
    assert victim.read_text() == "keep me"
    assert not (project / "chronctl.pid").is_symlink()
    assert chronctl("stop", cwd=project).returncode == 0


def test_daemon_start_failure_is_reported_on_the_terminal(project: Path) -> None:
    (project / "jobs.toml").write_text(
        JOBS.replace("sqlite:///state.db", "sqlite:///missing-dir/state.db")
    )
    result = chronctl("run", "--daemon", cwd=project)
    assert result.returncode == 1
    assert "missing-dir" in one_error_line(result)
    assert not (project / "chronctl.pid").exists()


def test_json_log_format(project: Path) -> None:
    enqueue(project, "echo", "--args", "[1]")
    result = chronctl("run", "--once", "--log-format", "json", cwd=project)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    [end] = [r for r in records if r.get("event") == "task_end"]
    assert (end["job"], end["status"], end["attempt"]) == ("echo", "succeeded", 0)
    assert end["message"].startswith("end job=echo") and end["duration"] >= 0
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)


def test_paths_under_the_current_directory_are_shown_relative(project: Path) -> None:
    """Output copied into a ticket or a README names `chronctl.log`, not the machine's tree;
    from elsewhere, the full path, so it is never ambiguous."""
    started = chronctl("run", "--daemon", cwd=project)
    assert started.returncode == 0, started.stderr
    assert "; log: chronctl.log; stop: chronctl stop" in started.stdout
    here = chronctl("status", cwd=project)
    assert "backend:      sqlite:///state.db\n" in here.stdout
    other = project / ".." / f"{project.name}-elsewhere"
    other.mkdir()
    elsewhere = chronctl("-f", str(project / "jobs.toml"), "status", cwd=other)
    assert f"backend:      sqlite:///{project / 'state.db'}\n" in elsewhere.stdout
    assert chronctl("stop", cwd=project).returncode == 0
