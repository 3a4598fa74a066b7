"""SQLite backend: the embedded default, shared by processes on one host.

WAL lets the CLI read while `chronctl run` writes; a busy timeout makes
writers queue instead of failing. Every state change is one transaction
(BEGIN IMMEDIATE) run as a single function on aiosqlite's thread, so a
crash at any point leaves either the old or the new state. Claims take a
batch in one UPDATE ... RETURNING. Acknowledgements that arrive while one
is being written are committed together (group commit): each caller still
returns only after its own row is committed. WAL checkpoints (which fsync
the database file) run on a connection of their own, off the thread that
claims and acknowledges, so a checkpoint does not stall every Nth task.

Tables: `tasks` (one row per task, its current state), `runs` (history, one
row per finished execution), `jobs` (paused, first_seen, last_fire),
`queues` (paused), `meta` (schema version).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from ...errors import BackendError, BackendUnavailableError
from ...models import (
    ACTIVE,
    FireOutcome,
    JobState,
    Process,
    Run,
    Task,
    TaskStatus,
    dumps,
    loads,
)
from ...schedules import Schedule
from ...text import shown_path
from ..base import (
    LEASE_EXPIRED_ERROR,
    PROCESS_TTL,
    BrokerStateStore,
    BulkProgress,
    QueueInfo,
    StoppedEarly,
    settle,
)
from ..sqlrows import run_values as _run_values
from .rows import _row_run, _row_task, _task_row
from .schema import (
    _ACTIVE,
    _CREATED,
    _DONE_AT,
    _FINISHED,
    _FIRST_QUEUE,
    _INSERT_RUN,
    _INSERT_TASK,
    _KEEP_CREATED,
    _NEXT,
    _OWNED,
    _RUN_COLUMNS,
    _SCHEMA,
    _TOP_PRIORITY,
    _V1_INDEXES,
    SCHEMA_VERSION,
    _status_in,
)
from .wake import WalWatch, open_watch

T = TypeVar("T")
_LOCK_STEP_MIN = 0.0001  # seconds: first wait for another writer's lock, doubling...
_LOCK_STEP_MAX = 0.001  # ...up to this (a look per ms at most while a long write runs)
_RECOVER_EVERY = 1.0  # seconds between scans for expired leases on the claim path
_CHECKPOINT_EVERY = 0.5  # seconds between background WAL checkpoints, when something was written
# The main connection checkpoints only past this many WAL pages (SQLite's default is 1,000):
# a safety net for when the background checkpoints cannot keep up.
_WAL_AUTOCHECKPOINT = 10_000


def create_private_file(path: Path) -> None:
    """Create `path` mode 0600 if absent; refuse to follow a symlink."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if path.is_symlink():
            raise BackendError(f"refusing to open {path}: it is a symbolic link") from exc
        raise BackendUnavailableError(f"cannot open {path}: {exc.strerror}") from exc
    os.close(fd)


CROSS_PROCESS_POLL = 0.1  # seconds between looks at the WAL file while a worker is idle
_WAKE_BACKOFF_MIN = 0.001  # seconds: hold-off after a foreign commit that was no work for us
_WAKE_BACKOFF_MAX = 0.05  # ...doubling up to this
_WAKE_FUTILE_FREE = 3  # foreign wakes in a row that may find nothing before any hold-off


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class SQLiteBackend(BrokerStateStore):
    def __init__(
        self,
        db_path: str | Path = "chronctl.db",
        max_retries: int = 5,
        timeout: float = 10.0,
        *,
        inotify: bool = True,
    ) -> None:
        """`inotify=False` polls the `-wal` file even where inotify works (as elsewhere)."""
        super().__init__()
        self.db_path = Path(db_path)
        self.max_retries = max_retries
        self.timeout = timeout
        self.display_url = f"sqlite:///{shown_path(self.db_path)}"
        self._conn: aiosqlite.Connection | None = None
        self._last_recover = 0.0
        self._acks: list[tuple[Task, float, asyncio.Future[bool]]] = []
        self._writes = 0
        self._checkpointer: asyncio.Task[None] | None = None
        self._ack_writer: asyncio.Task[None] | None = None
        self._inotify = inotify
        self._wal = f"{self.db_path}-wal"
        self._watch: WalWatch | None = None
        self._wal_seen: tuple[int, int] | None = None
        self._writes_waited = 0  # self._writes when the last wait ended
        self._foreign_wake = False  # that wait ended on another process's commit
        self._backoff = 0.0  # see _hold_off
        self._futile = 0  # foreign wakes in a row whose claim found nothing
        self._futile_at = 0.0
        #: How another process's commit wakes an idle worker: "inotify" or "poll" (None
        #: until the first wait).
        self.wake: str | None = None

    # -- plumbing ----------------------------------------------------------
    def not_created(self) -> bool:
        return self.db_path.name != ":memory:" and not self.db_path.exists()

    async def connect(self) -> None:
        if self._conn is not None:
            return
        if self.db_path.name != ":memory:":
            if not self.db_path.parent.exists():
                raise BackendUnavailableError(
                    f"cannot open {self.db_path}: directory {self.db_path.parent} does not exist"
                )
            create_private_file(self.db_path)
        try:
            conn = await aiosqlite.connect(
                str(self.db_path), timeout=self.timeout, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"cannot open {self.db_path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        self._conn = conn
        try:
            await self._setup_schema()
        except BaseException:
            await self.disconnect()
            raise
        if self.db_path.name != ":memory:":
            self._checkpointer = asyncio.create_task(
                self._checkpoint_loop(), name="chronctl-sqlite-checkpoint"
            )

    async def _setup_schema(self) -> None:
        """Retry the setup while another process holds the file: SQLite answers "locked"
        without waiting out busy_timeout when two processes open a new file at once (the
        journal-mode switch and the first WAL read), so the wait is ours to do."""
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                await self._call(self._init_schema)
                return
            except BackendError as exc:
                locked = isinstance(exc.__cause__, sqlite3.OperationalError) and (
                    "locked" in str(exc.__cause__) or "busy" in str(exc.__cause__)
                )
                if not locked or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _init_schema(self, db: sqlite3.Connection) -> None:
        db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal" and self.db_path.name != ":memory:":
            raise BackendError(f"cannot use WAL journal on {self.db_path}")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT}")
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            self._migrate_publish_columns(db)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise BackendError(
                    f"{self.db_path} was written by a newer chronctl (schema {row[0]})"
                )
            elif int(row[0]) < SCHEMA_VERSION:
                self._upgrade(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def _checkpoint_loop(self) -> None:
        """PASSIVE checkpoints on a second connection: never waits for, or blocks, a writer."""
        db: sqlite3.Connection | None = None
        running: asyncio.Future[Any] | None = None
        seen = self._writes
        try:
            while True:
                await asyncio.sleep(_CHECKPOINT_EVERY)
                if self._writes == seen:
                    continue
                seen = self._writes
                try:
                    if db is None:
                        db = sqlite3.connect(
                            str(self.db_path),
                            timeout=self.timeout,
                            isolation_level=None,
                            check_same_thread=False,
                        )
                    running = asyncio.ensure_future(
                        asyncio.to_thread(db.execute, "PRAGMA wal_checkpoint(PASSIVE)")
                    )
                    await asyncio.shield(running)
                except sqlite3.Error:
                    pass  # the main connection's own checkpoints still bound the WAL
        finally:
            if running is not None and not running.done():
                await asyncio.gather(running, return_exceptions=True)  # then close
            if db is not None:
                db.close()

    @staticmethod
    def _upgrade(db: sqlite3.Connection) -> None:
        """Version 1 -> 2, in the opening transaction: only indexes change (tasks_next was
        built by the CREATE above), so no row is touched and nothing can be lost. An older
        chronctl then refuses the file (schema 2) instead of missing the new index."""
        for name in _V1_INDEXES:
            db.execute(f"DROP INDEX IF EXISTS {name}")
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    async def prepare_for_broker(self) -> None:
        """The RabbitMQ backend keeps its state here: index the tasks it has to publish.
        Plain SQLite use never needs it, and every pending task would be in it."""
        await self._tx(
            lambda db: db.execute(
                "CREATE INDEX IF NOT EXISTS tasks_publish ON tasks(scheduled_at) "
                "WHERE status = 'pending' AND publish_confirmed = 0"
            )
        )

    @staticmethod
    def _migrate_publish_columns(db: sqlite3.Connection) -> None:
        """Add the publish markers the RabbitMQ backend uses (files from before them still open;
        older chronctl versions ignore the extra columns, so the schema version stays 1)."""
        columns = {r[1] for r in db.execute("PRAGMA table_info(tasks)")}
        if "published_at" not in columns:
            db.execute("ALTER TABLE tasks ADD COLUMN published_at REAL")
        if "publish_confirmed" not in columns:
            db.execute("ALTER TABLE tasks ADD COLUMN publish_confirmed INTEGER NOT NULL DEFAULT 0")

    async def disconnect(self) -> None:
        if self._ack_writer is not None:
            await asyncio.gather(self._ack_writer, return_exceptions=True)
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            await asyncio.gather(self._checkpointer, return_exceptions=True)
            self._checkpointer = None
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        self.wake, self._wal_seen = None, None
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the connection's thread (one hop per operation, not per statement)."""
        if self._conn is None:
            await self.connect()
        assert self._conn is not None
        raw = self._conn._conn  # aiosqlite's sqlite3.Connection, only touched on its thread
        # aiosqlite's private `_execute(fn, *args)` is untyped: it returns fn(*args), run on
        # the connection's thread.
        execute = cast(Callable[..., Awaitable[T]], self._conn._execute)
        try:
            return await execute(fn, raw)
        except sqlite3.OperationalError as exc:
            raise BackendError(f"sqlite {self.db_path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise BackendError(f"sqlite {self.db_path}: {exc}") from exc

    async def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` inside BEGIN IMMEDIATE ... COMMIT, retried when the file stays locked."""

        def run(db: sqlite3.Connection) -> T:
            for attempt in range(self.max_retries + 1):
                try:
                    self._begin(db)
                except sqlite3.OperationalError as exc:
                    if "locked" in str(exc) and attempt < self.max_retries:
                        continue
                    raise
                try:
                    before = db.total_changes
                    out = fn(db)
                    db.execute("COMMIT")
                    if db.total_changes != before:
                        self._writes += 1  # wakes the background checkpoint
                    return out
                except BaseException:
                    # SQLite may have rolled back already (disk full, I/O error): a second
                    # ROLLBACK would fail and hide the real error.
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            raise AssertionError("unreachable")

        return await self._call(run)

    def _begin(self, db: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, waiting for another process's write in steps of at most
        `_LOCK_STEP_MAX`. SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... ms,
        so a lock held for 0.5 ms cost 3.5 ms, and 8 ms cost 19: every enqueue that met a
        claim (and every claim woken by an enqueue still committing) paid that."""
        db.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = time.monotonic() + self.timeout
            delay = _LOCK_STEP_MIN
            while True:
                try:
                    db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                        raise
                time.sleep(delay)  # on the connection's own thread, never the event loop
                delay = min(delay * 2, _LOCK_STEP_MAX)
        finally:
            db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")

    async def health_check(self) -> bool:
        try:
            return await self._call(lambda db: db.execute("SELECT 1").fetchone()[0] == 1)
        except BackendError:
            return False

    # -- the queue ---------------------------------------------------------
    @staticmethod
    def _insert(db: sqlite3.Connection, task: Task) -> tuple[str, bool]:
        if task.key is not None:
            row = db.execute(
                f"SELECT id FROM tasks WHERE key = ? AND status IN {_ACTIVE}", (task.key,)
            ).fetchone()
            if row is not None:
                return row[0], False
        task.status = TaskStatus.PENDING
        db.execute(_INSERT_TASK, _task_row(task))
        return task.id, True

    async def enqueue(self, task: Task) -> tuple[str, bool]:
        out = await self._tx(lambda db: self._insert(db, task))
        self.notify()
        return out

    async def enqueue_many(
        self,
        tasks: Sequence[Task],
        *,
        resume: str | None = None,
        progress: BulkProgress | None = None,
    ) -> list[tuple[str, bool]]:
        """All or nothing: one transaction (`resume` has nothing to resume).

        Cancelled, the transaction is rolled back at its next row rather than
        left to commit unseen on the connection's thread; if it committed first,
        the cancellation is too late and the result is returned.
        """
        stopped = threading.Event()

        def insert_all(db: sqlite3.Connection) -> list[tuple[str, bool]]:
            out = []
            for t in tasks:
                if stopped.is_set():
                    raise StoppedEarly  # _tx rolls back
                out.append(self._insert(db, t))
            return out

        out = await settle(self._tx(insert_all), stopped.set)
        self.notify()
        if progress is not None:
            progress(len(tasks))
        return out

    async def dequeue(
        self,
        max_items: int = 1,
        *,
        queues: Sequence[str] | None = None,
        lease: float = 30.0,
        worker: str = "",
    ) -> list[Task]:
        def claim(db: sqlite3.Connection) -> list[Task]:
            now = time.time()
            if now - self._last_recover >= _RECOVER_EVERY:
                self._recover(db, now)
                self._last_recover = now
            rowids = self._pick(db, now, max_items, queues)
            if not rowids:
                return []
            rows = db.execute(
                "UPDATE tasks SET status = 'running', started_at = ?, lease_until = ?, "
                "worker = ?, deliveries = deliveries + 1 "
                f"WHERE rowid IN ({', '.join('?' for _ in rowids)}) RETURNING rowid, *",
                [now, now + lease, worker, *rowids],
            ).fetchall()
            rows.sort(key=lambda r: (-r["priority"], r["scheduled_at"], r["rowid"]))
            return [_row_task(r) for r in rows]

        out = await self._tx(claim)
        self._claimed(bool(out))
        return out

    @staticmethod
    def _queues_at(
        db: sqlite3.Connection, priority: int, wanted: Sequence[str] | None, paused: Sequence[str]
    ) -> list[str]:
        """The unpaused queues holding pending tasks of `priority`: the named ones, or every
        one, found one seek each (MIN(queue) > the last) rather than by reading the rows."""
        if wanted is not None:
            return [q for q in wanted if q not in paused]
        out: list[str] = []
        queue = db.execute(_FIRST_QUEUE, (priority,)).fetchone()[0]
        while queue is not None:
            if queue not in paused:
                out.append(queue)
            queue = db.execute(f"{_FIRST_QUEUE} AND queue > ?", (priority, queue)).fetchone()[0]
        return out

    @classmethod
    def _pick(
        cls, db: sqlite3.Connection, now: float, limit: int, queues: Sequence[str] | None
    ) -> list[int]:
        """Rowids of the `limit` tasks to claim: priority desc, scheduled_at, FIFO.

        One index seek per priority and queue present, each reading due rows already
        in order, so a claim costs the same with 20 or 2,000,000 tasks pending. (One
        ORDER BY over every due row made each claim sort the whole backlog.)
        """
        paused = [r[0] for r in db.execute("SELECT name FROM queues WHERE paused = 1")]
        wanted = None if queues is None else list(dict.fromkeys(queues))
        picked: list[int] = []
        priority = db.execute(_TOP_PRIORITY).fetchone()[0]
        while priority is not None and len(picked) < limit:
            names = cls._queues_at(db, priority, wanted, paused)
            if not names and wanted is not None:
                return picked  # every named queue is paused
            found: list[tuple[float, int]] = []
            for queue in names:
                found += db.execute(
                    f"SELECT scheduled_at, rowid FROM {_NEXT} AND priority = ? AND queue = ? "
                    "AND scheduled_at <= ? ORDER BY scheduled_at, rowid LIMIT ?",
                    (priority, queue, now, limit - len(picked)),
                ).fetchall()
            if len(names) > 1:  # merge the queues' runs (rows do not compare: sort by value)
                found.sort(key=lambda row: (row[0], row[1]))
            picked += [rowid for _, rowid in found[: limit - len(picked)]]
            priority = db.execute(f"{_TOP_PRIORITY} AND priority < ?", (priority,)).fetchone()[0]
        return picked

    @staticmethod
    def _recover(db: sqlite3.Connection, now: float) -> int:
        expired = db.execute(
            "SELECT * FROM tasks WHERE status = 'running' AND lease_until <= ?", (now,)
        ).fetchall()
        for row in expired:
            task = _row_task(row)
            task.finished_at = now
            task.error = LEASE_EXPIRED_ERROR
            task.traceback = None
            db.execute(_INSERT_RUN, _run_values(Run.of(task, TaskStatus.FAILED)))
            dead = task.attempt + 1 > task.max_retries
            db.execute(
                "UPDATE tasks SET attempt = attempt + 1, error = ?, traceback = NULL, "
                "lease_until = NULL, worker = NULL, started_at = NULL, status = ?, "
                f"finished_at = ?, {_KEEP_CREATED}, scheduled_at = ?, published_at = NULL, "
                "publish_confirmed = 0 "
                "WHERE id = ?",
                (
                    LEASE_EXPIRED_ERROR,
                    "dead" if dead else "pending",
                    now if dead else None,
                    task.scheduled_at if dead else now,
                    task.id,
                ),
            )
        return len(expired)

    async def recover_expired(self) -> int:
        out = await self._tx(lambda db: self._recover(db, time.time()))
        if out:
            self.notify()
        return out

    @staticmethod
    def _ack_batch(
        db: sqlite3.Connection, batch: Sequence[tuple[Task, float, object]]
    ) -> list[bool]:
        return [SQLiteBackend._ack(db, task, finished) for task, finished, _ in batch]

    @staticmethod
    def _ack(db: sqlite3.Connection, task: Task, finished: float) -> bool:
        cur = db.execute(
            "UPDATE tasks SET status = 'succeeded', result = ?, output = ?, error = NULL, "
            f"traceback = NULL, finished_at = ?, lease_until = NULL WHERE {_OWNED}",
            (
                None if task.result is None else dumps(task.result),
                task.output,
                finished,
                task.id,
                task.worker,
                task.deliveries,
            ),
        )
        if cur.rowcount != 1:
            return False
        # The history row straight from the stored row: no JSON round trip of args/kwargs.
        db.execute(
            f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) SELECT id, job, queue, priority, "
            "attempt, 'succeeded', args, kwargs, scheduled_at, started_at, finished_at, "
            "result, NULL, NULL, output FROM tasks WHERE id = ?",
            (task.id,),
        )
        return True

    async def acknowledge(self, task: Task) -> bool:
        finished = task.finished_at or time.time()
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._acks.append((task, finished, done))
        if self._ack_writer is None:
            self._ack_writer = asyncio.create_task(self._write_acks())
        return await done

    async def _write_acks(self) -> None:
        """Commit every waiting acknowledgement in one transaction, until none is left."""
        try:
            while self._acks:
                batch, self._acks = self._acks, []
                results: Sequence[bool | Exception]
                try:
                    results = await self._tx(partial(self._ack_batch, batch=batch))
                except Exception as exc:
                    if len(batch) > 1:  # one bad row must not fail the others: one by one
                        self._acks[:0] = batch
                        await self._write_acks_one_by_one()
                        continue
                    results = [exc]
                for (_, _, done), result in zip(batch, results, strict=True):
                    if done.done():
                        continue
                    if isinstance(result, BaseException):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
        finally:
            self._ack_writer = None

    async def _write_acks_one_by_one(self) -> None:
        batch, self._acks = self._acks, []
        for task, finished, done in batch:
            try:
                result = await self._tx(partial(self._ack, task=task, finished=finished))
            except Exception as exc:
                if not done.done():
                    done.set_exception(exc)
                continue
            if not done.done():
                done.set_result(result)

    async def reject(self, task: Task, *, requeue: bool, retry_at: float | None = None) -> bool:
        finished = task.finished_at or time.time()

        def rej(db: sqlite3.Connection) -> bool:
            row = db.execute(
                f"SELECT * FROM tasks WHERE {_OWNED}", (task.id, task.worker, task.deliveries)
            ).fetchone()
            if row is None:
                return False
            stored = _row_task(row)
            stored.error, stored.traceback, stored.output = task.error, task.traceback, task.output
            stored.finished_at = finished
            db.execute(_INSERT_RUN, _run_values(Run.of(stored, TaskStatus.FAILED)))
            if requeue:
                db.execute(
                    "UPDATE tasks SET status = 'pending', attempt = attempt + 1, error = ?, "
                    f"traceback = ?, output = ?, {_KEEP_CREATED}, scheduled_at = ?, "
                    "started_at = NULL, "
                    "finished_at = NULL, lease_until = NULL, worker = NULL, "
                    "published_at = NULL, publish_confirmed = 0 WHERE id = ?",
                    (
                        task.error,
                        task.traceback,
                        task.output,
                        retry_at if retry_at is not None else finished,
                        task.id,
                    ),
                )
            else:
                db.execute(
                    "UPDATE tasks SET status = 'dead', attempt = attempt + 1, error = ?, "
                    "traceback = ?, output = ?, finished_at = ?, lease_until = NULL "
                    "WHERE id = ?",
                    (task.error, task.traceback, task.output, finished, task.id),
                )
            return True

        out = await self._tx(rej)
        if requeue:
            self.notify()
        return out

    async def release(self, tasks: Iterable[Task], *, at: float | None = None) -> None:
        # With `at`, the task is published again when due (a broker-delivered backend).
        unpublish = 1 if at is not None else 0
        items = [(at, unpublish, unpublish, t.id, t.worker, t.deliveries) for t in tasks]

        def rel(db: sqlite3.Connection) -> None:
            db.executemany(
                "UPDATE tasks SET status = 'pending', started_at = NULL, lease_until = NULL, "
                f"worker = NULL, {_KEEP_CREATED}, scheduled_at = COALESCE(?, scheduled_at), "
                "published_at = CASE WHEN ? THEN NULL ELSE published_at END, "
                "publish_confirmed = CASE WHEN ? THEN 0 ELSE publish_confirmed END "
                f"WHERE {_OWNED}",
                items,
            )

        await self._tx(rel)
        self.notify()

    async def extend_leases(self, tasks: Sequence[Task], lease: float) -> set[str]:
        def extend(db: sqlite3.Connection) -> set[str]:
            until = time.time() + lease
            lost = set()
            for task in tasks:
                cur = db.execute(
                    f"UPDATE tasks SET lease_until = ? WHERE {_OWNED}",
                    (until, task.id, task.worker, task.deliveries),
                )
                if cur.rowcount == 0:
                    lost.add(task.id)
            return lost

        if not tasks:
            return set()
        return await self._tx(extend)

    async def wait_for_work(self, timeout: float) -> None:
        """Wake on this process's own changes at once, and on another process's commit
        (`chronctl enqueue`, a web app) too: every commit in WAL mode writes the `-wal`
        file, which inotify watches (see wake.py). Without inotify, the file's size
        and mtime are looked at every `CROSS_PROCESS_POLL` (one stat() on the event loop,
        far under 1% of a core). A change we made ourselves only costs one empty claim."""
        if self._conn is None or self.db_path.name == ":memory:":
            await super().wait_for_work(timeout)
            return
        woken = asyncio.ensure_future(self._wakeup.wait())  # one waiter for the whole wait
        try:
            if self._watch is not None and self._watch.broken:
                self._watch.close()
                self._watch, self.wake = None, "poll"
            if self.wake is None:
                self._watch = open_watch(self._wal) if self._inotify else None
                self.wake = "poll" if self._watch is None else "inotify"
                # A commit between our last claim and now left no event: look once more.
                if self._watch is not None:
                    return
            if self._watch is not None:
                written = await self._watch.wait(woken, timeout)
                if written and not woken.done() and self._writes == self._writes_waited:
                    await self._hold_off(woken)  # another process's commit, not ours
                    self._foreign_wake = True
            else:
                await self._poll_wal(woken, timeout)
        finally:
            woken.cancel()
            self._wakeup.clear()
            self._writes_waited = self._writes

    async def _hold_off(self, woken: asyncio.Future[Any]) -> None:
        """Look less often while other processes' commits keep not being work for us
        (idle workers of another queue on a busy file): after each such wake that found
        nothing, wait twice as long (up to `_WAKE_BACKOFF_MAX`) before the next look.
        A claim that finds work, or a quiet spell, ends it; the events stay queued, so
        nothing is missed, only looked at later."""
        if not self._backoff:
            return
        since = time.monotonic() - self._futile_at
        if since > 2 * _WAKE_BACKOFF_MAX:
            self._futile, self._backoff = 0, 0.0
        elif since < self._backoff:
            await asyncio.wait({woken}, timeout=self._backoff - since)

    def _claimed(self, found: bool) -> None:
        """What the claim after a foreign wake found sets the next hold-off: none until
        `_WAKE_FUTILE_FREE` such claims in a row found nothing (a stray one costs nothing)."""
        if not self._foreign_wake:
            return
        self._foreign_wake = False
        if found:
            self._futile, self._backoff = 0, 0.0
            return
        now = time.monotonic()
        if now - self._futile_at > 2 * _WAKE_BACKOFF_MAX:  # after a quiet spell: count anew
            self._futile, self._backoff = 0, 0.0
        self._futile += 1
        self._futile_at = now
        if self._futile > _WAKE_FUTILE_FREE:
            self._backoff = min(max(self._backoff * 2, _WAKE_BACKOFF_MIN), _WAKE_BACKOFF_MAX)

    async def _poll_wal(self, woken: asyncio.Future[Any], timeout: float) -> None:
        """The fallback: look at the `-wal` file's size and mtime until they change. The
        stamp is kept between waits, so a commit during a claim is not missed."""
        end = time.monotonic() + timeout
        seen = self._wal_seen if self._wal_seen is not None else _stamp(self._wal)
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    return
                done, _ = await asyncio.wait({woken}, timeout=min(left, CROSS_PROCESS_POLL))
                if done or _stamp(self._wal) != seen:
                    return
        finally:
            self._wal_seen = _stamp(self._wal)

    async def next_due(self, queues: Sequence[str] | None = None) -> float | None:
        if queues is not None and not queues:
            return None

        def query(db: sqlite3.Connection) -> float | None:
            paused = [r[0] for r in db.execute("SELECT name FROM queues WHERE paused = 1")]
            wanted = None if queues is None else list(dict.fromkeys(queues))
            # MIN per priority and queue on tasks_next: each is one seek.
            earliest: float | None = None
            priority = db.execute(_TOP_PRIORITY).fetchone()[0]
            while priority is not None:
                for queue in self._queues_at(db, priority, wanted, paused):
                    at = db.execute(
                        f"SELECT MIN(scheduled_at) FROM {_NEXT} AND priority = ? AND queue = ?",
                        (priority, queue),
                    ).fetchone()[0]
                    if at is not None and (earliest is None or at < earliest):
                        earliest = at
                priority = db.execute(f"{_TOP_PRIORITY} AND priority < ?", (priority,)).fetchone()[
                    0
                ]
            return earliest

        return await self._call(query)

    async def get_queue_size(self, queue: str = "default") -> int:
        return await self._call(
            lambda db: db.execute(
                "SELECT COUNT(*) FROM tasks WHERE status = 'pending' AND queue = ?", (queue,)
            ).fetchone()[0]
        )

    async def clear(self, queue: str | None = None) -> int:
        def clr(db: sqlite3.Connection) -> int:
            if queue is None:
                return db.execute("DELETE FROM tasks WHERE status = 'pending'").rowcount
            return db.execute(
                "DELETE FROM tasks WHERE status = 'pending' AND queue = ?", (queue,)
            ).rowcount

        return await self._tx(clr)

    # -- state -------------------------------------------------------------
    async def get_task(self, task_id: str) -> Task | None:
        def get(db: sqlite3.Connection) -> Task | None:
            row = db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
            return _row_task(row) if row else None

        return await self._call(get)

    async def list_tasks(
        self,
        *,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        job: str | None = None,
        queue: str | None = None,
        limit: int | None = 100,
    ) -> list[Task]:
        clauses: list[str] = []
        params: list[Any] = []
        if status:
            statuses = [status] if isinstance(status, str) else list(status)
            clauses.append(_status_in({TaskStatus(s).value for s in statuses}))
        if job:
            clauses.append("job = ?")
            params.append(job)
        if queue:
            clauses.append("queue = ?")
            params.append(queue)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT * FROM tasks {where} ORDER BY {_CREATED} DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return await self._call(lambda db: [_row_task(r) for r in db.execute(sql, params)])

    async def cancel_task(self, task_id: str) -> bool:
        return await self._tx(
            lambda db: (
                db.execute(
                    "UPDATE tasks SET status = 'cancelled', finished_at = ?, lease_until = NULL "
                    f"WHERE id = ? AND status IN {_ACTIVE}",
                    (time.time(), task_id),
                ).rowcount
                == 1
            )
        )

    async def history(self, job: str | None = None, limit: int | None = 50) -> list[Run]:
        sql = "SELECT * FROM runs"
        params: list[Any] = []
        if job:
            sql += " WHERE job = ?"
            params.append(job)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return await self._call(lambda db: [_row_run(r) for r in db.execute(sql, params)])

    async def retry_dead(self, task_ids: Sequence[str] | None = None) -> int:
        def retry(db: sqlite3.Connection) -> int:
            now = time.time()
            # A key already taken by a newer active task is dropped, not duplicated.
            sets = (
                f"status = 'pending', attempt = 0, {_KEEP_CREATED}, scheduled_at = ?, "
                "started_at = NULL, "
                "finished_at = NULL, published_at = NULL, publish_confirmed = 0, "
                "key = CASE WHEN key IS NOT NULL AND EXISTS (SELECT 1 FROM "
                f"tasks AS t WHERE t.key = tasks.key AND t.status IN {_ACTIVE}) THEN NULL "
                "ELSE key END"
            )
            if task_ids is None:
                return db.execute(
                    f"UPDATE tasks SET {sets} WHERE status = 'dead' AND {_FINISHED}", (now,)
                ).rowcount
            count = 0
            for task_id in task_ids:
                count += db.execute(
                    f"UPDATE tasks SET {sets} WHERE id = ? AND status = 'dead'", (now, task_id)
                ).rowcount
            return count

        out = await self._tx(retry)
        self.notify()
        return out

    async def purge_dead(
        self,
        older_than: float | None = None,
        *,
        limit: int | None = None,
        job: str | None = None,
        exclude_jobs: Collection[str] = (),
    ) -> int:
        cutoff = older_than if older_than is not None else float("inf")
        scoped = job is not None or bool(exclude_jobs)

        def purge(db: sqlite3.Connection) -> int:
            jobs = _scope(db, job, exclude_jobs)
            if scoped and not jobs:
                return 0
            # Scoped: tasks_job_done, one range per job (rows of other jobs never read).
            where = f"status = 'dead' AND {_FINISHED} AND {_DONE_AT} < ?"
            params: tuple[Any, ...] = (cutoff,)
            if scoped:
                where = f"job IN ({', '.join('?' for _ in jobs)}) AND {where}"
                params = (*jobs, cutoff)
            if limit is not None:  # one short transaction: at most `limit`, oldest rows first
                where = f"rowid IN (SELECT rowid FROM tasks WHERE {where} LIMIT ?)"
                params = (*params, limit)
            return db.execute(f"DELETE FROM tasks WHERE {where}", params).rowcount

        return await self._tx(purge)

    async def count_dead(self) -> int:
        return await self._call(
            lambda db: db.execute(
                f"SELECT COUNT(*) FROM tasks WHERE status = 'dead' AND {_FINISHED}"
            ).fetchone()[0]
        )

    async def cleanup(
        self,
        older_than: float,
        statuses: Sequence[TaskStatus] | None = None,
        *,
        limit: int | None = None,
        job: str | None = None,
        exclude_jobs: Collection[str] = (),
    ) -> int:
        wanted = (
            [TaskStatus(s).value for s in statuses]
            if statuses
            else ["succeeded", "dead", "cancelled"]
        )
        run_statuses = [*wanted, "failed"] if "dead" in wanted else wanted
        run_marks = ", ".join("?" for _ in run_statuses)
        scoped = job is not None or bool(exclude_jobs)

        def clean(db: sqlite3.Connection) -> int:
            jobs = _scope(db, job, exclude_jobs)
            if scoped and not jobs:
                return 0
            tasks = f"{_status_in(set(wanted))} AND {_DONE_AT} < ?"
            runs = f"status IN ({run_marks}) AND finished_at < ?"
            order = "ORDER BY finished_at"
            first: tuple[str, ...] = ()
            if scoped:
                # One range of tasks_job_done / runs_job_finished per job: a kept job's
                # rows are never read by the steps of the jobs around it.
                marks = ", ".join("?" for _ in jobs)
                tasks = f"job IN ({marks}) AND {tasks}"
                runs = f"job IN ({marks}) AND {runs}"
                order = ""  # per job, oldest first (the index's order)
                first = tuple(jobs)
            if limit is not None:
                # One short transaction. The finished rows come from the tasks_done index in
                # rowid order, oldest first, so the scan stops after `limit` old ones.
                tasks = f"rowid IN (SELECT rowid FROM tasks WHERE {tasks} LIMIT ?)"
                runs = f"id IN (SELECT id FROM runs WHERE {runs} {order} LIMIT ?)"
            more = () if limit is None else (limit,)
            count = db.execute(
                f"DELETE FROM tasks WHERE {tasks}", (*first, older_than, *more)
            ).rowcount
            history = db.execute(
                f"DELETE FROM runs WHERE {runs}", (*first, *run_statuses, older_than, *more)
            ).rowcount
            return count if limit is None else count + history

        return await self._tx(clean)

    async def list_queues(self) -> list[QueueInfo]:
        def query(db: sqlite3.Connection) -> list[QueueInfo]:
            out: dict[str, QueueInfo] = {}
            # One status at a time: each reads its partial index (tasks_next, tasks_lease).
            for status, rows in (
                ("pending", f"{_NEXT} GROUP BY queue"),
                ("running", "tasks WHERE status = 'running' GROUP BY queue"),
            ):
                for name, count in db.execute(f"SELECT queue, COUNT(*) FROM {rows}"):
                    setattr(out.setdefault(name, QueueInfo(name)), status, count)
            for (name,) in db.execute("SELECT name FROM queues WHERE paused = 1"):
                out.setdefault(name, QueueInfo(name)).paused = True
            return [out[k] for k in sorted(out)]

        return await self._call(query)

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        await self._tx(
            lambda db: db.execute(
                "INSERT INTO queues (name, paused) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET paused = excluded.paused",
                (queue, int(paused)),
            )
        )
        if not paused:
            self.notify()

    async def get_note(self, name: str) -> str | None:
        row = await self._call(
            lambda db: db.execute(
                "SELECT value FROM meta WHERE key = ?", (f"note:{name}",)
            ).fetchone()
        )
        return None if row is None else row[0]

    async def set_note(self, name: str, value: str) -> None:
        await self._tx(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"note:{name}", value)
            )
        )

    # -- stored schedules --------------------------------------------------------
    async def list_schedules(self) -> list[Schedule]:
        rows = await self._call(
            lambda db: db.execute("SELECT record FROM schedules ORDER BY name").fetchall()
        )
        return [Schedule.loads(row[0]) for row in rows]

    async def get_schedule(self, name: str) -> Schedule | None:
        row = await self._call(
            lambda db: db.execute("SELECT record FROM schedules WHERE name = ?", (name,)).fetchone()
        )
        return None if row is None else Schedule.loads(row[0])

    async def put_schedule(self, schedule: Schedule, *, create: bool) -> bool:
        values = (schedule.name, schedule.dumps())
        sql = (
            "INSERT OR IGNORE INTO schedules (name, record) VALUES (?, ?)"
            if create
            else "UPDATE schedules SET record = ?2 WHERE name = ?1"
        )
        return await self._change_schedules(lambda db: db.execute(sql, values).rowcount > 0)

    async def delete_schedule(self, name: str) -> bool:
        return await self._change_schedules(
            lambda db: db.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount > 0
        )

    async def _change_schedules(self, change: Callable[[sqlite3.Connection], bool]) -> bool:
        """One transaction: the change, and the version bump when a row changed. Other
        processes see the version move at their next check (SQLite has no push)."""

        def run(db: sqlite3.Connection) -> bool:
            changed = change(db)
            if changed:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schedules_version', '1') "
                    "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                )
            return changed

        changed = await self._tx(run)
        if changed:
            self.schedules_changed.set()
        return changed

    async def schedules_version(self) -> int:
        row = await self._call(
            lambda db: db.execute(
                "SELECT value FROM meta WHERE key = 'schedules_version'"
            ).fetchone()
        )
        return 0 if row is None else int(row[0])

    # -- job state ---------------------------------------------------------
    @staticmethod
    def _row_state(row: sqlite3.Row) -> JobState:
        return JobState(row["name"], row["first_seen"], row["last_fire"], bool(row["paused"]))

    async def job_state(self, job: str, now: float) -> JobState:
        def get(db: sqlite3.Connection) -> JobState:
            db.execute("INSERT OR IGNORE INTO jobs (name, first_seen) VALUES (?, ?)", (job, now))
            return self._row_state(
                db.execute("SELECT * FROM jobs WHERE name = ?", (job,)).fetchone()
            )

        return await self._tx(get)

    async def list_job_states(self) -> list[JobState]:
        return await self._call(
            lambda db: [self._row_state(r) for r in db.execute("SELECT * FROM jobs ORDER BY name")]
        )

    async def set_job_paused(self, job: str, paused: bool) -> None:
        await self._tx(
            lambda db: db.execute(
                "INSERT INTO jobs (name, first_seen, paused) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET paused = excluded.paused",
                (job, time.time(), int(paused)),
            )
        )

    async def record_fire(
        self, job: str, fire_time: float, task: Task | None, max_instances: int | None
    ) -> FireOutcome:
        def fire(db: sqlite3.Connection) -> FireOutcome:
            db.execute(
                "INSERT OR IGNORE INTO jobs (name, first_seen) VALUES (?, ?)", (job, fire_time)
            )
            row = db.execute(
                "UPDATE jobs SET last_fire = ? WHERE name = ? "
                "AND (last_fire IS NULL OR last_fire < ?) RETURNING paused",
                (fire_time, job, fire_time),
            ).fetchone()
            if row is None:
                return FireOutcome.DUPLICATE
            if task is None:
                return FireOutcome.MISSED
            if row[0]:
                return FireOutcome.PAUSED
            if max_instances is not None:
                active = db.execute(
                    f"SELECT COUNT(*) FROM tasks WHERE job = ? AND status IN {_ACTIVE}", (job,)
                ).fetchone()[0]
                if active >= max_instances:
                    return FireOutcome.SKIPPED
            self._insert(db, task)
            return FireOutcome.ENQUEUED

        out = await self._tx(fire)
        if out is FireOutcome.ENQUEUED:
            self.notify()
        return out

    # -- processes ---------------------------------------------------------------
    async def beat(self, process: Process) -> None:
        def put(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO processes (id, host, pid, role, started, last_beat, queues) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "last_beat = excluded.last_beat",
                (
                    process.id,
                    process.host,
                    process.pid,
                    process.role,
                    process.started,
                    process.last_beat,
                    None if process.queues is None else dumps(process.queues),
                ),
            )
            db.execute(
                "DELETE FROM processes WHERE last_beat < ?", (process.last_beat - PROCESS_TTL,)
            )

        await self._tx(put)

    async def list_processes(self) -> list[Process]:
        def read(db: sqlite3.Connection) -> list[Process]:
            return [
                Process(
                    r["id"],
                    r["host"],
                    r["pid"],
                    r["role"],
                    r["started"],
                    r["last_beat"],
                    loads(r["queues"]),
                )
                for r in db.execute("SELECT * FROM processes ORDER BY started")
            ]

        return await self._call(read)

    async def forget_process(self, process_id: str) -> None:
        await self._tx(lambda db: db.execute("DELETE FROM processes WHERE id = ?", (process_id,)))

    # -- migration target ----------------------------------------------------
    async def import_tasks(self, tasks: Sequence[Task]) -> int:
        def put(db: sqlite3.Connection) -> int:
            added = 0
            for task in tasks:
                if db.execute("SELECT 1 FROM tasks WHERE id = ?", (task.id,)).fetchone():
                    continue
                if (
                    task.key is not None
                    and task.status in ACTIVE
                    and db.execute(
                        f"SELECT 1 FROM tasks WHERE key = ? AND status IN {_ACTIVE}", (task.key,)
                    ).fetchone()
                ):
                    continue  # the target already has an active task with this key
                db.execute(_INSERT_TASK, _task_row(task))
                added += 1
            return added

        added = await self._tx(put)
        self.notify()
        return added

    async def import_runs(self, runs: Sequence[Run]) -> int:
        def put(db: sqlite3.Connection) -> int:
            added = 0
            for run in runs:
                if db.execute(
                    "SELECT 1 FROM runs WHERE task_id = ? AND attempt = ? AND finished_at = ?",
                    (run.task_id, run.attempt, run.finished_at),
                ).fetchone():
                    continue
                db.execute(_INSERT_RUN, _run_values(run))
                added += 1
            return added

        return await self._tx(put)

    async def import_job_states(self, states: Sequence[JobState]) -> int:
        def put(db: sqlite3.Connection) -> int:
            for state in states:
                db.execute(
                    "INSERT INTO jobs (name, first_seen, last_fire, paused) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET "
                    "first_seen = MIN(first_seen, excluded.first_seen), "
                    "last_fire = MAX(COALESCE(last_fire, excluded.last_fire), "
                    "COALESCE(excluded.last_fire, last_fire)), "
                    "paused = MAX(paused, excluded.paused)",
                    (state.name, state.first_seen, state.last_fire, int(state.paused)),
                )
            return len(states)

        return await self._tx(put)

    async def count_active(self, job: str) -> int:
        return await self._call(
            lambda db: db.execute(
                f"SELECT COUNT(*) FROM tasks WHERE job = ? AND status IN {_ACTIVE}", (job,)
            ).fetchone()[0]
        )

    # -- delivery by a message broker (RabbitMQBackend keeps its state here) ----------
    # `published_at` stamps a pending task handed to the broker, `publish_confirmed` says the
    # broker confirmed it. A stamp never confirmed (the publisher crashed in between) is
    # claimed again after `stale` seconds, so no task is lost between the two steps.
    async def claim_for_publish(
        self, now: float, limit: int = 500, *, ids: Sequence[str] | None = None, stale: float = 30.0
    ) -> list[Task]:
        """Atomically stamp due, pending, unpublished tasks as being published; return them.

        Two processes never get the same task (one UPDATE ... RETURNING)."""
        where = (
            "status = 'pending' AND scheduled_at <= ? AND publish_confirmed = 0 "
            "AND (published_at IS NULL OR published_at < ?)"
        )
        params: list[Any] = [now, now, now - stale]
        if ids is not None:
            if not ids:
                return []
            where += f" AND id IN ({', '.join('?' for _ in ids)})"
            params.extend(ids)
        params.append(limit)

        def claim(db: sqlite3.Connection) -> list[Task]:
            rows = db.execute(
                "UPDATE tasks SET published_at = ? WHERE rowid IN ("
                f"SELECT rowid FROM tasks WHERE {where} "
                "ORDER BY priority DESC, scheduled_at, rowid LIMIT ?) RETURNING rowid, *",
                params,
            ).fetchall()
            rows.sort(key=lambda r: (-r["priority"], r["scheduled_at"], r["rowid"]))
            return [_row_task(r) for r in rows]

        return await self._tx(claim)

    async def confirm_published(self, ids: Sequence[str]) -> None:
        """The broker confirmed these tasks' messages."""
        if ids:
            await self._tx(
                lambda db: db.executemany(
                    "UPDATE tasks SET publish_confirmed = 1"
                    " WHERE id = ? AND published_at IS NOT NULL",
                    [(i,) for i in ids],
                )
            )

    async def unpublish(self, ids: Sequence[str]) -> None:
        """Publishing failed: let the next pump publish these tasks again."""
        if ids:
            await self._tx(
                lambda db: db.executemany(
                    "UPDATE tasks SET published_at = NULL, publish_confirmed = 0 WHERE id = ?",
                    [(i,) for i in ids],
                )
            )

    async def next_publish(
        self, queues: Sequence[str] | None = None, stale: float = 30.0
    ) -> float | None:
        """When the publish pump next has work: the earliest unpublished pending task."""
        params: list[Any] = [stale]
        where = (
            "status = 'pending' AND publish_confirmed = 0 "
            "AND queue NOT IN (SELECT name FROM queues WHERE paused = 1)"
        )
        if queues is not None:
            where += f" AND queue IN ({', '.join('?' for _ in queues)})"
            params.extend(queues)
        sql = (
            "SELECT MIN(CASE WHEN published_at IS NULL THEN scheduled_at "
            f"ELSE MAX(scheduled_at, published_at + ?) END) FROM tasks WHERE {where}"
        )
        return await self._call(lambda db: db.execute(sql, params).fetchone()[0])

    async def claim_ids(
        self,
        ids: Sequence[str],
        *,
        lease: float,
        worker: str,
        lost: Iterable[str] = (),
        lost_error: str = LEASE_EXPIRED_ERROR,
    ) -> tuple[list[Task], list[str]]:
        """Claim the named tasks for `worker` (a broker delivered them); one transaction.

        A due pending task becomes running, like dequeue. A task in `lost` (its message was
        redelivered because the consumer holding it died) that is still running counts a
        failed attempt with `lost_error` and is taken over, or goes dead when out of
        retries. Returns (claimed tasks, ids that went dead); other ids (finished,
        cancelled, absent, not due, running elsewhere) are neither."""
        lost_ids = set(lost)

        def claim(db: sqlite3.Connection) -> tuple[list[Task], list[str]]:
            now = time.time()
            claimed: list[Task] = []
            dead: list[str] = []
            for task_id in ids:
                row = db.execute(
                    "UPDATE tasks SET status = 'running', started_at = ?, lease_until = ?, "
                    "worker = ?, deliveries = deliveries + 1 WHERE id = ? "
                    "AND status = 'pending' AND scheduled_at <= ? RETURNING *",
                    (now, now + lease, worker, task_id, now),
                ).fetchone()
                if row is not None:
                    claimed.append(_row_task(row))
                    continue
                if task_id not in lost_ids:
                    continue
                row = db.execute(
                    "SELECT * FROM tasks WHERE id = ? AND status = 'running'", (task_id,)
                ).fetchone()
                if row is None:
                    continue
                task = _row_task(row)
                task.finished_at, task.error, task.traceback = now, lost_error, None
                db.execute(_INSERT_RUN, _run_values(Run.of(task, TaskStatus.FAILED)))
                if task.attempt + 1 > task.max_retries:
                    db.execute(
                        "UPDATE tasks SET status = 'dead', attempt = attempt + 1, error = ?, "
                        "traceback = NULL, finished_at = ?, lease_until = NULL WHERE id = ?",
                        (lost_error, now, task_id),
                    )
                    dead.append(task_id)
                    continue
                row = db.execute(
                    "UPDATE tasks SET attempt = attempt + 1, error = ?, traceback = NULL, "
                    "started_at = ?, lease_until = ?, worker = ?, deliveries = deliveries + 1 "
                    "WHERE id = ? RETURNING *",
                    (lost_error, now, now + lease, worker, task_id),
                ).fetchone()
                claimed.append(_row_task(row))
            claimed.sort(key=lambda t: (-t.priority, t.scheduled_at, t.created_at))
            return claimed, dead

        if not ids:
            return [], []
        return await self._tx(claim)


def _scope(db: sqlite3.Connection, job: str | None, exclude_jobs: Collection[str]) -> list[str]:
    """The jobs a scoped cleanup step may delete rows of: `job`, or every job with tasks
    or history rows but those in `exclude_jobs` (read one index seek per job from
    tasks_job and runs_job, never a scan of their rows). Empty when not scoped."""
    if job is not None:
        return [] if job in exclude_jobs else [job]
    if not exclude_jobs:
        return []
    names: set[str] = set()
    for table in ("tasks", "runs"):
        last = ""
        while True:
            row = db.execute(
                f"SELECT job FROM {table} WHERE job > ? ORDER BY job LIMIT 1", (last,)
            ).fetchone()
            if row is None:
                break
            last = row[0]
            names.add(last)
    return sorted(names - set(exclude_jobs))
