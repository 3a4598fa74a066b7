"""`status` tells a live process from a silent one and from one that is gone."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

from chronctl.backends import from_url
from chronctl.models import Process

from .helpers import ROOT, chronctl, poll, spawn

JOBS = f"""
[scheduler]
backend = "sqlite:///state.db"
pythonpath = ["{ROOT}"]

[jobs.echo]
entrypoint = "tests.cli.jobs_for_cli:echo"
"""


def schedulers(project: Path) -> dict[int, dict[str, Any]]:
    result = chronctl("--json", "status", cwd=project)
    assert result.returncode == 0, result.stderr
    return {s["pid"]: s for s in json.loads(result.stdout)["schedulers"]}


def seed(project: Path, process: Process) -> None:
    """A row as another `chronctl run` would have left it (one we cannot make go silent)."""

    async def put() -> None:
        backend = from_url("sqlite:///state.db", base=project)
        async with backend:
            await backend.beat(process)

    asyncio.run(put())


def test_status_marks_silent_processes_stale_and_vanished_ones_dead(tmp_path: Path) -> None:
    (tmp_path / "jobs.toml").write_text(JOBS)
    runner = spawn("run", cwd=tmp_path, log=tmp_path / "run.log")
    try:
        live = poll(lambda: schedulers(tmp_path).get(runner.pid), what="the runner's heartbeat")
        assert live["alive"] is True

        # Another host's process that has not beaten for 25 s: two 10 s beats missed.
        now = time.time()
        seed(tmp_path, Process("far:7:abc", "far-away", 7, "worker", now - 3600, now - 25))
        far = schedulers(tmp_path)[7]
        assert far["alive"] is False
        assert (far["state"], live["state"]) == ("stale", "alive")

        runner.send_signal(signal.SIGKILL)  # no goodbye: its row stays, its beat is fresh
        runner.wait(30)
        gone = schedulers(tmp_path)[runner.pid]
        assert gone["host"] == socket.gethostname()
        assert gone["alive"] is False
        assert gone["state"] == "dead"
        table = chronctl("status", cwd=tmp_path).stdout
        [row] = [line for line in table.splitlines() if line.startswith(gone["id"])]
        assert row.rstrip().endswith("dead")
        [row] = [line for line in table.splitlines() if line.startswith("far:7:abc")]
        assert row.rstrip().endswith("stale")
    finally:
        runner.kill()
        runner.wait()


def test_status_queues_list_and_the_library_list_the_same_queues(tmp_path: Path) -> None:
    """`status` used to list only the backend's queues and `Scheduler.list_queues()` the
    same, while `queues list` added the manifest's at zero: all three agree now."""
    from chronctl import Scheduler
    from chronctl.manifest import load_manifest

    path = tmp_path / "jobs.toml"
    path.write_text(
        JOBS.replace("[scheduler]", '[scheduler]\nqueues = ["mail", "urgent"]') + 'queue = "mail"\n'
    )
    queued = chronctl("enqueue", "echo", "--queue", "adhoc", "--in", "1h", cwd=tmp_path)
    assert queued.returncode == 0, queued.stderr
    listed = json.loads(chronctl("--json", "queues", "list", cwd=tmp_path).stdout)
    shown = json.loads(chronctl("--json", "status", cwd=tmp_path).stdout)["queues"]

    async def library() -> list[dict[str, Any]]:
        scheduler = Scheduler.from_manifest(load_manifest(path))
        try:
            return [q.to_public() for q in await scheduler.list_queues()]
        finally:
            await scheduler.stop()

    assert listed == shown == asyncio.run(library())
    assert [(q["name"], q["pending"]) for q in listed] == [
        ("adhoc", 1),
        ("mail", 0),
        ("urgent", 0),
    ]
