"""Issue 17's "done means", through the `chronctl` command: three `chronctl run`
processes on one backend (SQLite, Redis); `schedules add` from the CLI while they
run; every occurrence fires exactly once cluster-wide; `schedules edit` to a new
cron takes effect everywhere within a second; a restart of every process keeps the
schedules; `schedules remove` stops them everywhere."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from chronctl.backends.base import QueueBackend
from chronctl.models import Task
from tests.conftest import REDIS_URL, need_service, redis_reachable, with_query

from .helpers import ROOT, chronctl, poll, spawn

PROPAGATION = 1.0  # the bound: a change applies everywhere within a second
SLACK = 0.5  # a loaded 2-core CI machine: process wake-up and clock reads


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(backend URL for the manifest, its key prefix or "")."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}", ""
        return
    ok, why = redis_reachable()
    need_service("Redis", ok, why)
    prefix = f"chronctl-test-{uuid.uuid4().hex[:10]}:"
    yield with_query(REDIS_URL, prefix=prefix), prefix
    asyncio.run(_drop(prefix))


async def _drop(prefix: str) -> None:
    from chronctl.backends.redis import RedisBackend

    async with RedisBackend(REDIS_URL, key_prefix=prefix) as backend:
        await backend.drop_everything()


def _backend(url: str, prefix: str) -> QueueBackend:
    if prefix:
        from chronctl.backends.redis import RedisBackend

        return RedisBackend(REDIS_URL, key_prefix=prefix)
    from chronctl.backends.sqlite import SQLiteBackend

    return SQLiteBackend(url.removeprefix("sqlite:///"))


def fired(url: str, prefix: str) -> list[Task]:
    """Every task the schedules fired, read from the backend (fire_time is not in the
    CLI's JSON task shape)."""

    async def read() -> list[Task]:
        async with _backend(url, prefix) as backend:
            return await backend.list_tasks(job="report", limit=None)

    return asyncio.run(read())


def fire_times(url: str, prefix: str, schedule: str) -> list[float]:
    times = [
        t.fire_time
        for t in fired(url, prefix)
        if t.key is not None and t.key.startswith(f"{schedule}@") and t.fire_time is not None
    ]
    duplicates = [ft for ft, n in Counter(times).items() if n > 1]
    assert not duplicates, f"fired more than once: {duplicates}"
    return sorted(times)


def start_cluster(project: Path, tag: str) -> list[subprocess.Popen[bytes]]:
    return [
        spawn("run", "jobs.toml", cwd=project, log=project / f"run-{tag}-{i}.log") for i in range(3)
    ]


def stop_cluster(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(30) == 0


def ok(project: Path, *args: str) -> float:
    """Run a command that must succeed; returns when it returned (the change is stored)."""
    result = chronctl(*args, cwd=project)
    assert result.returncode == 0, result.stderr
    return time.time()


def test_three_processes_share_runtime_schedules(tmp_path: Path, store: tuple[str, str]) -> None:
    url, prefix = store
    runs = tmp_path / "runs.txt"
    (tmp_path / "jobs.toml").write_text(
        f'[scheduler]\nbackend = "{url}"\npythonpath = ["{ROOT}"]\n'
        'shutdown_timeout = "5s"\nmisfire_grace_time = "30s"\n\n'
        '[jobs.report]\nentrypoint = "tests.cli.jobs_for_cli:record"\n'
    )
    cluster = start_cluster(tmp_path, "a")
    try:
        kwargs = f'{{"path": "{runs}", "token": "acme"}}'
        added = ok(tmp_path, "schedules", "add", "acme", "--job", "report", "--every", "1s",
                   "--kwargs", kwargs)  # fmt: skip
        poll(lambda: len(fire_times(url, prefix, "acme")) >= 4, 20, "four fires of acme")
        first = fire_times(url, prefix, "acme")[0]
        assert first <= added + 1 + PROPAGATION + SLACK  # the first occurrence was not late

        # Every third second from now on: fires of the old trigger stop within a second.
        edited = ok(tmp_path, "schedules", "edit", "acme", "--cron", "*/3 * * * * *")
        poll(
            lambda: [t for t in fire_times(url, prefix, "acme") if t > edited + 4],
            20,
            "a fire of the edited trigger",
        )
        after = [t for t in fire_times(url, prefix, "acme") if t > edited + PROPAGATION]
        assert after and all(t % 3 == 0 for t in after), after
    finally:
        stop_cluster(cluster)

    # A restart of every process keeps the schedule: it fires on its new trigger.
    stopped = time.time()
    cluster = start_cluster(tmp_path, "b")
    try:
        poll(
            lambda: [t for t in fire_times(url, prefix, "acme") if t > stopped + 1],
            20,
            "a fire after the restart",
        )
        removed = ok(tmp_path, "schedules", "remove", "acme")
        # Three more seconds of the (removed) trigger: nothing fires past the bound.
        time.sleep(3 + PROPAGATION)  # waiting for a fire that must not come
        late = [t for t in fire_times(url, prefix, "acme") if t > removed + PROPAGATION]
        assert late == []
    finally:
        stop_cluster(cluster)

    # Each fired task ran exactly once (one line per run), on one of the processes.
    tasks = fired(url, prefix)
    assert all(t.status.value == "succeeded" for t in tasks if t.finished_at is not None)
    done = [t for t in tasks if t.status.value == "succeeded"]
    assert runs.read_text().splitlines() == ["acme"] * len(done)
