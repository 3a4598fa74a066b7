"""PostgresBackend: many `chronctl run` processes on many hosts share one PostgreSQL.

Every state change is one statement or one transaction, so a crash at any point
leaves either the old or the new state. A claim is one statement for the whole
batch: the due tasks in claim order, `FOR UPDATE SKIP LOCKED` so concurrent
workers never wait on (or take) each other's rows, turned `running` with a lease.
Expired leases are recovered before claiming (at most once a second), counting
the lost attempt. Acknowledgements that arrive while one is being written are
committed together (group commit), each caller still learning its own outcome.
Idle workers sleep on LISTEN/NOTIFY (listen.py), with a re-check every
`SAFETY_RECHECK` seconds in case a notification was lost.

Tables (schema.py), all in the backend's own schema: `tasks`, `runs` (history),
`jobs` (paused, first_seen, last_fire), `queues` (paused), `processes`
(heartbeats), `rate` (shared rate limits), `schedules` (stored schedules), `meta`
(schema version, the schedules' version, notes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any, TypeVar

from ...errors import BackendError, BackendUnavailableError
from ...models import FireOutcome, JobState, Process, Run, Task, TaskStatus, dumps
from ...schedules import Schedule
from ..base import (
    LEASE_EXPIRED_ERROR,
    PROCESS_TTL,
    BrokerStateStore,
    BulkProgress,
    QueueInfo,
    SharedRateLimit,
    StoppedEarly,
    settle,
)
from .listen import SCHEDULES, WakeListener, channel_name
from .rows import row_process, row_run, row_task, run_columns, task_columns
from .schema import (
    ACTIVE,
    DDL,
    IMPORT_RUNS,
    INSERT_TASKS,
    PAUSED,
    RUN_SELECT,
    SCHEMA_VERSION,
    TASK_SELECT,
)
from .url import DEFAULT_SCHEMA, check_schema, parse_postgres_url

log = logging.getLogger("chronctl.postgres")
T = TypeVar("T")

_RECOVER_EVERY = 1.0  # seconds between scans for expired leases on the claim path
#: Seconds an idle worker sleeps at most without a notification (one lost in an outage).
SAFETY_RECHECK = 5.0
_UNLISTENED_RECHECK = 1.0  # ...and while the LISTEN connection is down
_FINISHED_AT = "COALESCE(finished_at, created_at)"  # the tasks_done index's expression
# Every job with tasks or history rows but those in $1, one index probe per job (a loose
# index scan of tasks_job and runs_job: PostgreSQL has no skip scan of its own).
_JOBS_WALK = " UNION ".join(
    f"""(WITH RECURSIVE walk(job) AS (
        (SELECT job FROM {{s}}.{table} ORDER BY job LIMIT 1)
        UNION ALL
        SELECT (SELECT t.job FROM {{s}}.{table} t WHERE t.job > walk.job ORDER BY t.job LIMIT 1)
        FROM walk WHERE walk.job IS NOT NULL
    ) SELECT job FROM walk WHERE job IS NOT NULL)"""
    for table in ("tasks", "runs")
)
_JOBS_WALK = (
    f"SELECT COALESCE(array_agg(job ORDER BY job), '{{}}') FROM ({_JOBS_WALK}) AS j "
    "WHERE job <> ALL($1::text[])"
)
# The oldest finished tasks of jobs $1 with statuses $2 before $3, at most $4 (NULL: all):
# per job and status, an ordered range of tasks_job_done (the ORDER BY is its last column,
# so the planner reads it there and stops, whatever its statistics say; a plain
# `job = ANY(...)` may be read from tasks_job, every row of a kept job filtered).
_SCOPED_TASKS = (
    "SELECT x.id FROM unnest($1::text[]) AS j(job) CROSS JOIN unnest($2::text[]) AS s(status) "
    "CROSS JOIN LATERAL (SELECT t.id FROM {s}.tasks t WHERE t.job = j.job "
    f"AND t.status = s.status AND t.status NOT IN {ACTIVE} AND {_FINISHED_AT} < $3 "
    f"ORDER BY {_FINISHED_AT} LIMIT $4) AS x LIMIT $4"
)
# The same for history rows, from runs_job_finished.
_SCOPED_RUNS = (
    "SELECT x.id FROM unnest($1::text[]) AS j(job) CROSS JOIN LATERAL (SELECT r.id "
    "FROM {s}.runs r WHERE r.job = j.job AND r.status = ANY($2::text[]) "
    "AND r.finished_at < $3 ORDER BY r.finished_at LIMIT $4) AS x LIMIT $4"
)
# A claim reads the due tasks of one priority level (of one queue, for a worker of named
# queues) at a time: each level is a range of tasks_next (tasks_queue) from its first row
# to the first not yet due, so neither tasks scheduled later nor other queues' tasks are
# read past, however many there are. The levels present are found by a loose index scan
# (one seek per level); rows a level locks beyond the batch are let go at commit.
_LEVELS = (
    "lv AS ((SELECT priority FROM {s}.tasks WHERE status = 'pending' "
    "ORDER BY priority DESC LIMIT 1) UNION ALL SELECT (SELECT t.priority "
    "FROM {s}.tasks t WHERE t.status = 'pending' AND t.priority < lv.priority "
    "ORDER BY t.priority DESC LIMIT 1) FROM lv WHERE lv.priority IS NOT NULL)"
)
_QUEUE_LEVELS = (
    "lv AS (SELECT q.name AS queue, (SELECT t.priority FROM {s}.tasks t "
    "WHERE t.status = 'pending' AND t.queue = q.name ORDER BY t.priority DESC LIMIT 1) "
    f"AS priority FROM unnest($5::text[]) AS q(name) WHERE q.name <> ALL({PAUSED}) "
    "UNION ALL SELECT lv.queue, (SELECT t.priority FROM {s}.tasks t "
    "WHERE t.status = 'pending' AND t.queue = lv.queue AND t.priority < lv.priority "
    "ORDER BY t.priority DESC LIMIT 1) FROM lv WHERE lv.priority IS NOT NULL)"
)
_PICK = (
    "SELECT c.id FROM lv, LATERAL (SELECT id, scheduled_at, seq FROM {s}.tasks "
    "WHERE status = 'pending' AND priority = lv.priority AND scheduled_at <= $1 "
    f"AND queue <> ALL({PAUSED}) "
    "ORDER BY scheduled_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED) c "
    "WHERE lv.priority IS NOT NULL ORDER BY lv.priority DESC, c.scheduled_at, c.seq LIMIT $4"
)
_QUEUE_PICK = (
    "SELECT c.id FROM lv, LATERAL (SELECT id, scheduled_at, seq FROM {s}.tasks "
    "WHERE status = 'pending' AND queue = lv.queue AND priority = lv.priority "
    "AND scheduled_at <= $1 ORDER BY scheduled_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED) c "
    "WHERE lv.priority IS NOT NULL ORDER BY lv.priority DESC, c.scheduled_at, c.seq LIMIT $4"
)
#: Per connection. JIT compiles a plan whose estimated cost is high, and a claim's (a
#: recursive level scan) is estimated high while it reads a few rows: 80 ms compiling a
#: 1 ms statement, measured. chronctl's statements are all short.
_SETTINGS = {"jit": "off"}
#: In a statement's RETURNING: its commit does not wait for the WAL flush. Only for a
#: claim: one lost to a server crash leaves its tasks pending, to run again, as a worker
#: killed with -9 does (at least once either way); every other write waits, so nothing
#: enqueued, finished or fired is lost. (SQLite's synchronous=NORMAL: the same trade.)
_NO_FLUSH_WAIT = "set_config('synchronous_commit', 'off', true)"
_KEY_RACES = 10  # inserts tried while the key's holder keeps finishing in between


class PostgresBackend(BrokerStateStore, SharedRateLimit):
    shared = True

    def __init__(
        self,
        dsn: str = "postgresql://127.0.0.1:5432/postgres",
        *,
        schema: str | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        timeout: float = 10.0,
    ) -> None:
        """`schema` (else the URL's `?schema=`, else `chronctl`) holds every table;
        `min_size`/`max_size` bound the connection pool (one more connection listens)."""
        super().__init__()
        from .. import redact_url

        self.url = dsn
        self.display_url = redact_url(dsn)
        self.dsn, options = parse_postgres_url(dsn)
        self.schema = check_schema(schema or options.get("schema") or DEFAULT_SCHEMA)
        self.min_size = min_size if min_size is not None else options.get("min_size", 1)
        self.max_size = max_size if max_size is not None else options.get("max_size", 10)
        self.max_size = max(self.max_size, self.min_size, 1)
        self.timeout = timeout
        self._s = f'"{self.schema}"'
        self.channel = channel_name(self.schema)
        self._origin = uuid.uuid4().hex
        self._pool: Any = None
        self._listener: WakeListener | None = None
        self._last_recover = 0.0
        self._acks: list[tuple[Task, float, asyncio.Future[bool]]] = []
        self._ack_writer: asyncio.Task[None] | None = None
        self._sql: dict[str, str] = {}
        self._connecting = asyncio.Lock()  # concurrent first calls open one pool, not several

    # -- plumbing ----------------------------------------------------------
    def _q(self, sql: str) -> str:
        """`sql` with `{s}` as this backend's schema (each text replaced once, then cached:
        a claim or an ack should not pay a string scan)."""
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = sql.replace("{s}", self._s)
        return out

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        from .. import redact_url

        reason = redact_url((str(exc) or type(exc).__name__).splitlines()[0])
        return BackendUnavailableError(f"postgres {self.display_url} unreachable: {reason}")

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """asyncpg's errors as one line without credentials: the server gone (or not
        there yet) is BackendUnavailableError, which workers retry with backoff."""
        import asyncpg

        try:
            yield
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresConnectionError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.OperatorInterventionError,
        ) as exc:
            raise self._unavailable(exc) from None
        except asyncpg.PostgresError as exc:
            raise BackendError(f"postgres {self.display_url}: {exc}") from None

    async def _open_connection(self) -> Any:
        import asyncpg

        return await asyncpg.connect(self.dsn, timeout=self.timeout, server_settings=_SETTINGS)

    async def connect(self) -> None:
        async with self._connecting:
            if self._pool is None:
                await self._connect()

    async def _connect(self) -> None:
        try:
            import asyncpg
        except ImportError:
            from .. import missing_extra

            raise missing_extra("asyncpg", "postgres", "postgresql://") from None
        async with self._errors():
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.timeout,
                command_timeout=None,
                server_settings=_SETTINGS,
                reset=_keep_session,
            )
        try:
            async with self._errors(), pool.acquire() as conn:
                await self._setup_schema(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._listener = WakeListener(
            self._open_connection,
            self.channel,
            self._origin,
            self.notify,
            on_schedules=self.schedules_changed.set,
        )
        self._listener.start()

    async def _setup_schema(self, conn: Any) -> None:
        """Create the schema (or check its version) in one transaction, holding an advisory
        lock so that processes opening a new database at once do not race to create it."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"chronctl:{self._s}")
            exists = await conn.fetchval("SELECT to_regclass($1)", f"{self._s}.meta")
            if exists:
                version = await conn.fetchval(
                    self._q("SELECT value FROM {s}.meta WHERE key = 'schema_version'")
                )
                if version is not None and int(version) > SCHEMA_VERSION:
                    raise BackendError(
                        f"postgres {self.display_url}: schema {self.schema} was written by a "
                        f"newer chronctl (schema version {version}, this one knows "
                        f"{SCHEMA_VERSION})"
                    )
                if version is not None and int(version) == SCHEMA_VERSION:
                    return
            for statement in DDL:
                await conn.execute(self._q(statement))
            await conn.execute(
                self._q(
                    "INSERT INTO {s}.meta (key, value) VALUES ('schema_version', $1) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                ),
                str(SCHEMA_VERSION),
            )

    async def disconnect(self) -> None:
        if self._ack_writer is not None:
            await asyncio.gather(self._ack_writer, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except Exception:  # a connection never given back, or the server gone: cut them
                pool.terminate()

    async def _ready(self) -> Any:
        if self._pool is None:
            await self.connect()
        return self._pool

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        pool = await self._ready()
        async with self._errors():
            rows: list[Any] = await pool.fetch(self._q(sql), *args)
        return rows

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        pool = await self._ready()
        async with self._errors():
            return await pool.fetchval(self._q(sql), *args)

    async def _execute(self, sql: str, *args: Any) -> int:
        """Run a statement; how many rows it changed."""
        pool = await self._ready()
        async with self._errors():
            status: str = await pool.execute(self._q(sql), *args)
        return _count(status)

    async def _tx(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """`fn(connection)` inside one transaction."""
        pool = await self._ready()
        async with self._errors(), pool.acquire() as conn, conn.transaction():
            return await fn(conn)

    async def health_check(self) -> bool:
        try:
            return bool(await self._fetchval("SELECT 1") == 1)
        except BackendError:
            return False

    async def drop_schema(self) -> None:
        """Delete everything this backend stored: its schema (tests; operators use
        `DROP SCHEMA name CASCADE`, see the README)."""
        await self._execute("DROP SCHEMA IF EXISTS {s} CASCADE")

    def _notify_sql(self) -> str:
        return f"pg_notify('{self.channel}', '{self._origin}')"

    def _notify_schedules_sql(self) -> str:
        return f"pg_notify('{self.channel}', '{SCHEDULES}{self._origin}')"

    # -- the queue ---------------------------------------------------------
    async def _insert(self, conn: Any, tasks: Sequence[Task]) -> list[tuple[str, bool]]:
        """Store `tasks` as pending in one statement; (id, created) for each, in order.
        A task whose key an active task holds gets that task's id; the workers hear of
        the new ones at commit."""
        for t in tasks:
            t.status = TaskStatus.PENDING
        sql = self._q(f"{INSERT_TASKS}, {self._notify_sql()}")
        stored = {r[0] for r in await conn.fetch(sql, *task_columns(tasks))}
        held: dict[str, str] = {}
        keys = [t.key for t in tasks if t.id not in stored and t.key is not None]
        if keys:
            rows = await conn.fetch(
                self._q(
                    f"SELECT key, id FROM {{s}}.tasks WHERE key = ANY($1::text[]) "
                    f"AND status IN {ACTIVE}"
                ),
                keys,
            )
            held = {r[0]: r[1] for r in rows}
        out: list[tuple[str, bool]] = []
        for t in tasks:
            if t.id in stored:
                out.append((t.id, True))
                stored.discard(t.id)  # the same Task twice in a batch: stored once
            elif t.key is not None and t.key in held:
                out.append((held[t.key], False))
            else:
                out.append((t.id, False))  # that id is stored already
        return out

    async def enqueue(self, task: Task) -> tuple[str, bool]:
        """One statement, no explicit transaction (one round trip, not three: this is on
        the path of every task's latency). A key held by an active task is looked up
        after; if that task finished in between, the insert is tried again."""
        task.status = TaskStatus.PENDING
        insert = f"{INSERT_TASKS}, {self._notify_sql()}"
        for _ in range(_KEY_RACES):
            if await self._fetch(insert, *task_columns([task])):
                self.notify()
                return task.id, True
            if task.key is None:
                return task.id, False  # a task with this id is stored already
            held = await self._fetchval(
                f"SELECT id FROM {{s}}.tasks WHERE key = $1 AND status IN {ACTIVE}", task.key
            )
            if held is not None:
                return str(held), False
        raise BackendError(
            f"postgres {self.display_url}: key {task.key!r} kept changing hands; try again"
        )

    async def enqueue_many(
        self,
        tasks: Sequence[Task],
        *,
        resume: str | None = None,
        progress: BulkProgress | None = None,
    ) -> list[tuple[str, bool]]:
        """All or nothing: one transaction (`resume` has nothing to resume). Cancelled
        before the commit went out, it rolls back; after, the result is returned."""
        if not tasks:
            return []
        stopped = asyncio.Event()

        async def insert_all(conn: Any) -> list[tuple[str, bool]]:
            out = await self._insert(conn, tasks)
            if stopped.is_set():
                raise StoppedEarly  # the transaction rolls back
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
        if queues is not None and not queues:
            return []
        now = time.time()
        if now - self._last_recover >= _RECOVER_EVERY:
            self._last_recover = now
            await self._recover(now)
        args: list[Any] = [now, now + lease, worker, max_items]
        levels, pick = _LEVELS, _PICK
        if queues is not None:
            levels, pick = _QUEUE_LEVELS, _QUEUE_PICK
            args.append(list(dict.fromkeys(queues)))
        rows = await self._fetch(
            f"WITH RECURSIVE {levels}, picked AS ({pick}) "
            "UPDATE {s}.tasks t SET status = 'running', started_at = $1, lease_until = $2, "
            "worker = $3, deliveries = t.deliveries + 1 FROM picked WHERE t.id = picked.id "
            f"RETURNING t.seq, {_prefixed('t', TASK_SELECT)}, {_NO_FLUSH_WAIT}",
            *args,
        )
        rows.sort(key=lambda r: (-r["priority"], r["scheduled_at"], r["seq"]))
        return [row_task(r) for r in rows]

    async def _recover(self, now: float) -> int:
        """Expired leases back to pending (the attempt counted as failed, one history row),
        or dead when out of retries: one statement."""
        rows = await self._fetch(
            "WITH expired AS (SELECT * FROM {s}.tasks WHERE status = 'running' "
            "AND lease_until <= $1 FOR UPDATE SKIP LOCKED), "
            f"history AS (INSERT INTO {{s}}.runs ({RUN_SELECT}) SELECT id, job, queue, "
            "priority, attempt, 'failed', args, kwargs, scheduled_at, started_at, $1, result, "
            "$2, NULL, output FROM expired) "
            "UPDATE {s}.tasks t SET attempt = t.attempt + 1, error = $2, traceback = NULL, "
            "lease_until = NULL, worker = NULL, started_at = NULL, "
            "status = CASE WHEN t.attempt + 1 > t.max_retries THEN 'dead' ELSE 'pending' END, "
            "finished_at = CASE WHEN t.attempt + 1 > t.max_retries THEN $1 END, "
            "scheduled_at = CASE WHEN t.attempt + 1 > t.max_retries THEN t.scheduled_at "
            "ELSE $1 END, published_at = NULL, publish_confirmed = FALSE "
            f"FROM expired e WHERE t.id = e.id RETURNING t.status, {self._notify_sql()}",
            now,
            LEASE_EXPIRED_ERROR,
        )
        if any(r[0] == "pending" for r in rows):
            self.notify()
        return len(rows)

    async def recover_expired(self) -> int:
        return await self._recover(time.time())

    async def acknowledge(self, task: Task) -> bool:
        """Group commit: acknowledgements that arrive while one is being written are
        written together, in one statement."""
        finished = task.finished_at or time.time()
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._acks.append((task, finished, done))
        if self._ack_writer is None:
            self._ack_writer = asyncio.create_task(self._write_acks())
        return await done

    async def _write_acks(self) -> None:
        try:
            while self._acks:
                batch, self._acks = self._acks[:500], self._acks[500:]
                try:
                    acked = await self._ack_batch(batch)
                except Exception as exc:
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for t, _, done in batch:
                    mark = (t.id, t.deliveries)
                    if not done.done():
                        done.set_result(mark in acked)
                    acked.discard(mark)  # the same delivery twice: only one is the ack
        finally:
            self._ack_writer = None

    async def _ack_batch(self, batch: Sequence[tuple[Task, float, object]]) -> set[tuple[str, int]]:
        rows = await self._fetch(
            "WITH acked AS (UPDATE {s}.tasks t SET status = 'succeeded', result = a.result, "
            "output = a.output, error = NULL, traceback = NULL, finished_at = a.finished, "
            "lease_until = NULL FROM unnest($1::text[], $2::text[], $3::int8[], $4::float8[], "
            "$5::text[], $6::text[]) AS a(id, worker, deliveries, finished, result, output) "
            "WHERE t.id = a.id AND t.status = 'running' "
            "AND t.worker IS NOT DISTINCT FROM a.worker AND t.deliveries = a.deliveries "
            "RETURNING t.*), "
            f"history AS (INSERT INTO {{s}}.runs ({RUN_SELECT}) SELECT id, job, queue, "
            "priority, attempt, 'succeeded', args, kwargs, scheduled_at, started_at, "
            "finished_at, result, NULL, NULL, output FROM acked) "
            "SELECT id, deliveries FROM acked",
            [t.id for t, _, _ in batch],
            [t.worker for t, _, _ in batch],
            [t.deliveries for t, _, _ in batch],
            [finished for _, finished, _ in batch],
            [None if t.result is None else dumps(t.result) for t, _, _ in batch],
            [t.output for t, _, _ in batch],
        )
        return {(r[0], r[1]) for r in rows}

    async def reject(self, task: Task, *, requeue: bool, retry_at: float | None = None) -> bool:
        finished = task.finished_at or time.time()
        more: tuple[float, ...] = ()
        if requeue:
            change = (
                "status = 'pending', scheduled_at = $8, started_at = NULL, finished_at = NULL, "
                "lease_until = NULL, worker = NULL, published_at = NULL, "
                f"publish_confirmed = FALSE, attempt = t.attempt + 1 FROM cur "
                f"WHERE t.id = cur.id RETURNING t.id, {self._notify_sql()}"
            )
            more = (retry_at if retry_at is not None else finished,)
        else:
            change = (
                "status = 'dead', finished_at = $4, lease_until = NULL, "
                "attempt = t.attempt + 1 FROM cur WHERE t.id = cur.id RETURNING t.id"
            )
        rows = await self._fetch(
            "WITH cur AS (SELECT * FROM {s}.tasks WHERE id = $1 AND status = 'running' "
            "AND worker IS NOT DISTINCT FROM $2 AND deliveries = $3 FOR UPDATE), "
            f"history AS (INSERT INTO {{s}}.runs ({RUN_SELECT}) SELECT id, job, queue, "
            "priority, attempt, 'failed', args, kwargs, scheduled_at, started_at, $4, result, "
            "$5, $6, $7 FROM cur) "
            f"UPDATE {{s}}.tasks t SET error = $5, traceback = $6, output = $7, {change}",
            task.id,
            task.worker,
            task.deliveries,
            finished,
            task.error,
            task.traceback,
            task.output,
            *more,
        )
        if rows and requeue:
            self.notify()
        return bool(rows)

    async def release(self, tasks: Iterable[Task], *, at: float | None = None) -> None:
        items = list(tasks)
        if not items:
            return
        await self._execute(
            "UPDATE {s}.tasks t SET status = 'pending', started_at = NULL, lease_until = NULL, "
            "worker = NULL, scheduled_at = COALESCE($4, t.scheduled_at), "
            "published_at = CASE WHEN $4 IS NULL THEN t.published_at END, "
            "publish_confirmed = $4 IS NULL AND t.publish_confirmed "
            "FROM unnest($1::text[], $2::text[], $3::int8[]) AS r(id, worker, deliveries) "
            "WHERE t.id = r.id AND t.status = 'running' "
            "AND t.worker IS NOT DISTINCT FROM r.worker AND t.deliveries = r.deliveries "
            f"RETURNING {self._notify_sql()}",
            [t.id for t in items],
            [t.worker for t in items],
            [t.deliveries for t in items],
            at,
        )
        self.notify()

    async def extend_leases(self, tasks: Sequence[Task], lease: float) -> set[str]:
        if not tasks:
            return set()
        rows = await self._fetch(
            "UPDATE {s}.tasks t SET lease_until = $4 "
            "FROM unnest($1::text[], $2::text[], $3::int8[]) AS r(id, worker, deliveries) "
            "WHERE t.id = r.id AND t.status = 'running' "
            "AND t.worker IS NOT DISTINCT FROM r.worker AND t.deliveries = r.deliveries "
            "RETURNING t.id",
            [t.id for t in tasks],
            [t.worker for t in tasks],
            [t.deliveries for t in tasks],
            time.time() + lease,
        )
        kept = {r[0] for r in rows}
        return {t.id for t in tasks} - kept

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep until a notification (ours or another process's) or `timeout`, at most
        `SAFETY_RECHECK` seconds (1 s while the LISTEN connection is down)."""
        listening = self._listener is not None and self._listener.connected
        await super().wait_for_work(
            min(timeout, SAFETY_RECHECK if listening else _UNLISTENED_RECHECK)
        )

    async def next_due(self, queues: Sequence[str] | None = None) -> float | None:
        if queues is not None and not queues:
            return None
        # The first row of each level the claim would read (no index on the due time
        # alone: the planner would then scan it for claims, past every other level).
        if queues is None:
            value = await self._fetchval(
                f"WITH RECURSIVE {_LEVELS} SELECT MIN((SELECT scheduled_at FROM {{s}}.tasks "
                "WHERE status = 'pending' AND priority = lv.priority "
                f"AND queue <> ALL({PAUSED}) ORDER BY scheduled_at, seq LIMIT 1)) "
                "FROM lv WHERE lv.priority IS NOT NULL"
            )
        else:
            value = await self._fetchval(
                f"WITH RECURSIVE {_QUEUE_LEVELS.replace('$5', '$1')} SELECT MIN((SELECT "
                "scheduled_at FROM {s}.tasks WHERE status = 'pending' AND queue = lv.queue "
                "AND priority = lv.priority ORDER BY scheduled_at, seq LIMIT 1)) "
                "FROM lv WHERE lv.priority IS NOT NULL",
                list(dict.fromkeys(queues)),
            )
        return None if value is None else float(value)

    async def get_queue_size(self, queue: str = "default") -> int:
        return int(
            await self._fetchval(
                "SELECT COUNT(*) FROM {s}.tasks WHERE status = 'pending' AND queue = $1", queue
            )
        )

    async def clear(self, queue: str | None = None) -> int:
        if queue is None:
            return await self._execute("DELETE FROM {s}.tasks WHERE status = 'pending'")
        return await self._execute(
            "DELETE FROM {s}.tasks WHERE status = 'pending' AND queue = $1", queue
        )

    # -- state -------------------------------------------------------------
    async def get_task(self, task_id: str) -> Task | None:
        rows = await self._fetch(f"SELECT {TASK_SELECT} FROM {{s}}.tasks WHERE id = $1", task_id)
        return row_task(rows[0]) if rows else None

    async def list_tasks(
        self,
        *,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        job: str | None = None,
        queue: str | None = None,
        limit: int | None = 100,
    ) -> list[Task]:
        clauses: list[str] = []
        args: list[Any] = []
        if status:
            statuses = [status] if isinstance(status, str) else list(status)
            clauses.append(_status_in({TaskStatus(s).value for s in statuses}))
        if job:
            args.append(job)
            clauses.append(f"job = ${len(args)}")
        if queue:
            args.append(queue)
            clauses.append(f"queue = ${len(args)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {TASK_SELECT} FROM {{s}}.tasks {where} ORDER BY created_at DESC, seq DESC"
        if limit is not None:
            args.append(limit)
            sql += f" LIMIT ${len(args)}"
        return [row_task(r) for r in await self._fetch(sql, *args)]

    async def cancel_task(self, task_id: str) -> bool:
        changed = await self._execute(
            "UPDATE {s}.tasks SET status = 'cancelled', finished_at = $2, lease_until = NULL "
            f"WHERE id = $1 AND status IN {ACTIVE}",
            task_id,
            time.time(),
        )
        return changed == 1

    async def history(self, job: str | None = None, limit: int | None = 50) -> list[Run]:
        sql = "SELECT * FROM {s}.runs"
        args: list[Any] = []
        if job:
            args.append(job)
            sql += " WHERE job = $1"
        sql += " ORDER BY id DESC"
        if limit is not None:
            args.append(limit)
            sql += f" LIMIT ${len(args)}"
        return [row_run(r) for r in await self._fetch(sql, *args)]

    async def retry_dead(self, task_ids: Sequence[str] | None = None) -> int:
        """Dead -> pending, attempt 0. A key held by an active task (or by a newer dead
        task retried in the same call) is dropped, not duplicated."""
        sets = (
            "status = 'pending', attempt = 0, scheduled_at = $1, started_at = NULL, "
            "finished_at = NULL, published_at = NULL, publish_confirmed = FALSE, "
            "key = CASE WHEN t.key IS NOT NULL AND EXISTS (SELECT 1 FROM {s}.tasks o "
            f"WHERE o.key = t.key AND (o.status IN {ACTIVE} OR (o.status = 'dead' "
            "AND o.seq > t.seq AND ($2::text[] IS NULL OR o.id = ANY($2::text[]))))) "
            "THEN NULL ELSE t.key END"
        )
        count = await self._execute(
            f"UPDATE {{s}}.tasks t SET {sets} WHERE t.status = 'dead' "
            "AND ($2::text[] IS NULL OR t.id = ANY($2::text[])) "
            f"RETURNING {self._notify_sql()}",
            time.time(),
            None if task_ids is None else list(task_ids),
        )
        self.notify()
        return count

    async def purge_dead(
        self,
        older_than: float | None = None,
        *,
        limit: int | None = None,
        job: str | None = None,
        exclude_jobs: Collection[str] = (),
    ) -> int:
        cutoff = older_than if older_than is not None else float("inf")
        if job is not None or exclude_jobs:
            return await self._tx(
                lambda conn: self._purge_scoped(conn, cutoff, limit, job, exclude_jobs)
            )
        where = f"status = 'dead' AND {_FINISHED_AT} < $1"
        if limit is None:
            return await self._execute(f"DELETE FROM {{s}}.tasks WHERE {where}", cutoff)
        return await self._execute(
            f"DELETE FROM {{s}}.tasks WHERE id IN (SELECT id FROM {{s}}.tasks WHERE {where} "
            f"AND status NOT IN {ACTIVE} ORDER BY {_FINISHED_AT} LIMIT $2)",
            cutoff,
            limit,
        )

    async def _scope(self, conn: Any, job: str | None, exclude_jobs: Collection[str]) -> list[str]:
        """The jobs a scoped step may delete rows of: `job`, or every job with tasks or
        history rows but `exclude_jobs`, walked one index probe per job (tasks_job,
        runs_job), never reading the rows themselves."""
        if job is not None:
            return [] if job in exclude_jobs else [job]
        names: list[str] = await conn.fetchval(self._q(_JOBS_WALK), list(exclude_jobs))
        return names

    async def _purge_scoped(
        self,
        conn: Any,
        cutoff: float,
        limit: int | None,
        job: str | None,
        exclude_jobs: Collection[str],
    ) -> int:
        jobs = await self._scope(conn, job, exclude_jobs)
        if not jobs:
            return 0
        return _count(
            await conn.execute(
                self._q(f"DELETE FROM {{s}}.tasks WHERE id IN ({_SCOPED_TASKS})"),
                jobs,
                ["dead"],
                cutoff,
                limit,
            )
        )

    async def count_dead(self) -> int:
        return int(
            await self._fetchval(
                f"SELECT COUNT(*) FROM {{s}}.tasks WHERE status = 'dead' AND status NOT IN {ACTIVE}"
            )
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
        if job is not None or exclude_jobs:
            return await self._tx(
                lambda conn: self._clean_scoped(
                    conn, older_than, wanted, run_statuses, limit, job, exclude_jobs
                )
            )
        tasks = f"status = ANY($1::text[]) AND status NOT IN {ACTIVE} AND {_FINISHED_AT} < $2"
        runs = "status = ANY($1::text[]) AND finished_at < $2"
        more: tuple[int, ...] = ()
        if limit is not None:  # one short step: the oldest `limit` of each, by index
            tasks = (
                f"id IN (SELECT id FROM {{s}}.tasks WHERE {tasks} ORDER BY {_FINISHED_AT} LIMIT $3)"
            )
            runs = f"id IN (SELECT id FROM {{s}}.runs WHERE {runs} ORDER BY finished_at LIMIT $3)"
            more = (limit,)

        async def clean(conn: Any) -> int:
            count = _count(
                await conn.execute(
                    self._q(f"DELETE FROM {{s}}.tasks WHERE {tasks}"), wanted, older_than, *more
                )
            )
            history = _count(
                await conn.execute(
                    self._q(f"DELETE FROM {{s}}.runs WHERE {runs}"),
                    run_statuses,
                    older_than,
                    *more,
                )
            )
            return count if limit is None else count + history

        return await self._tx(clean)

    async def _clean_scoped(
        self,
        conn: Any,
        older_than: float,
        wanted: list[str],
        run_statuses: list[str],
        limit: int | None,
        job: str | None,
        exclude_jobs: Collection[str],
    ) -> int:
        """`cleanup` of some jobs only: tasks_job_done and runs_job_finished give each
        job's oldest rows as one range, so a kept job's rows are never read."""
        jobs = await self._scope(conn, job, exclude_jobs)
        if not jobs:
            return 0
        count = _count(
            await conn.execute(
                self._q(f"DELETE FROM {{s}}.tasks WHERE id IN ({_SCOPED_TASKS})"),
                jobs,
                wanted,
                older_than,
                limit,
            )
        )
        history = _count(
            await conn.execute(
                self._q(f"DELETE FROM {{s}}.runs WHERE id IN ({_SCOPED_RUNS})"),
                jobs,
                run_statuses,
                older_than,
                limit,
            )
        )
        return count if limit is None else count + history

    async def get_note(self, name: str) -> str | None:
        value = await self._fetchval("SELECT value FROM {s}.meta WHERE key = $1", f"note:{name}")
        return None if value is None else str(value)

    async def set_note(self, name: str, value: str) -> None:
        await self._execute(
            "INSERT INTO {s}.meta (key, value) VALUES ($1, $2) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            f"note:{name}",
            value,
        )

    async def list_queues(self) -> list[QueueInfo]:
        rows = await self._fetch(
            f"SELECT queue, status, COUNT(*) FROM {{s}}.tasks WHERE status IN {ACTIVE} "
            "GROUP BY queue, status"
        )
        out: dict[str, QueueInfo] = {}
        for name, status, count in rows:
            setattr(out.setdefault(name, QueueInfo(name)), status, int(count))
        for (name,) in await self._fetch("SELECT name FROM {s}.queues WHERE paused"):
            out.setdefault(name, QueueInfo(name)).paused = True
        return [out[k] for k in sorted(out)]

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        await self._execute(
            "INSERT INTO {s}.queues (name, paused) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused",
            queue,
            paused,
        )
        if not paused:  # its tasks are claimable again: wake every worker
            await self._execute(f"SELECT {self._notify_sql()}")
            self.notify()

    # -- job state ---------------------------------------------------------
    @staticmethod
    def _row_state(row: Any) -> JobState:
        return JobState(row["name"], row["first_seen"], row["last_fire"], bool(row["paused"]))

    async def job_state(self, job: str, now: float) -> JobState:
        """One statement (a scheduler asks it for each of its jobs when it starts: 1,000
        jobs were 4,000 round trips as a transaction). If another process inserted the
        row after this statement's snapshot, neither half returns it: ask again."""
        for _ in range(_KEY_RACES):
            rows = await self._fetch(
                "WITH ins AS (INSERT INTO {s}.jobs (name, first_seen) VALUES ($1, $2) "
                "ON CONFLICT (name) DO NOTHING RETURNING *) SELECT * FROM ins UNION ALL "
                "SELECT * FROM {s}.jobs WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM ins)",
                job,
                now,
            )
            if rows:
                return self._row_state(rows[0])
        raise BackendError(f"postgres {self.display_url}: job {job!r} state kept changing")

    async def list_job_states(self) -> list[JobState]:
        return [
            self._row_state(r) for r in await self._fetch("SELECT * FROM {s}.jobs ORDER BY name")
        ]

    async def set_job_paused(self, job: str, paused: bool) -> None:
        await self._execute(
            "INSERT INTO {s}.jobs (name, first_seen, paused) VALUES ($1, $2, $3) "
            "ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused",
            job,
            time.time(),
            paused,
        )

    async def record_fire(
        self, job: str, fire_time: float, task: Task | None, max_instances: int | None
    ) -> FireOutcome:
        """One transaction. The job's row is locked by the UPDATE that advances last_fire,
        so a second scheduler firing the same occurrence waits, then finds last_fire no
        longer earlier and records a duplicate: each occurrence fires once."""

        async def fire(conn: Any) -> FireOutcome:
            await conn.execute(
                self._q(
                    "INSERT INTO {s}.jobs (name, first_seen) VALUES ($1, $2) "
                    "ON CONFLICT (name) DO NOTHING"
                ),
                job,
                fire_time,
            )
            row = await conn.fetchrow(
                self._q(
                    "UPDATE {s}.jobs SET last_fire = $2 WHERE name = $1 "
                    "AND (last_fire IS NULL OR last_fire < $2) RETURNING paused"
                ),
                job,
                fire_time,
            )
            if row is None:
                return FireOutcome.DUPLICATE
            if task is None:
                return FireOutcome.MISSED
            if row[0]:
                return FireOutcome.PAUSED
            if max_instances is not None:
                active = await conn.fetchval(
                    self._q(
                        f"SELECT COUNT(*) FROM {{s}}.tasks WHERE job = $1 AND status IN {ACTIVE}"
                    ),
                    job,
                )
                if active >= max_instances:
                    return FireOutcome.SKIPPED
            await self._insert(conn, [task])
            return FireOutcome.ENQUEUED

        out = await self._tx(fire)
        if out is FireOutcome.ENQUEUED:
            self.notify()
        return out

    async def count_active(self, job: str) -> int:
        return int(
            await self._fetchval(
                f"SELECT COUNT(*) FROM {{s}}.tasks WHERE job = $1 AND status IN {ACTIVE}", job
            )
        )

    # -- stored schedules --------------------------------------------------------
    async def list_schedules(self) -> list[Schedule]:
        rows = await self._fetch("SELECT record FROM {s}.schedules ORDER BY name")
        return [Schedule.loads(r[0]) for r in rows]

    async def get_schedule(self, name: str) -> Schedule | None:
        text = await self._fetchval("SELECT record FROM {s}.schedules WHERE name = $1", name)
        return None if text is None else Schedule.loads(text)

    async def put_schedule(self, schedule: Schedule, *, create: bool) -> bool:
        """A create is INSERT ... ON CONFLICT DO NOTHING: of two concurrent creates of one
        name, the second waits for the first's commit, then stores nothing."""
        if create:
            sql = (
                "INSERT INTO {s}.schedules (name, record) VALUES ($1, $2) "
                "ON CONFLICT (name) DO NOTHING"
            )
        else:
            sql = "UPDATE {s}.schedules SET record = $2 WHERE name = $1"
        return await self._change_schedules(sql, schedule.name, schedule.dumps())

    async def delete_schedule(self, name: str) -> bool:
        return await self._change_schedules("DELETE FROM {s}.schedules WHERE name = $1", name)

    async def _change_schedules(self, sql: str, *args: Any) -> bool:
        """`sql` and, when it changed a row, the version bump and the notification, in one
        transaction: every process hears of a change once it is visible, and the version
        moves only with a change. The schedule's row is locked before the version's, in
        every change, so two changes never wait on each other in a cycle."""

        async def change(conn: Any) -> bool:
            if _count(await conn.execute(self._q(sql), *args)) == 0:
                return False
            await conn.execute(
                self._q(
                    "INSERT INTO {s}.meta AS m (key, value) VALUES ('schedules_version', '1') "
                    "ON CONFLICT (key) DO UPDATE SET value = (m.value::bigint + 1)::text "
                    f"RETURNING {self._notify_schedules_sql()}"
                )
            )
            return True

        changed = await self._tx(change)
        if changed:
            self.schedules_changed.set()
        return changed

    async def schedules_version(self) -> int:
        value = await self._fetchval("SELECT value FROM {s}.meta WHERE key = 'schedules_version'")
        return 0 if value is None else int(value)

    # -- shared rate limits --------------------------------------------------
    async def acquire_rate(self, job: str, count: int, per: float) -> float:
        """A sliding log per job shared by every worker: 0.0 when a run may start now
        (and it is logged), else the seconds until the oldest run leaves the window.
        A transaction-scoped advisory lock per job makes the look-and-log atomic."""
        now = time.time()

        async def take(conn: Any) -> float:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"chronctl-rate:{self._s}:{job}"
            )
            await conn.execute(
                self._q("DELETE FROM {s}.rate WHERE job = $1 AND at <= $2"), job, now - per
            )
            row = await conn.fetchrow(
                self._q("SELECT COUNT(*), MIN(at) FROM {s}.rate WHERE job = $1"), job
            )
            if row[0] < count:
                await conn.execute(
                    self._q("INSERT INTO {s}.rate (job, at) VALUES ($1, $2)"), job, now
                )
                return 0.0
            return max(0.0, float(row[1]) + per - now)

        return await self._tx(take)

    # -- processes ---------------------------------------------------------------
    async def beat(self, process: Process) -> None:
        async def put(conn: Any) -> None:
            await conn.execute(
                self._q(
                    "INSERT INTO {s}.processes (id, host, pid, role, started, last_beat, queues) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET "
                    "last_beat = EXCLUDED.last_beat"
                ),
                process.id,
                process.host,
                process.pid,
                process.role,
                process.started,
                process.last_beat,
                None if process.queues is None else dumps(process.queues),
            )
            await conn.execute(
                self._q("DELETE FROM {s}.processes WHERE last_beat < $1"),
                process.last_beat - PROCESS_TTL,
            )

        await self._tx(put)

    async def list_processes(self) -> list[Process]:
        return [
            row_process(r)
            for r in await self._fetch("SELECT * FROM {s}.processes ORDER BY started")
        ]

    async def forget_process(self, process_id: str) -> None:
        await self._execute("DELETE FROM {s}.processes WHERE id = $1", process_id)

    # -- migration target ----------------------------------------------------
    async def import_tasks(self, tasks: Sequence[Task]) -> int:
        """Tasks as given (status, attempt, id kept), in one statement; an id already
        here, or a key an active task here holds, is skipped."""
        if not tasks:
            return 0
        rows = await self._fetch(f"{INSERT_TASKS}, {self._notify_sql()}", *task_columns(tasks))
        if rows:
            self.notify()
        return len(rows)

    async def import_runs(self, runs: Sequence[Run]) -> int:
        if not runs:
            return 0
        return await self._execute(IMPORT_RUNS, *run_columns(runs))

    async def import_job_states(self, states: Sequence[JobState]) -> int:
        if not states:
            return 0
        merged: dict[str, JobState] = {}  # one row per name: ON CONFLICT takes a row once
        for state in states:
            seen = merged.get(state.name)
            if seen is None:
                merged[state.name] = JobState(
                    state.name, state.first_seen, state.last_fire, state.paused
                )
                continue
            seen.first_seen = min(seen.first_seen, state.first_seen)
            fires = [f for f in (seen.last_fire, state.last_fire) if f is not None]
            seen.last_fire = max(fires) if fires else None
            seen.paused = seen.paused or state.paused
        rows = list(merged.values())
        await self._execute(
            "INSERT INTO {s}.jobs AS j (name, first_seen, last_fire, paused) "
            "SELECT * FROM unnest($1::text[], $2::float8[], $3::float8[], $4::bool[]) "
            "ON CONFLICT (name) DO UPDATE SET "
            "first_seen = LEAST(j.first_seen, EXCLUDED.first_seen), "
            "last_fire = GREATEST(j.last_fire, EXCLUDED.last_fire), "
            "paused = j.paused OR EXCLUDED.paused",
            [s.name for s in rows],
            [s.first_seen for s in rows],
            [s.last_fire for s in rows],
            [s.paused for s in rows],
        )
        return len(states)

    # -- delivery by a message broker (RabbitMQBackend keeps its state here) ----------
    # `published_at` stamps a pending task handed to the broker, `publish_confirmed` says
    # the broker confirmed it. A stamp never confirmed (the publisher crashed in between)
    # is claimed again after `stale` seconds, so no task is lost between the two steps.
    async def prepare_for_broker(self) -> None:
        """Index the tasks a broker has to publish (plain use never needs it)."""
        await self._execute(
            "CREATE INDEX IF NOT EXISTS tasks_publish ON {s}.tasks (scheduled_at) "
            "WHERE status = 'pending' AND NOT publish_confirmed"
        )

    async def claim_for_publish(
        self, now: float, limit: int = 500, *, ids: Sequence[str] | None = None, stale: float = 30.0
    ) -> list[Task]:
        """Stamp due, pending, unpublished tasks as being published, and return them: one
        statement, SKIP LOCKED, so two pumps never get the same task."""
        where = (
            "status = 'pending' AND scheduled_at <= $1 AND NOT publish_confirmed "
            "AND (published_at IS NULL OR published_at < $3)"
        )
        args: list[Any] = [now, limit, now - stale]
        if ids is not None:
            if not ids:
                return []
            where += " AND id = ANY($4::text[])"
            args.append(list(ids))
        rows = await self._fetch(
            f"WITH c AS (SELECT id FROM {{s}}.tasks WHERE {where} "
            "ORDER BY priority DESC, scheduled_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED) "
            "UPDATE {s}.tasks t SET published_at = $1 FROM c WHERE t.id = c.id "
            f"RETURNING t.seq, {_prefixed('t', TASK_SELECT)}",
            *args,
        )
        rows.sort(key=lambda r: (-r["priority"], r["scheduled_at"], r["seq"]))
        return [row_task(r) for r in rows]

    async def confirm_published(self, ids: Sequence[str]) -> None:
        if ids:
            await self._execute(
                "UPDATE {s}.tasks SET publish_confirmed = TRUE "
                "WHERE id = ANY($1::text[]) AND published_at IS NOT NULL",
                list(ids),
            )

    async def unpublish(self, ids: Sequence[str]) -> None:
        if ids:
            await self._execute(
                "UPDATE {s}.tasks SET published_at = NULL, publish_confirmed = FALSE "
                "WHERE id = ANY($1::text[])",
                list(ids),
            )

    async def next_publish(
        self, queues: Sequence[str] | None = None, stale: float = 30.0
    ) -> float | None:
        where = f"status = 'pending' AND NOT publish_confirmed AND queue <> ALL({PAUSED})"
        args: list[Any] = [stale]
        if queues is not None:
            where += " AND queue = ANY($2::text[])"
            args.append(list(queues))
        value = await self._fetchval(
            "SELECT MIN(CASE WHEN published_at IS NULL THEN scheduled_at "
            f"ELSE GREATEST(scheduled_at, published_at + $1) END) FROM {{s}}.tasks WHERE {where}",
            *args,
        )
        return None if value is None else float(value)

    async def claim_ids(
        self,
        ids: Sequence[str],
        *,
        lease: float,
        worker: str,
        lost: Iterable[str] = (),
        lost_error: str = LEASE_EXPIRED_ERROR,
    ) -> tuple[list[Task], list[str]]:
        """Claim the tasks a broker delivered, in one transaction (see BrokerStateStore)."""
        if not ids:
            return [], []
        lost_ids = set(lost)
        columns = _prefixed("t", TASK_SELECT)

        async def claim(conn: Any) -> tuple[list[Task], list[str]]:
            now = time.time()
            rows = await conn.fetch(
                self._q(
                    "UPDATE {s}.tasks t SET status = 'running', started_at = $1, "
                    "lease_until = $2, worker = $3, deliveries = t.deliveries + 1 "
                    "WHERE t.id = ANY($4::text[]) AND t.status = 'pending' "
                    f"AND t.scheduled_at <= $1 RETURNING t.seq, {columns}"
                ),
                now,
                now + lease,
                worker,
                list(ids),
            )
            claimed = list(rows)
            dead: list[str] = []
            taken = {r["id"] for r in rows}
            retake = [i for i in dict.fromkeys(ids) if i in lost_ids and i not in taken]
            if retake:
                # Lost runs still `running`: a failed attempt (one history row), then taken
                # over by this worker, or dead when out of retries.
                await conn.execute(
                    self._q(
                        f"INSERT INTO {{s}}.runs ({RUN_SELECT}) SELECT id, job, queue, priority, "
                        "attempt, 'failed', args, kwargs, scheduled_at, started_at, $1, result, "
                        "$2, NULL, output FROM {s}.tasks "
                        "WHERE id = ANY($3::text[]) AND status = 'running'"
                    ),
                    now,
                    lost_error,
                    retake,
                )
                dead = [
                    r[0]
                    for r in await conn.fetch(
                        self._q(
                            "UPDATE {s}.tasks SET status = 'dead', attempt = attempt + 1, "
                            "error = $2, traceback = NULL, finished_at = $1, lease_until = NULL "
                            "WHERE id = ANY($3::text[]) AND status = 'running' "
                            "AND attempt + 1 > max_retries RETURNING id"
                        ),
                        now,
                        lost_error,
                        retake,
                    )
                ]
                claimed += await conn.fetch(
                    self._q(
                        "UPDATE {s}.tasks t SET attempt = t.attempt + 1, error = $4, "
                        "traceback = NULL, started_at = $1, lease_until = $2, worker = $3, "
                        "deliveries = t.deliveries + 1 WHERE t.id = ANY($5::text[]) "
                        f"AND t.status = 'running' RETURNING t.seq, {columns}"
                    ),
                    now,
                    now + lease,
                    worker,
                    lost_error,
                    [i for i in retake if i not in dead],
                )
            claimed.sort(key=lambda r: (-r["priority"], r["scheduled_at"], r["seq"]))
            return [row_task(r) for r in claimed], dead

        return await self._tx(claim)


async def _keep_session(_conn: Any) -> None:
    """The pool's reset between two uses of a connection: none. asyncpg's default sends
    `RESET ALL; UNLISTEN *; ...` each time a statement gives its connection back, a
    second round trip per claim or ack; chronctl leaves no session state (no SET, no
    LISTEN, no cursor, advisory locks only per transaction) on its pool's connections."""


def _status_in(values: set[str]) -> str:
    """`status IN (...)` with the values as literals (TaskStatus values, nothing else), so
    that the planner may pick a partial index: tasks_next, tasks_lease or tasks_done."""
    clause = f"status IN ({', '.join(repr(TaskStatus(v).value) for v in sorted(values))})"
    return clause if values & {"pending", "running"} else f"{clause} AND status NOT IN {ACTIVE}"


def _prefixed(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _count(status: str) -> int:
    """Rows a command changed, from its status tag (`UPDATE 3`, `INSERT 0 3`)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


__all__ = ["SAFETY_RECHECK", "PostgresBackend"]
