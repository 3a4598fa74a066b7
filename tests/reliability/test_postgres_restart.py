"""A PostgreSQL server restarted (crashed: `pg_ctl stop -m immediate`) under a running
scheduler: the workers reconnect with backoff and nothing stored is lost. The server
is one this test starts itself (Debian's `initdb`/`pg_ctl`, a temp dir, a free port),
never the shared one."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chronctl import Scheduler
from chronctl.backends.postgres import PostgresBackend
from chronctl.errors import BackendUnavailableError

from ..test_engine import wait, waiter

pytestmark = pytest.mark.reliability
Controls = tuple[Callable[[], None], Callable[[], None]]  # start, crash


def _bindir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's versioned directory."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    return None


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, Controls]]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("initdb/pg_ctl (the PostgreSQL server binaries) are not installed")
    as_user: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="chronctl-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: run the server as `postgres`
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(home)
            pytest.skip("running as root without a `postgres` user to run initdb as")
        os.chown(home, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = home / "data"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=60)

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1"

    def start() -> None:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(home / "log"),
            "-w", "start")  # fmt: skip

    def crash() -> None:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")

    start()
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", (start, crash)
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(home, ignore_errors=True)


async def test_postgres_restart_mid_run_loses_nothing(own_postgres: tuple[str, Controls]) -> None:
    url, (start, crash) = own_postgres
    s = Scheduler(PostgresBackend(url, timeout=2), workers=4, lease=5, shutdown_timeout=5)
    ran: list[int] = []

    @s.job()
    async def work(n: int) -> None:
        ran.append(n)

    first, _ = waiter(s, "task_succeeded", 10)
    async with s:
        for n in range(10):
            await s.enqueue("work", args=[n])
        await wait(first)
        crash()  # every connection drops, as in a power cut: crash recovery on start
        await asyncio.sleep(1.5)  # the outage itself is what is being tested
        start()
        everything, _ = waiter(s, "task_succeeded", 10)
        deadline = time.monotonic() + 30
        while True:
            try:
                for n in range(10, 20):
                    await s.enqueue("work", args=[n])
                break
            except BackendUnavailableError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        await wait(everything, timeout=30)
        assert s._worker_task is not None and not s._worker_task.done()  # the loop survived
    assert sorted(ran) == list(range(20))
