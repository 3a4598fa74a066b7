"""SQLite cross-process wake-ups: the inotify watch on the `-wal` file, and the poll fallback."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from chronctl.backends.sqlite import SQLiteBackend
from chronctl.backends.sqlite.wake import open_watch
from chronctl.models import Task

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


def write_from_another_process(path: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", f"open({str(path)!r}, 'a').write('x')"], check=True, timeout=60
    )


@linux_only
async def test_the_watch_fires_on_a_write_from_another_process(tmp_path: Path) -> None:
    path = tmp_path / "x.db-wal"
    path.write_text("")
    watch = open_watch(str(path))
    assert watch is not None
    never: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    try:
        assert not watch.drain()  # nothing written yet
        waiter = asyncio.create_task(watch.wait(never, 60))
        await asyncio.sleep(0)  # the watch is waiting when the write comes
        await asyncio.to_thread(write_from_another_process, path)
        assert await waiter  # the write, not the timeout, ended the wait
        assert not watch.drain() and not watch.broken
    finally:
        watch.close()


@linux_only
async def test_a_deleted_file_breaks_the_watch(tmp_path: Path) -> None:
    path = tmp_path / "x.db-wal"
    path.write_text("")
    watch = open_watch(str(path))
    assert watch is not None
    try:
        path.unlink()
        assert watch.drain() and watch.broken
    finally:
        watch.close()


def test_no_watch_where_inotify_cannot_watch(tmp_path: Path) -> None:
    assert open_watch(str(tmp_path / "absent.db-wal")) is None


@linux_only
async def test_an_idle_worker_does_not_wake_itself(tmp_path: Path) -> None:
    """An empty claim and `next_due` write nothing: the worker's own wake-up is one claim."""
    async with SQLiteBackend(tmp_path / "x.db") as backend:
        watch = open_watch(f"{tmp_path / 'x.db'}-wal")
        assert watch is not None
        try:
            await backend.enqueue(Task(job="j"))
            assert len(await backend.dequeue(5, worker="w")) == 1
            assert watch.drain()  # our own writes are seen like anyone's
            assert await backend.dequeue(5, worker="w") == []
            assert await backend.next_due() is None
            assert not watch.drain()
        finally:
            watch.close()


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "poll"])
async def test_idle_wait_wakes_on_another_connections_commit(tmp_path: Path, inotify: bool) -> None:
    """`chronctl enqueue` from another process wakes an idle SQLite worker (no 1 s poll)."""
    db = tmp_path / "x.db"
    worker_side, cli_side = SQLiteBackend(db, inotify=inotify), SQLiteBackend(db)
    await worker_side.connect()
    await cli_side.connect()
    try:
        await worker_side.wait_for_work(0.01)  # arms the watch
        expected = "inotify" if inotify and sys.platform.startswith("linux") else "poll"
        assert worker_side.wake == expected
        waiter = asyncio.create_task(worker_side.wait_for_work(60))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        await cli_side.enqueue(Task(job="j"))  # cli_side's notify() is not worker_side's
        await asyncio.wait_for(waiter, 10)
    finally:
        await cli_side.disconnect()
        await worker_side.disconnect()


@linux_only
async def test_an_idle_worker_of_another_queue_still_gets_its_task(tmp_path: Path) -> None:
    """Commits that are no work for a worker make it look less often (a hold-off that
    doubles up to 50 ms), never miss the one that is."""
    db = tmp_path / "x.db"
    worker_side, cli_side = SQLiteBackend(db), SQLiteBackend(db)
    await worker_side.connect()
    await cli_side.connect()
    mine = Task(job="j", queue="b")

    async def work() -> list[Task]:
        while True:
            claimed = await worker_side.dequeue(5, queues=["b"], worker="w")
            if claimed:
                return claimed
            await worker_side.wait_for_work(60)

    try:
        worker = asyncio.create_task(work())
        for _ in range(30):  # work for another queue's workers, one commit each
            await cli_side.enqueue(Task(job="j", queue="a"))
            await asyncio.sleep(0.005)
        await cli_side.enqueue(mine)
        claimed = await asyncio.wait_for(worker, 30)
        assert [t.id for t in claimed] == [mine.id]
    finally:
        await cli_side.disconnect()
        await worker_side.disconnect()
