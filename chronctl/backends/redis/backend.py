"""RedisBackend: many `chronctl run` processes on many hosts share one Redis.

Data layout (every key starts with `{tag}:` where tag is the key prefix
without its trailing colon, a Redis Cluster hash tag, so one script only
ever touches one slot):

| key | type | holds |
|---|---|---|
| `tp:<b>`, `tx:<b>` | hashes | task id -> its record (compact JSON, `records.py`); `<b>` is |
|  |  | the id's last 3 characters (hex if not plain): ~4,096 small listpack hashes. |
|  |  | `tp:` holds pending tasks (short records), `tx:` running and finished ones |
| `sched:<queue>` | zset | pending tasks not yet due, scored by scheduled_at |
| `ready:<queue>` | zset | due tasks as `<seq>:<id>`, scored `(9 - priority) * 1e10 |
|  |  | + scheduled_at`: highest priority, then earliest; ties by enqueue sequence |
| `lease:<queue>` | zset | running tasks scored by lease expiry (also the list of running tasks) |
| `st:<status>` | zset | finished task ids per status scored by created_at, for listings |
|  |  | newest first (pending tasks are listed from ready/sched, running from lease) |
| `done:<status>:<job>` | zset | the job's finished tasks of that status (succeeded, cancelled, |
|  |  | dead) scored by finish time: per-job retention reads one job's oldest only |
| `donejobs` | set | jobs with finished tasks or history rows (dropped when none are left) |
| `active` | hash | job -> its pending + running tasks (max_instances) |
| `keys` | hash | idempotency key -> task id, while that task is active |
| `queues`, `paused` | sets | known queues, paused queues |
| `layout`, `seq` | strings | the storage layout (3; see `_upgrade`), the enqueue sequence |
| `job:<name>`, `jobs` | hash, set | first_seen, last_fire, paused |
| `runs`, `runs:<job>` | zsets | history: one JSON row per finished run, scored by finish time |
| `procs` | hash | process id -> heartbeat JSON |
| `notes` | hash | name -> small JSON a process reports to all (the last retention pass, |
|  |  | `skip:<job>`: the job's last skipped fire) |
| `rate:<job>` | zset | start times within the rate-limit window (shared by all workers) |
| `schedules`, `schedver` | hash, string | stored schedules: name -> `Schedule.dumps()` JSON; |
|  |  | the version every put or delete of one bumps (`schedules_version`) |
| `wake` | pub/sub channel | "new work": idle workers sleep on it instead of polling; |
|  |  | `s:<origin>` there says the stored schedules changed (wakes no worker) |
| `pub:<queue>` | zset | as a RabbitMQ state store only (`brokered` set): pending tasks |
|  |  | whose publish is unconfirmed, scored by when the pump may take them |
| `bulk:<batch>` | list | ids of a big `enqueue_many`'s tasks stored so far, while it is |
|  |  | unfinished: a rerun of the same batch stores only the rest |

Every state change that touches several keys (claim a batch with lease
recovery and promotion of due tasks, ack, reject/retry/dead-letter,
release, cancel, record a fire, retry dead letters) is one Lua script
(`lua.py`, `state.lua`), so a crash between two commands cannot lose or duplicate a
task. Values cross as strings, so no float is re-encoded by Lua.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ...errors import BackendError, BackendUnavailableError
from ...models import FINISHED, FireOutcome, JobState, Process, Run, Task, TaskStatus
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
from .lua import LAYOUT, SCRIPT
from .records import _num, _rows, _wire, run_from_json, run_to_json, task_from_record
from .url import parse_redis_url

log = logging.getLogger("chronctl.redis")
T = TypeVar("T")

#: Tasks per script in a bulk enqueue: one step holds Redis for 35-45 ms on a busy 2-core VM.
BULK_STEP = 1000
#: Seconds an interrupted bulk enqueue's record is kept for a rerun to resume it.
BULK_KEEP = 7 * 86400


class RedisBackend(BrokerStateStore, SharedRateLimit):
    shared = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        key_prefix: str | None = None,
        max_connections: int = 32,
        socket_timeout: float = 10.0,
        socket_connect_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        from .. import redact_url

        self.url = url
        self.display_url = redact_url(url)
        self.options = parse_redis_url(url)
        prefix = key_prefix or self.options.get("prefix") or "chronctl:"
        tag = prefix.rstrip(":")
        if not (tag.startswith("{") and tag.endswith("}")):  # `{app}:` is tagged already
            tag = f"{{{tag}}}"
        self.prefix = f"{tag}:"
        self.max_connections = max_connections
        self.socket_timeout = socket_timeout
        self.socket_connect_timeout = socket_connect_timeout
        self._redis: Any = None
        self._layout_ok = False
        self._script: Any = None
        self._listener: asyncio.Task[None] | None = None
        # Set while the listener is subscribed to `wake`: what is published before then
        # reaches this process only by polling (tests await it before publishing).
        self._subscribed = asyncio.Event()
        self._closing = False
        self._acks: list[tuple[list[str], asyncio.Future[bool]]] = []
        self._ack_flusher: asyncio.Task[None] | None = None
        # Our enqueues' wake messages carry this: we notified ourselves already.
        self._origin = uuid.uuid4().hex

    # -- lifecycle ---------------------------------------------------------
    async def connect(self) -> None:
        if self._redis is not None:
            if not self._layout_ok:  # an outage interrupted the upgrade: go on with it
                await self._upgrade()
            return
        try:
            import redis.asyncio as aredis
        except ImportError:
            from .. import missing_extra

            raise missing_extra("redis", "redis", "redis://") from None
        common: dict[str, Any] = dict(
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_connect_timeout,
            decode_responses=True,
            health_check_interval=15,
            retry_on_timeout=True,
        )
        if "sentinel" in self.options:
            from redis.asyncio.sentinel import Sentinel

            sentinel = Sentinel(
                self.options["sentinel"], password=self.options["password"], **common
            )
            client = sentinel.master_for(
                self.options["service"],
                db=self.options["db"],
                password=self.options["password"],
                username=self.options["username"],
            )
        elif "cluster" in self.options:
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            client = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in self.options["cluster"]],
                username=self.options["username"],
                password=self.options["password"],
                ssl=self.options["tls"],
                max_connections=self.max_connections,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.socket_connect_timeout,
                decode_responses=True,
                health_check_interval=15,
            )
        else:
            client = aredis.Redis.from_url(
                self.options["url"], max_connections=self.max_connections, **common
            )
        self._redis = client
        self._script = client.register_script(SCRIPT)
        await self._do(client.ping)
        self._closing = False
        self._listener = asyncio.create_task(self._listen(), name="chronctl-redis-wake")
        await self._upgrade()

    async def _upgrade(self) -> None:
        """Bring data an older chronctl stored under this prefix to this layout, in
        atomic steps; every process that connects meanwhile helps, and none works
        before it is done. Layout 1 (a hash per task) -> 2: one SCAN page per step.
        Layout 2 -> 3: finished tasks filed per job (`done:<status>:<job>`, `donejobs`),
        one ZSCAN page of 500 per step."""
        layout = self._k("layout")
        stored = await self._do(self._redis.get, layout)
        if stored != LAYOUT:
            if not await self._do(self._redis.exists, self._k("seq")):
                await self._do(self._redis.set, layout, LAYOUT, nx=True)  # nothing stored yet
            else:
                if stored in (None, "1"):
                    cursor, converted = "0", 0
                    while True:
                        cursor, count = await self._do(
                            self._script, keys=[self.prefix], args=["upgrade", cursor, "2"]
                        )
                        converted += int(count)
                        if str(cursor) == "0":
                            break
                    log.info(
                        "redis %s: upgraded %d task(s) to storage layout 2",
                        self.display_url,
                        converted,
                    )
                phase, cursor, indexed = "runs", "0", 0
                while phase != "end":
                    phase, cursor, count = await self._do(
                        self._script,
                        keys=[self.prefix],
                        args=["index_done", phase, cursor, LAYOUT],
                    )
                    indexed += int(count)
                log.info(
                    "redis %s: filed %d finished task(s) and job(s) per job: storage layout %s",
                    self.display_url,
                    indexed,
                    LAYOUT,
                )
        self._layout_ok = True

    async def disconnect(self) -> None:
        if self._listener is not None:
            self._closing = True
            self._listener.cancel()
            # redis-py's get_message can swallow a cancellation: never wait on it for long.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._listener), 2.0)
            self._listener = None
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None
        self._layout_ok = False

    async def health_check(self) -> bool:
        try:
            return bool(await self._do(self._redis.ping))
        except BackendError:
            return False

    async def _do(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """One call, with Redis's errors turned into one line that hides credentials."""
        from redis import exceptions as rx

        if self._redis is None:
            await self.connect()
        try:
            return await fn(*args, **kwargs)
        except (
            rx.ConnectionError,
            rx.TimeoutError,
            OSError,
            rx.RedisClusterException,
            rx.ClusterDownError,
            rx.MasterDownError,
        ) as exc:
            raise BackendUnavailableError(
                f"redis {self.display_url} unreachable: {_reason(exc)}"
            ) from None
        except rx.ResponseError as exc:
            raise BackendError(f"redis {self.display_url}: {exc}") from None

    async def _call(self, op: str, *args: Any) -> Any:
        if self._redis is None or not self._layout_ok:
            await self.connect()
        return await self._do(self._script, keys=[self.prefix], args=[op, *args])

    async def _call_many(
        self, op: str, calls: Iterable[Sequence[str]], on_reply: Callable[[Any], None]
    ) -> None:
        """Script calls in order on one connection with two in flight, so building the
        next call's arguments (JSON for a thousand tasks) overlaps Redis running this
        one. `calls` may be a generator: it is advanced one call at a time, and may
        stop by raising StoppedEarly, after which the replies to the calls already
        sent are still read and handed to `on_reply` (then StoppedEarly propagates)."""
        if "cluster" in self.options:  # no one connection reaches every slot: one at a time
            for args in calls:
                on_reply(await self._call(op, *args))
            return
        pool = self._redis.connection_pool

        async def stream() -> None:
            conn = await pool.get_connection()
            try:
                await conn.send_command("SCRIPT", "LOAD", SCRIPT)
                sha = await conn.read_response()
                in_flight = 0
                stopped = False
                steps = iter(calls)
                while True:
                    try:
                        args = next(steps)
                    except StopIteration:
                        break
                    except StoppedEarly:
                        stopped = True
                        break
                    await conn.send_command("EVALSHA", sha, 1, self.prefix, op, *args)
                    in_flight += 1
                    if in_flight == 2:
                        in_flight -= 1
                        on_reply(await conn.read_response())
                while in_flight:
                    in_flight -= 1
                    on_reply(await conn.read_response())
                if stopped:
                    raise StoppedEarly
            except StoppedEarly:
                raise  # every reply was read: the connection is clean
            except BaseException:
                await conn.disconnect()  # replies may still be on the wire
                raise
            finally:
                await pool.release(conn)

        await self._do(stream)

    def _k(self, name: str) -> str:
        return self.prefix + name

    async def _listen(self) -> None:
        """Turn `wake` messages into wakeups; reconnect quietly after an outage.

        A schedules message (`s:<origin>`) sets `schedules_changed` only: waking every
        idle worker for a change that gives them no work would be a stampede for
        nothing. Missed messages (during an outage) cost a second at most: the fire
        loop polls `schedules_version` too."""
        delay = 0.1
        while not self._closing:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._k("wake"))
                confirmed = None  # the server's reply: from then on nothing published is missed
                while confirmed is None and not self._closing:
                    confirmed = await pubsub.get_message(timeout=1.0)
                self._subscribed.set()
                delay = 0.1
                while not self._closing:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    data = None if message is None else message.get("data")
                    if isinstance(data, str) and data.startswith("s:"):
                        self.schedules_changed.set()
                    elif data is not None and data != self._origin:
                        self.notify()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._subscribed.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    # -- the queue ---------------------------------------------------------
    async def enqueue(self, task: Task) -> tuple[str, bool]:
        [(task_id, created)] = await self.enqueue_many([task])
        return task_id, created

    async def enqueue_many(
        self,
        tasks: Sequence[Task],
        *,
        resume: str | None = None,
        progress: BulkProgress | None = None,
    ) -> list[tuple[str, bool]]:
        """Up to BULK_STEP tasks: one script, all or nothing. More: resumable steps.

        One script for 50,000 tasks would hold Redis (every worker's claims and
        lease renewals) for about 2 s, for a million for a minute. So a
        big batch goes in steps of BULK_STEP tasks, each one script that also
        appends the step's ids to `bulk:<resume>`: the same batch run again after
        an interruption reads that record and stores only the rest. The step that
        completes the batch deletes the record (a completed batch run again is a
        new batch, as on SQLite); an abandoned one expires after BULK_KEEP.
        Without `resume` the batch is named by its task ids, so retrying the same
        Task objects resumes too.
        """
        report = progress or _ignore
        if len(tasks) <= BULK_STEP:
            flat = await settle(self._call("enqueue", *self._enqueue_args(tasks)), _no_steps)
            out = _created_pairs(flat)
            report(len(out))
        else:
            out = await self._enqueue_steps(tasks, resume or _batch_name(tasks), report)
        self.notify()
        return out

    def _enqueue_args(self, tasks: Sequence[Task]) -> tuple[str, str, str]:
        return json.dumps([_wire(t) for t in tasks]), _num(time.time()), self._origin

    async def _enqueue_steps(
        self, tasks: Sequence[Task], batch: str, report: BulkProgress
    ) -> list[tuple[str, bool]]:
        me = asyncio.current_task()
        asked = me.cancelling() if me is not None else 0
        prior = await self._do(self._redis.lrange, self._k(f"bulk:{batch}"), 0, len(tasks) - 1)
        if me is not None and me.cancelling() > asked:
            # Python 3.11's asyncio.wait_for (in redis-py's read) hands back a reply that
            # raced a cancellation and drops the cancellation: honour it before any step.
            raise asyncio.CancelledError
        out: list[tuple[str, bool]] = [(task_id, False) for task_id in prior]
        if out:
            report(len(out))  # stored by an earlier run of this batch
        if len(out) == len(tasks):  # only a run cut off before its last reply gets here
            await self._do(self._redis.delete, self._k(f"bulk:{batch}"))
            return out
        stopping = asyncio.Event()

        def steps() -> Iterator[tuple[str, ...]]:
            for begin in range(len(out), len(tasks), BULK_STEP):
                if stopping.is_set():
                    raise StoppedEarly
                step = tasks[begin : begin + BULK_STEP]
                yield (
                    *self._enqueue_args(step),
                    batch,
                    str(begin),
                    str(len(tasks)),
                    str(BULK_KEEP),
                )

        def landed(flat: list[str]) -> None:
            step = _created_pairs(flat)
            out.extend(step)
            report(len(step))

        await settle(self._call_many("enqueue", steps(), landed), stopping.set)
        return out

    def _queues_args(self, queues: Sequence[str] | None) -> list[str]:
        qs = list(queues) if queues is not None else []
        return [str(len(qs)), *qs]

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
        rows = await self._call(
            "claim",
            _num(now),
            _num(now + lease),
            worker,
            str(max_items),
            LEASE_EXPIRED_ERROR,
            *self._queues_args(queues),
        )
        return _rows(rows)

    async def acknowledge(self, task: Task) -> bool:
        """Group commit: acks that arrive while one is in flight go together in one
        script call, each caller still learning its own outcome."""
        from ...models import dumps

        result = "" if task.result is None else dumps(task.result)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._acks.append(
            (
                [
                    task.id,
                    task.worker or "",
                    str(task.deliveries),
                    _num(task.finished_at or time.time()),
                    result,
                    task.output or "",
                ],
                future,
            )
        )
        if self._ack_flusher is None or self._ack_flusher.done():
            self._ack_flusher = asyncio.create_task(self._flush_acks())
        return await future

    async def _flush_acks(self) -> None:
        while self._acks:
            batch, self._acks = self._acks[:256], self._acks[256:]
            try:
                replies = await self._call(
                    "ack", json.dumps([x for args, _ in batch for x in args])
                )
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), reply in zip(batch, replies, strict=True):
                if not future.done():
                    future.set_result(bool(int(reply)))

    async def reject(self, task: Task, *, requeue: bool, retry_at: float | None = None) -> bool:
        at = retry_at if retry_at is not None else time.time()
        return bool(
            await self._call(
                "reject",
                task.id,
                task.worker or "",
                str(task.deliveries),
                _num(task.finished_at or time.time()),
                task.error or "",
                task.traceback or "",
                task.output or "",
                "1" if requeue else "0",
                _num(at),
            )
        )

    async def release(self, tasks: Iterable[Task], *, at: float | None = None) -> None:
        triples = [x for t in tasks for x in (t.id, t.worker or "", str(t.deliveries))]
        if triples:
            await self._call("release", "" if at is None else _num(at), *triples)

    async def extend_leases(self, tasks: Sequence[Task], lease: float) -> set[str]:
        triples = [x for t in tasks for x in (t.id, t.worker or "", str(t.deliveries))]
        if not triples:
            return set()
        return set(await self._call("extend", _num(time.time() + lease), *triples))

    async def recover_expired(self) -> int:
        return int(await self._call("recover", _num(time.time()), LEASE_EXPIRED_ERROR))

    async def next_due(self, queues: Sequence[str] | None = None) -> float | None:
        """One script (it was three round trips): an idle worker asks this after every
        empty claim, so it sits on the path of the next task's start."""
        if queues is not None and not queues:
            return None
        reply = await self._call("next_due", *self._queues_args(queues))
        if reply is None:
            return None
        return time.time() if reply == "0" else float(reply)

    async def get_queue_size(self, queue: str = "default") -> int:
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcard(self._k(f"ready:{queue}"))
        pipe.zcard(self._k(f"sched:{queue}"))
        ready, sched = await self._do(pipe.execute)
        return int(ready) + int(sched)

    async def clear(self, queue: str | None = None) -> int:
        return int(
            await self._call("clear", *self._queues_args([queue] if queue is not None else None))
        )

    # -- state -------------------------------------------------------------
    async def _records(self, ids: Sequence[str]) -> list[str | None]:
        """The record JSON of each task (None: no such task), one script call per 1,000."""
        out: list[str | None] = []
        for start in range(0, len(ids), 1000):
            out.extend(await self._call("records", *ids[start : start + 1000]))
        return out

    async def _tasks(self, ids: Sequence[str]) -> list[Task]:
        """Tasks by id, in order, the missing left out."""
        return [
            task_from_record(task_id, raw)
            for task_id, raw in zip(ids, await self._records(ids), strict=True)
            if raw is not None
        ]

    async def get_task(self, task_id: str) -> Task | None:
        found = await self._tasks([task_id])
        return found[0] if found else None

    async def list_tasks(
        self,
        *,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        job: str | None = None,
        queue: str | None = None,
        limit: int | None = 100,
    ) -> list[Task]:
        if status is None:
            statuses: list[TaskStatus] = [s for s in TaskStatus if s is not TaskStatus.FAILED]
        elif isinstance(status, TaskStatus | str):
            statuses = [TaskStatus(status)]
        else:
            statuses = [TaskStatus(s) for s in status]
        out: list[Task] = []
        for st in statuses:
            if st is TaskStatus.RUNNING:
                out.extend(await self._running(job, queue))
                continue
            if st is TaskStatus.PENDING:
                out.extend(await self._pending(job, queue, limit))
                continue
            key = self._k(f"st:{st.value}")
            start, page = 0, 1000
            found = 0
            while True:
                ids = await self._do(self._redis.zrevrange, key, start, start + page - 1)
                if not ids:
                    break
                for task in await self._tasks(ids):
                    if (job and task.job != job) or (queue and task.queue != queue):
                        continue
                    out.append(task)
                    found += 1
                if limit is not None and found >= limit:
                    break
                start += page
        out.sort(key=_newest, reverse=True)
        return out if limit is None else out[:limit]

    async def _pending(self, job: str | None, queue: str | None, limit: int | None) -> list[Task]:
        """Pending tasks are the members of the ready and scheduled sets: no index by
        creation time (it cost ~110 bytes a task). A script reads them a page at a
        time and hands back only the page's newest `limit`."""
        names = [queue] if queue else await self._do(self._redis.smembers, self._k("queues"))
        page = 1000
        found: list[tuple[float, str, str]] = []
        for q in names:
            for kind in ("ready:", "sched:"):
                start = 0
                while True:
                    reply = await self._call(
                        "newest_pending",
                        kind + q,
                        str(start),
                        str(page),
                        job or "",
                        str(page if limit is None else limit),
                    )
                    found.extend(
                        (float(reply[i]), reply[i + 1], reply[i + 2])
                        for i in range(1, len(reply), 3)
                    )
                    if limit is not None and len(found) > 4 * limit:
                        found = heapq.nlargest(limit, found)
                    if int(reply[0]) < page:
                        break
                    start += page
        if limit is not None:
            found = heapq.nlargest(limit, found)
        return [task_from_record(task_id, raw) for _, task_id, raw in found]

    async def _running(self, job: str | None, queue: str | None) -> list[Task]:
        """Running tasks are the members of the lease sets (as many as busy slots)."""
        names = [queue] if queue else await self._do(self._redis.smembers, self._k("queues"))
        pipe = self._redis.pipeline(transaction=False)
        for q in names:
            pipe.zrange(self._k(f"lease:{q}"), 0, -1)
        ids = [i for members in await self._do(pipe.execute) for i in members]
        return [
            t
            for t in await self._tasks(ids)
            if t.status is TaskStatus.RUNNING
            and not (job and t.job != job)
            and not (queue and t.queue != queue)
        ]

    async def cancel_task(self, task_id: str) -> bool:
        return bool(await self._call("cancel", task_id, _num(time.time())))

    async def history(self, job: str | None = None, limit: int | None = 50) -> list[Run]:
        key = self._k(f"runs:{job}") if job else self._k("runs")
        end = -1 if limit is None else limit - 1
        rows = await self._do(self._redis.zrevrange, key, 0, end)
        return [run_from_json(r) for r in rows]

    async def retry_dead(self, task_ids: Sequence[str] | None = None) -> int:
        ids = (
            list(task_ids)
            if task_ids is not None
            else await self._do(self._redis.zrange, self._k("st:dead"), 0, -1)
        )
        count = 0
        for start in range(0, len(ids), 500):
            count += int(
                await self._call("retry_dead", _num(time.time()), *ids[start : start + 500])
            )
        if count:
            self.notify()
        return count

    async def _delete(
        self,
        status: TaskStatus,
        keep: Callable[[Task], bool],
        limit: int | None = None,
        before: float | None = None,
    ) -> int:
        key = self._k(f"st:{status.value}")
        if limit is not None:
            return await self._delete_oldest(status, keep, limit, before)
        ids = await self._do(self._redis.zrange, key, 0, -1)
        count = 0
        for start in range(0, len(ids), 500):
            doomed = [t.id for t in await self._tasks(ids[start : start + 500]) if not keep(t)]
            if doomed:
                count += int(await self._call("delete", status.value, *doomed))
        return count

    async def _delete_oldest(
        self, status: TaskStatus, keep: Callable[[Task], bool], limit: int, before: float | None
    ) -> int:
        """One short step: up to `limit` of the oldest tasks `keep` does not keep, in one
        script. st:* is scored by created_at (<= finished_at), so the candidates are read
        oldest created first, past any kept ones (a task delayed for days finishes late),
        at most 20 pages a step."""
        key = self._k(f"st:{status.value}")
        top = "+inf" if before is None else f"({before!r}"
        doomed: list[str] = []
        start = 0
        while len(doomed) < limit and start < 20 * limit:  # a bounded read per step
            ids = await self._do(
                self._redis.zrangebyscore, key, "-inf", top, start=start, num=limit
            )
            doomed += [t.id for t in await self._tasks(ids) if not keep(t)]
            if len(ids) < limit:
                break
            start += len(ids)
        if not doomed:
            return 0
        return int(await self._call("delete", status.value, *doomed[:limit]))

    async def purge_dead(
        self,
        older_than: float | None = None,
        *,
        limit: int | None = None,
        job: str | None = None,
        exclude_jobs: Collection[str] = (),
    ) -> int:
        if job is not None or exclude_jobs:
            jobs = await self._scope(job, exclude_jobs)
            return await self._trim_done(jobs, [TaskStatus.DEAD], older_than, limit)
        return await self._delete(
            TaskStatus.DEAD,
            lambda t: older_than is not None and (t.finished_at or 0) >= older_than,
            limit,
            older_than,
        )

    async def count_dead(self) -> int:
        return int(await self._do(self._redis.zcard, self._k("st:dead")))

    async def cleanup(
        self,
        older_than: float,
        statuses: Sequence[TaskStatus] | None = None,
        *,
        limit: int | None = None,
        job: str | None = None,
        exclude_jobs: Collection[str] = (),
    ) -> int:
        wanted = set(statuses) if statuses else set(FINISHED)
        if job is not None or exclude_jobs:
            jobs = await self._scope(job, exclude_jobs)
            finished = [s for s in FINISHED if s in wanted]
            count = await self._trim_done(jobs, finished, older_than, limit)
            history = await self._trim_runs(jobs, wanted, older_than, limit)
            return count if limit is None else count + history
        count = 0
        for status in wanted:
            count += await self._delete(
                status, lambda t: (t.finished_at or t.created_at) >= older_than, limit, older_than
            )
        page = {} if limit is None else {"start": 0, "num": limit}
        rows = await self._do(
            self._redis.zrangebyscore, self._k("runs"), "-inf", f"({older_than!r}", **page
        )
        doomed = [r for r in rows if _run_matches(run_from_json(r), wanted)]
        for start in range(0, len(doomed), 500):
            chunk = doomed[start : start + 500]
            pipe = self._redis.pipeline(transaction=True)
            pipe.zrem(self._k("runs"), *chunk)
            for row in chunk:
                pipe.zrem(self._k(f"runs:{json.loads(row)['job']}"), row)
            await self._do(pipe.execute)
        return count if limit is None else count + len(doomed)

    async def _scope(self, job: str | None, exclude_jobs: Collection[str]) -> list[str]:
        """The jobs a scoped step may delete rows of: `job`, or every job in `donejobs`
        (those with finished tasks or history rows) but `exclude_jobs`."""
        if job is not None:
            return [] if job in exclude_jobs else [job]
        names = await self._do(self._redis.smembers, self._k("donejobs"))
        return sorted(set(names) - set(exclude_jobs))

    async def _trim(self, op: str, args: Sequence[Any], limit: int | None) -> int:
        """Run a trim script (`args` its arguments after the row count) until `limit`
        rows were read (None: until none is left), at most `_TRIM_ROWS` per script so
        that no script holds the server long; returns the rows deleted."""
        budget = limit
        total = 0
        while True:
            rows = _TRIM_ROWS if budget is None else min(_TRIM_ROWS, budget)
            deleted, read = await self._call(op, args[0], rows, *args[1:])
            total += int(deleted)
            if budget is not None:
                budget -= int(read)
            if int(read) < rows or budget == 0:
                return total

    async def _trim_done(
        self,
        jobs: Sequence[str],
        statuses: Sequence[TaskStatus],
        older_than: float | None,
        limit: int | None,
    ) -> int:
        """Delete the jobs' finished tasks of `statuses` finished before `older_than`
        (None: all), from done:<status>:<job>, oldest first in each job."""
        if not jobs or not statuses:
            return 0
        cutoff = "+inf" if older_than is None else f"({older_than!r}"
        names = [s.value for s in statuses]
        return await self._trim("trim_done", [cutoff, len(names), *names, *jobs], limit)

    async def _trim_runs(
        self, jobs: Sequence[str], wanted: set[TaskStatus], older_than: float, limit: int | None
    ) -> int:
        """Delete the jobs' history rows finished before `older_than` from runs:<job>
        (and runs), oldest first in each job, as `_trim_done` does tasks."""
        if not jobs:
            return 0
        every = {TaskStatus.SUCCEEDED, TaskStatus.FAILED} <= wanted or {
            TaskStatus.SUCCEEDED,
            TaskStatus.DEAD,
        } <= wanted
        names = sorted(
            {s.value for s in wanted} | ({"failed"} if TaskStatus.DEAD in wanted else set())
        )
        args = [f"({older_than!r}", "1" if every else "0", len(names), *names, *jobs]
        return await self._trim("trim_runs", args, limit)

    async def get_note(self, name: str) -> str | None:
        return await self._do(self._redis.hget, self._k("notes"), name)

    async def set_note(self, name: str, value: str) -> None:
        await self._do(self._redis.hset, self._k("notes"), name, value)

    async def list_queues(self) -> list[QueueInfo]:
        names = await self._do(self._redis.smembers, self._k("queues"))
        paused = await self._do(self._redis.smembers, self._k("paused"))
        names = sorted(set(names) | set(paused))
        pipe = self._redis.pipeline(transaction=False)
        for q in names:
            pipe.zcard(self._k(f"ready:{q}"))
            pipe.zcard(self._k(f"sched:{q}"))
            pipe.zcard(self._k(f"lease:{q}"))
        replies = await self._do(pipe.execute)
        out = []
        for i, q in enumerate(names):
            ready, sched, running = replies[3 * i : 3 * i + 3]
            pending = int(ready) + int(sched)
            if pending or running or q in paused:
                out.append(QueueInfo(q, pending, int(running), q in paused))
        return out

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        if paused:
            await self._do(self._redis.sadd, self._k("paused"), queue)
        else:
            await self._do(self._redis.srem, self._k("paused"), queue)
            await self._do(self._redis.publish, self._k("wake"), "1")

    # -- stored schedules ----------------------------------------------------
    # One hash, `schedules`, name -> record JSON, and a counter, `schedver`. A change is
    # one script: stored only if absent (create) or present (replace), the version
    # bumped and every process told on `wake` in the same step: no reader sees the
    # change without the version moving, and no process hears of one not stored.
    async def list_schedules(self) -> list[Schedule]:
        stored = await self._do(self._redis.hgetall, self._k("schedules"))
        return [Schedule.loads(stored[name]) for name in sorted(stored)]

    async def get_schedule(self, name: str) -> Schedule | None:
        text = await self._do(self._redis.hget, self._k("schedules"), name)
        return None if text is None else Schedule.loads(text)

    async def put_schedule(self, schedule: Schedule, *, create: bool) -> bool:
        changed = await self._call(
            "put_schedule", schedule.name, schedule.dumps(), "1" if create else "0", self._origin
        )
        return self._schedules_changed(changed)

    async def delete_schedule(self, name: str) -> bool:
        return self._schedules_changed(await self._call("delete_schedule", name, self._origin))

    async def schedules_version(self) -> int:
        return int(await self._do(self._redis.get, self._k("schedver")) or 0)

    def _schedules_changed(self, reply: Any) -> bool:
        """Our own change reaches our fire loop at once, not through the round trip."""
        changed = bool(int(reply))
        if changed:
            self.schedules_changed.set()
        return changed

    # -- job state ---------------------------------------------------------
    async def _job(self, name: str) -> JobState | None:
        raw = await self._do(self._redis.hgetall, self._k(f"job:{name}"))
        if not raw or "first_seen" not in raw:
            return None
        return JobState(
            name,
            float(raw["first_seen"]),
            float(raw["last_fire"]) if raw.get("last_fire") else None,
            raw.get("paused") == "1",
        )

    async def job_state(self, job: str, now: float) -> JobState:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(self._k(f"job:{job}"), "first_seen", _num(now))
        pipe.sadd(self._k("jobs"), job)
        await self._do(pipe.execute)
        state = await self._job(job)
        assert state is not None
        return state

    async def list_job_states(self) -> list[JobState]:
        names = sorted(await self._do(self._redis.smembers, self._k("jobs")))
        return [s for s in [await self._job(n) for n in names] if s is not None]

    async def set_job_paused(self, job: str, paused: bool) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(self._k(f"job:{job}"), "first_seen", _num(time.time()))
        pipe.hset(self._k(f"job:{job}"), "paused", "1" if paused else "0")
        pipe.sadd(self._k("jobs"), job)
        await self._do(pipe.execute)

    async def record_fire(
        self, job: str, fire_time: float, task: Task | None, max_instances: int | None
    ) -> FireOutcome:
        payload = "" if task is None else json.dumps(_wire(task))
        outcome = await self._call(
            "fire",
            job,
            _num(fire_time),
            payload,
            "" if max_instances is None else str(max_instances),
            _num(time.time()),
        )
        if outcome == "enqueued":
            self.notify()
        return FireOutcome(outcome)

    async def count_active(self, job: str) -> int:
        return int(await self._do(self._redis.hget, self._k("active"), job) or 0)

    # -- shared rate limits --------------------------------------------------
    async def acquire_rate(self, job: str, count: int, per: float) -> float:
        """Seconds to wait for a slot in `job`'s window, shared by every worker (0 = go)."""
        wait = await self._call(
            "rate", job, str(count), _num(per), _num(time.time()), uuid.uuid4().hex
        )
        return float(wait)

    # -- processes -----------------------------------------------------------
    async def beat(self, process: Process) -> None:
        row = json.dumps(
            {
                "id": process.id,
                "host": process.host,
                "pid": process.pid,
                "role": process.role,
                "started": process.started,
                "last_beat": process.last_beat,
                "queues": process.queues,
            }
        )
        await self._do(self._redis.hset, self._k("procs"), process.id, row)
        for other in await self.list_processes():
            if other.last_beat < process.last_beat - PROCESS_TTL:
                await self.forget_process(other.id)

    async def list_processes(self) -> list[Process]:
        rows = await self._do(self._redis.hgetall, self._k("procs"))
        procs = [Process(**json.loads(v)) for v in rows.values()]
        return sorted(procs, key=lambda p: p.started)

    async def forget_process(self, process_id: str) -> None:
        await self._do(self._redis.hdel, self._k("procs"), process_id)

    # -- delivery by a message broker (RabbitMQBackend keeps its state here) ---------
    # Once `prepare_for_broker` ran, every pending task whose publish the broker has not
    # confirmed sits in `pub:<queue>`, scored by when the publish pump may take it: its
    # scheduled_at, or stamp + `stale` once stamped (a stamp never confirmed because the
    # publisher crashed is taken again then, so no task is lost between the two steps).
    async def prepare_for_broker(self) -> None:
        """Start indexing unpublished tasks (once per prefix; indexes those already here)."""
        await self._call("broker_on")

    async def claim_for_publish(
        self, now: float, limit: int = 500, *, ids: Sequence[str] | None = None, stale: float = 30.0
    ) -> list[Task]:
        """Atomically stamp due, pending, unpublished tasks as being published; return them
        by priority, then time, then enqueue order. Two processes never get the same task."""
        if ids is not None and not ids:
            return []
        chosen = list(ids or ())
        rows = await self._call(
            "claim_publish", _num(now), str(limit), _num(now + stale), str(len(chosen)), *chosen
        )
        return _rows(rows)

    async def confirm_published(self, ids: Sequence[str]) -> None:
        """The broker confirmed these tasks' messages."""
        if ids:
            await self._call("confirm_publish", *ids)

    async def unpublish(self, ids: Sequence[str]) -> None:
        """Publishing failed: let the next pump publish these tasks again."""
        if ids:
            await self._call("unpublish", *ids)

    async def next_publish(
        self, queues: Sequence[str] | None = None, stale: float = 30.0
    ) -> float | None:
        """When the publish pump next has work: the earliest unpublished pending task."""
        if queues is not None and not queues:
            return None
        reply = await self._call("next_publish", *self._queues_args(queues))
        return float(reply) if reply else None

    async def claim_ids(
        self,
        ids: Sequence[str],
        *,
        lease: float,
        worker: str,
        lost: Iterable[str] = (),
        lost_error: str = LEASE_EXPIRED_ERROR,
    ) -> tuple[list[Task], list[str]]:
        """Claim the tasks a broker delivered, in one script: see SQLiteBackend.claim_ids."""
        if not ids:
            return [], []
        lost_ids = list(lost)
        now = time.time()
        rows, dead = await self._call(
            "claim_ids",
            _num(now),
            _num(now + lease),
            worker,
            lost_error,
            str(len(lost_ids)),
            *lost_ids,
            *ids,
        )
        claimed = _rows(rows)
        claimed.sort(key=lambda t: (-t.priority, t.scheduled_at, t.created_at))
        return claimed, list(dead)

    # -- migration target ----------------------------------------------------
    async def import_tasks(self, tasks: Sequence[Task]) -> int:
        if not tasks:
            return 0
        return int(await self._call("import", json.dumps([_wire(t) for t in tasks])))

    async def import_runs(self, runs: Sequence[Run]) -> int:
        if not runs:
            return 0
        pipe = self._redis.pipeline(transaction=True)
        for run in runs:
            row = run_to_json(run)
            pipe.zadd(self._k("runs"), {row: run.finished_at}, nx=True)
            pipe.zadd(self._k(f"runs:{run.job}"), {row: run.finished_at}, nx=True)
            pipe.sadd(self._k("donejobs"), run.job)
        replies = await self._do(pipe.execute)
        return sum(int(r) for r in replies[::2])

    async def import_job_states(self, states: Sequence[JobState]) -> int:
        for state in states:
            mine = await self._job(state.name)
            first = min(state.first_seen, mine.first_seen) if mine else state.first_seen
            fires = [
                f for f in (state.last_fire, mine.last_fire if mine else None) if f is not None
            ]
            mapping = {
                "first_seen": _num(first),
                "paused": "1" if state.paused or (mine and mine.paused) else "0",
            }
            if fires:
                mapping["last_fire"] = _num(max(fires))
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._k(f"job:{state.name}"), mapping=mapping)
            pipe.sadd(self._k("jobs"), state.name)
            await self._do(pipe.execute)
        return len(states)

    # -- tests and cleanup -----------------------------------------------------
    async def drop_everything(self) -> int:
        """Delete every key of this prefix (tests; `queues purge` keeps history)."""
        if self._redis is None:
            await self.connect()
        count = 0
        async for key in self._redis.scan_iter(
            match=self.prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=1000
        ):
            count += int(await self._redis.delete(key))
        return count


#: Rows one trim script reads at most: a retention step of 500 is two scripts, each
#: a few milliseconds (see README, "Per-job retention").
_TRIM_ROWS = 250


def _newest(task: Task) -> tuple[float, str]:
    return task.created_at, task.id


def _ignore(_: int) -> None:
    pass


def _no_steps() -> None:
    """One script cannot stop halfway: a cancellation waits for its reply."""


def _created_pairs(flat: Sequence[str]) -> list[tuple[str, bool]]:
    """The enqueue script's reply, `[id, created, id, created, ...]`, as pairs."""
    return [(flat[i], bool(int(flat[i + 1]))) for i in range(0, len(flat), 2)]


def _batch_name(tasks: Sequence[Task]) -> str:
    """A batch without a name is named by its task ids: the same Task objects sent
    again (a retry after an outage) resume it; fresh ones are a new batch."""
    import hashlib

    return "ids-" + hashlib.sha256("\n".join(t.id for t in tasks).encode()).hexdigest()[:32]


def _run_matches(run: Run, wanted: set[TaskStatus]) -> bool:
    status = TaskStatus(run.status)
    return status in wanted or (status is TaskStatus.FAILED and TaskStatus.DEAD in wanted)


def _reason(exc: BaseException) -> str:
    from .. import redact_url

    text = str(exc) or type(exc).__name__
    return redact_url(text.splitlines()[0])


__all__ = ["RedisBackend", "parse_redis_url"]
