"""Security: no pickle, credentials never shown, private state files, no shell."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

import chronctl
from chronctl.backends import redact_url
from chronctl.backends.sqlite import SQLiteBackend
from chronctl.errors import BackendError
from chronctl.executors import Executors
from chronctl.jobs import JobSpec
from chronctl.models import Task

from ..cli.helpers import chronctl as run_cli

pytestmark = pytest.mark.reliability
PACKAGE = Path(chronctl.__file__).parent


def test_no_pickle_anywhere_in_the_package() -> None:
    banned = re.compile(
        r"^\s*(import|from)\s+(pickle|cPickle|dill|marshal|shelve|cloudpickle)\b", re.M
    )
    offenders = [str(p) for p in PACKAGE.rglob("*.py") if banned.search(p.read_text())]
    assert offenders == []


@pytest.mark.parametrize(
    "url",
    [
        "redis://admin:s3cret@db.example:6379/0",
        "rediss://:s3cret@db.example/1",
        "amqp://guest:s3cret@mq.example:5672/%2F",
        "redis+sentinel://u:s3cret@h:26379/m/0",
    ],
)
def test_redaction(url: str) -> None:
    shown = redact_url(url)
    assert "s3cret" not in shown and "***@" in shown


@pytest.mark.parametrize(
    "args",
    [
        ["--backend", "redis://admin:s3cret@127.0.0.1:1/0", "tasks", "list"],
        ["--backend", "amqp://admin:s3cret@127.0.0.1:1/", "queues", "list"],
        ["--json", "--backend", "redis://admin:s3cret@127.0.0.1:1/0", "status"],
        ["-v", "--backend", "redis://admin:s3cret@127.0.0.1:1/0", "dlq", "list"],
    ],
)
def test_cli_never_prints_credentials(tmp_path: Path, args: list[str]) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert "s3cret" not in result.stdout + result.stderr


async def test_state_file_is_private_and_not_followed_through_a_symlink(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    async with SQLiteBackend(db):
        pass
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "link.db"
    link.symlink_to(victim)
    with pytest.raises(BackendError):
        async with SQLiteBackend(link):
            pass
    assert victim.read_text() == "precious"


async def test_shell_job_arguments_never_reach_a_shell(tmp_path: Path) -> None:
    executors = Executors()
    marker = tmp_path / "pwned"
    try:
        out = await executors.run(
            JobSpec(name="echo", command=["echo"], cwd=str(tmp_path)),
            Task(job="echo", args=[f"; touch {marker}", "$(touch pwned2)", "`id`"]),
        )
    finally:
        await executors.shutdown()
    assert not marker.exists() and not (tmp_path / "pwned2").exists()
    assert out.output == f"; touch {marker} $(touch pwned2) `id`\n"


def test_oversized_payload_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "jobs.toml").write_text('[jobs.echo]\ncommand = ["echo"]\n')
    big = tmp_path / "big.jsonl"
    big.write_text('{"job": "echo", "args": ["' + "x" * 10_000_000 + '"]}\n')
    result = run_cli("enqueue", "--from", str(big), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "over the 1024 KiB limit" in lines[0]
    assert (
        not (tmp_path / "chronctl.db").exists()
        or os.path.getsize(tmp_path / "chronctl.db") < 1_000_000
    )
