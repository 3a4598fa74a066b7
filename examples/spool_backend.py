"""A custom backend in the required core's ten methods: a spool directory.

Each pending task is a JSON file under `pending/<queue>/`, named so that a
sorted listing is the claim order (priority, then due time, then arrival). A
worker claims a task by renaming its file into `running/`: a rename is atomic,
so of two workers racing for one file exactly one wins, in one process or many,
which is all `chronctl run` needs to execute enqueued tasks from another
process's `chronctl enqueue`.

What it leaves out, chronctl names in one line ("spool:///x does not support
dead letters"): task listing, history, dead letter commands, queue pausing,
fire records (so jobs with a trigger are refused, not fired twice), heartbeats
and migration. A task out of retries is kept in `dead/` for a person to read.

Install it as a plugin by declaring the scheme in your distribution's metadata:

    [project.entry-points."chronctl.backends"]
    spool = "examples.spool_backend:create"

then `backend = "spool:///var/spool/chronctl"` in the manifest (a relative path
is relative to the manifest's directory).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

from chronctl.backends.base import QueueBackend
from chronctl.models import Task, TaskStatus


def create(url: str, base: Path | None) -> SpoolBackend:
    """The entry point: `spool:///rel/dir` (to `base`) or `spool:////abs/dir`."""
    path = Path(url.split("://", 1)[1][1:])
    if not path.is_absolute() and base is not None:
        path = base / path
    return SpoolBackend(path, display_url=url)


class SpoolBackend(QueueBackend):
    def __init__(self, root: Path, display_url: str = "") -> None:
        super().__init__()
        self.root = root
        self.display_url = display_url or f"spool:///{root}"

    # -- lifecycle -----------------------------------------------------------
    async def connect(self) -> None:
        for part in ("pending", "running", "dead", "tmp"):
            (self.root / part).mkdir(parents=True, exist_ok=True)

    async def disconnect(self) -> None:
        pass  # no connection to close: every call works on the files

    async def health_check(self) -> bool:
        return (self.root / "pending").is_dir()

    # -- the queue -------------------------------------------------------------
    async def enqueue(self, task: Task) -> tuple[str, bool]:
        task.status = TaskStatus.PENDING
        self._write(self._pending_path(task), task)
        self.notify()  # a worker in this process wakes at once; others poll
        return task.id, True

    async def dequeue(
        self,
        max_items: int = 1,
        *,
        queues: Sequence[str] | None = None,
        lease: float = 30.0,
        worker: str = "",
    ) -> list[Task]:
        now = time.time()
        claimed: list[Task] = []
        for path in self._pending_files(queues):
            if len(claimed) >= max_items:
                break
            if float(path.name.split("~")[1]) > now:
                continue  # not due yet
            mine = self.root / "running" / f"{path.name.rsplit('~', 1)[1]}"
            try:
                os.rename(path, mine)  # the claim: one rename wins
            except FileNotFoundError:
                continue  # another worker took it
            task = self._read(mine)
            task.status, task.worker = TaskStatus.RUNNING, worker
            task.started_at, task.lease_until = now, now + lease
            task.deliveries += 1
            self._write(mine, task)
            claimed.append(task)
        return claimed

    async def acknowledge(self, task: Task) -> bool:
        return self._finish(task)

    async def reject(self, task: Task, *, requeue: bool, retry_at: float | None = None) -> bool:
        if not self._finish(task):
            return False
        if requeue:
            task.attempt += 1
            task.status, task.scheduled_at = TaskStatus.PENDING, retry_at or time.time()
            self._write(self._pending_path(task), task)
        else:
            task.status = TaskStatus.DEAD
            self._write(self.root / "dead" / f"{task.id}.json", task)
        return True

    async def release(self, tasks: Iterable[Task], *, at: float | None = None) -> None:
        for task in tasks:
            if self._finish(task):
                task.status = TaskStatus.PENDING
                task.scheduled_at = at or task.scheduled_at
                self._write(self._pending_path(task), task)

    async def get_queue_size(self, queue: str = "default") -> int:
        folder = self.root / "pending" / quote(queue, safe="")
        return len(list(folder.iterdir())) if folder.is_dir() else 0

    async def clear(self, queue: str | None = None) -> int:
        count = 0
        for path in self._pending_files(None if queue is None else [queue]):
            try:
                path.unlink()
                count += 1
            except FileNotFoundError:
                pass  # claimed meanwhile: it is running, not pending
        return count

    # -- files -----------------------------------------------------------------
    def _pending_path(self, task: Task) -> Path:
        folder = self.root / "pending" / quote(task.queue, safe="")
        folder.mkdir(exist_ok=True)
        # Sorted names are the claim order: priority (high first), due time, arrival.
        order = f"{99 - task.priority:03d}~{task.scheduled_at:017.6f}~{task.created_at:017.6f}"
        return folder / f"{order}~{task.id}"

    def _pending_files(self, queues: Sequence[str] | None) -> list[Path]:
        pending = self.root / "pending"
        folders = (
            [pending / quote(q, safe="") for q in queues]
            if queues is not None
            else list(pending.iterdir())
        )
        files = [f for folder in folders if folder.is_dir() for f in folder.iterdir()]
        return sorted(files, key=lambda f: f.name)

    def _finish(self, task: Task) -> bool:
        """Take the task out of `running/`, if this delivery of it is still there."""
        path = self.root / "running" / task.id
        try:
            current = self._read(path)
        except FileNotFoundError:
            return False
        if current.deliveries != task.deliveries:
            return False  # a newer delivery owns it
        path.unlink()
        return True

    def _write(self, path: Path, task: Task) -> None:
        tmp = self.root / "tmp" / f"{task.id}.{os.getpid()}"
        tmp.write_text(json.dumps(task.to_record()))
        os.replace(tmp, path)  # readers never see half a file

    def _read(self, path: Path) -> Task:
        return Task.from_record(json.loads(path.read_text()))
