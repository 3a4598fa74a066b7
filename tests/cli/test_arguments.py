"""How `chronctl` reads its command line: usage errors, global options, help, completion."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import ROOT, chronctl, command, env, one_error_line


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "jobs.toml").write_text(f"""
[scheduler]
backend = "sqlite:///state.db"
pythonpath = ["{ROOT}"]

[jobs.echo]
entrypoint = "tests.cli.jobs_for_cli:echo"

[jobs.nightly]
command = ["true"]
cron = "0 2 * * *"
queue = "maintenance"
""")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["tasks", "list", "--bogus"], "no such option: --bogus"),
        (["nosuch"], "no such command 'nosuch'"),
        (["jobs", "next", "echo", "-n", "abc"], "invalid value for '-n' / '--count'"),
        (["enqueue", "echo", "--priority", "12"], "invalid value for '--priority'"),
        (["tasks", "show"], "missing argument 'ID'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(project: Path, args: list[str], says: str) -> None:
    result = chronctl(*args, cwd=project)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert line.startswith("chronctl: ") and says in line, line
    assert "Usage:" not in result.stderr


def test_help_stays_full(project: Path) -> None:
    result = chronctl("tasks", "list", "--help", cwd=project)
    assert result.returncode == 0 and result.stderr == ""
    assert "Usage: chronctl tasks list [OPTIONS]" in result.stdout
    assert "--status" in result.stdout and "Global options" in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "-f", "{manifest}", "enqueue", "echo", "--args", '["a"]'],
        ["enqueue", "echo", "--args", '["a"]', "--json", "-f", "{manifest}"],
        ["enqueue", "--json", "echo", "--manifest={manifest}", "--args", '["a"]'],
    ],
)
def test_global_options_work_before_or_after_the_subcommand(
    project: Path, tmp_path: Path, argv: list[str]
) -> None:
    """-f names a manifest in another directory, so it is provably the one read."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    manifest = project / "jobs.toml"
    argv = [a.replace("{manifest}", str(manifest)) for a in argv]
    result = chronctl(*argv, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    task_id = json.loads(result.stdout)["id"]  # --json took effect
    shown = chronctl("tasks", "show", task_id, "--json", "-f", str(manifest), cwd=elsewhere)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["args"] == ["a"]


def test_quiet_and_verbose_after_the_subcommand(project: Path) -> None:
    quiet = chronctl("run", "--once", "-q", cwd=project)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    missing = chronctl("tasks", "show", "nope", "-v", cwd=project)
    assert missing.returncode == 1
    assert "Traceback" in missing.stderr  # -v after the subcommand shows the traceback


def test_an_option_value_that_looks_like_a_flag_is_a_value(project: Path) -> None:
    """`--args -v`: -v is the (bad) JSON, not the verbose flag; no traceback."""
    result = chronctl("enqueue", "echo", "--args", "-v", cwd=project)
    assert result.returncode == 2
    assert "bad JSON in --args" in one_error_line(result)
    queued = chronctl("enqueue", "echo", "--queue", "--json", "--json", cwd=project)
    assert queued.returncode == 0, queued.stderr
    shown = chronctl("tasks", "list", "--queue", "--json", "--json", cwd=project)
    assert [t["queue"] for t in json.loads(shown.stdout)] == ["--json"]


def test_nothing_after_double_dash_is_a_global_option(project: Path) -> None:
    result = chronctl("trigger", "--", "--json", cwd=project)
    assert result.returncode == 1  # an unknown job named '--json', not JSON output
    assert "unknown job '--json'" in one_error_line(result)


def test_a_malformed_backend_url_names_the_option(project: Path) -> None:
    for argv in (
        ["--backend", "redis://[::1", "tasks", "list"],
        ["queues", "list", "--backend", "redis://h:99999/0"],
    ):
        result = chronctl(*argv, cwd=project)
        assert result.returncode == 2, result.stderr
        assert "invalid value for '--backend'" in one_error_line(result)


def all_helps(project: Path) -> dict[str, str]:
    """Every command's --help, by command path."""
    from chronctl.cli.command import build_command

    def walk(group: object, prefix: list[str]) -> list[list[str]]:
        out = [prefix]
        for name, sub in getattr(group, "commands", {}).items():
            out += walk(sub, [*prefix, name])
        return out

    from concurrent.futures import ThreadPoolExecutor

    paths = walk(build_command(), [])
    with ThreadPoolExecutor(4) as pool:  # ~60 processes; each mostly waits on imports
        texts = pool.map(lambda path: chronctl(*path, "--help", cwd=project).stdout, paths)
        return {" ".join(path): text for path, text in zip(paths, texts, strict=True)}


def test_help_placeholders_read_like_other_clis(project: Path) -> None:
    helps = all_helps(project)
    assert len(helps) > 20
    for path, text in helps.items():
        assert "<bool>" not in text and "<str>" not in text and "<int" not in text, path
        usage = next(ln for ln in text.splitlines() if "Usage:" in ln)
        assert "{" not in usage, (path, usage)
        args = re.findall(r"\[?[A-Za-z_]+\]?(?:\.\.\.)?", usage.split("[OPTIONS]")[-1])
        for arg in args:
            assert arg.strip("[].") == arg.strip("[].").upper(), (path, usage)
    assert "Usage: chronctl enqueue [OPTIONS] [JOB]" in helps["enqueue"]
    assert "Usage: chronctl jobs next [OPTIONS] NAME" in helps["jobs next"]
    assert "Usage: chronctl dlq retry [OPTIONS] [ID]..." in helps["dlq retry"]
    assert re.search(r"--in\s+DURATION", helps["enqueue"])


def complete(project: Path, line: str, extra_env: dict[str, str] | None = None) -> list[str]:
    """What bash completion offers for the last word of `line` (typer's protocol)."""
    words = line.split(" ")
    environ = {
        **env(),
        "_CHRONCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
        **(extra_env or {}),
    }
    result = subprocess.run(
        command(), cwd=project, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout.split()


def test_completion_of_jobs_queues_and_task_ids(project: Path) -> None:
    assert complete(project, "chronctl enqueue ") == ["echo", "nightly"]
    assert complete(project, "chronctl jobs next ni") == ["nightly"]
    assert complete(project, "chronctl enqueue echo --queue ") == ["default", "maintenance"]
    made = chronctl("--json", "enqueue", "echo", "--queue", "mail", cwd=project)
    task_id = json.loads(made.stdout)["id"]
    assert complete(project, "chronctl tasks show ") == [task_id]
    assert complete(project, f"chronctl tasks cancel {task_id[:6]}") == [task_id]
    assert complete(project, "chronctl dlq show ") == []  # only dead letters
    assert "mail" in complete(project, "chronctl queues purge ")


def test_completion_reads_the_manifest_named_after_the_subcommand(
    project: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[jobs.only_here]\ncommand = ["true"]\n')
    assert complete(project, f"chronctl trigger -f {other} ") == ["only_here"]


def test_completion_is_quick_and_silent_when_the_backend_does_not_answer(project: Path) -> None:
    """A Redis port that accepts connections and never replies: the client alone would wait
    for its 10 s socket timeout; completion gives up after its one-second budget."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts; nobody ever answers
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        started = time.monotonic()
        complete(project, "chronctl trigger ")  # no backend involved: the start-up cost
        baseline = time.monotonic() - started
        started = time.monotonic()
        assert complete(project, f"chronctl tasks show --backend {url} ") == []
        assert complete(project, "chronctl tasks show --backend redis://127.0.0.1:9/0 ") == []
        waited = time.monotonic() - started - 2 * baseline
    assert waited < 5.0, (waited, baseline)


def test_completion_with_a_broken_manifest_offers_nothing(project: Path) -> None:
    (project / "broken.toml").write_text("[jobs.x\n")
    assert complete(project, "chronctl trigger ", {"CHRONCTL_MANIFEST": "broken.toml"}) == []
    assert complete(project, "chronctl tasks show -f broken.toml ") == []
