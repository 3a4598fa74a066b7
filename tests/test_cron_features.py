"""Cron-replacement features: on_failure, concurrency_policy, catchup, user."""

from __future__ import annotations

import os
import pwd
import time
from typing import Any

import pytest

from chronctl import Scheduler, TaskStatus
from chronctl.backends.base import QueueBackend
from chronctl.errors import ManifestError
from chronctl.executors import Executors, ShellCommandFailed
from chronctl.jobs import JobSpec
from chronctl.manifest import parse_manifest
from chronctl.models import Task

from .test_engine import _minutes_ago, _prime, wait, waiter


async def test_on_failure_enqueues_the_other_job_with_what_failed(backend: QueueBackend) -> None:
    s = Scheduler(backend, workers=2, lease=5, shutdown_timeout=5)
    alerts: list[dict[str, Any]] = []

    @s.job(max_retries=0, on_failure="alert")
    def backup() -> None:
        raise OSError("disk full")

    @s.job()
    def alert(task_id: str, job: str, error: str) -> None:
        alerts.append({"task_id": task_id, "job": job, "error": error})

    done, _ = waiter(s, "task_succeeded")
    async with s:
        failed_id = await s.enqueue("backup")
        await wait(done)
    assert alerts == [{"task_id": failed_id, "job": "backup", "error": "OSError: disk full"}]


async def test_replace_policy_cancels_the_running_fire(backend: QueueBackend) -> None:
    s = Scheduler(backend, misfire_grace_time=600)
    s.job(name="sync", cron="* * * * *", concurrency_policy="replace")(lambda: None)
    await backend.connect()
    await backend.enqueue(Task(job="sync"))
    [running] = await backend.dequeue(1)
    await _prime(backend, "sync", _minutes_ago(1))
    await s.fire_due()
    tasks = {t.id: t for t in await backend.list_tasks(job="sync", limit=None)}
    assert tasks.pop(running.id).status is TaskStatus.CANCELLED
    assert [t.status for t in tasks.values()] == [TaskStatus.PENDING]


async def test_forbid_and_allow_policies(backend: QueueBackend) -> None:
    s = Scheduler(backend, misfire_grace_time=600, coalesce=False)
    s.job(name="forbid", cron="* * * * *", concurrency_policy="forbid")(lambda: None)
    s.job(name="allow", cron="* * * * *", concurrency_policy="allow")(lambda: None)
    await _prime(backend, "forbid", _minutes_ago(3))
    await _prime(backend, "allow", _minutes_ago(3))
    await s.fire_due()
    assert len(await backend.list_tasks(job="forbid")) == 1
    assert len(await backend.list_tasks(job="allow")) == 3


@pytest.mark.parametrize(("catchup", "expected"), [("skip", 0), ("once", 1), ("all", 5)])
async def test_catchup(backend: QueueBackend, catchup: str, expected: int) -> None:
    # Half a minute past the minute: no fire is "due right now" by accident.
    now = (int(time.time() // 60)) * 60 + 30.0
    s = Scheduler(backend, misfire_grace_time=600, clock=lambda: now)
    s.job(name="job", cron="* * * * *", catchup=catchup, concurrency_policy="allow")(lambda: None)
    await _prime(backend, "job", now - 5 * 60 - 29)
    await s.fire_due()
    assert len(await backend.list_tasks(job="job", limit=None)) == expected


async def test_shell_job_runs_as_another_user() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users (the CI machine runs as root)")
    nobody = pwd.getpwnam("nobody")
    executors = Executors()
    try:
        out = await executors.run(
            JobSpec(name="who", command=["sh", "-c", "id -u; echo $HOME $USER"], user="nobody"),
            Task(job="who"),
        )
    finally:
        await executors.shutdown()
    assert out.output == f"{nobody.pw_uid}\n{nobody.pw_dir} nobody\n"


async def test_user_switch_without_root_is_a_clear_failure() -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: the switch would succeed")
    executors = Executors()
    try:
        with pytest.raises(ShellCommandFailed) as info:
            await executors.run(JobSpec(name="who", command=["id"], user="root"), Task(job="who"))
    finally:
        await executors.shutdown()
    assert "chronctl is not running as root" in (info.value.output or "")


def test_manifest_accepts_the_cron_keys() -> None:
    m = parse_manifest("""
[defaults]
on_failure = "mail"
[jobs.backup]
command = ["backup.sh"]
cron = "0 2 * * *"
user = "nobody"
concurrency_policy = "replace"
catchup = "all"
[jobs.mail]
command = ["mail.sh"]
on_failure = "backup"
""")
    backup = m.jobs["backup"]
    assert (backup.user, backup.concurrency_policy, backup.catchup, backup.on_failure) == (
        "nobody",
        "replace",
        "all",
        "mail",
    )
    assert backup.effective_max_instances == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[jobs.a]\ncommand = ["x"]\non_failure = "mial"\n[jobs.mail]\ncommand = ["m"]',
            "on_failure names unknown job 'mial' (did you mean 'mail'?)",
        ),
        ('[jobs.a]\ncommand = ["x"]\non_failure = "a"', "cannot name the job itself"),
        ('[jobs.a]\nentrypoint = "m:f"\nuser = "nobody"', "'user' applies to command jobs only"),
        ('[jobs.a]\ncommand = ["x"]\nuser = "no-such-user-here"', "unknown user"),
        ('[jobs.a]\ncommand = ["x"]\nmax_instances = 2\nconcurrency_policy = "allow"', "use one"),
        ('[jobs.a]\ncommand = ["x"]\ncatchup = "sometimes"', "catchup"),
    ],
)
def test_manifest_rejects_bad_cron_keys(body: str, message: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(body, "jobs.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("jobs.toml:")
