"""RabbitMQ backend: a state store holds the truth, RabbitMQ delivers the work.

`RabbitMQBackend(url, queue_name, exchange_name, durable=True, max_priority=10,
state=SQLiteBackend(...))` is a composite. Tasks, history, job state, paused
queues and process heartbeats live in the *state store* (the SQLite file by
default; any `BrokerStateStore`, whose methods below publish and claim). Every
listing and state method delegates to it (`BrokerBackend`), so every CLI command
works unchanged.
RabbitMQ only carries "task X is due" messages to workers.

Broker layout (all durable when `durable=True`):

- exchange `<exchange_name>` (direct); routing key = the chronctl queue name;
- one classic queue per chronctl queue, `<queue_name>.<queue>`, with
  `x-max-priority = max_priority` (10: task priorities 0..9 map directly) and
  `x-dead-letter-exchange = <exchange_name>.dlx`;
- exchange `<exchange_name>.dlx` (fanout) bound to the queue `<queue_name>.dead`,
  the broker's raw audit stream of dead-lettered messages. `dlq list` reads
  the state store (status `dead`), which is the truth; `dlq purge` without
  `--older-than` also purges `<queue_name>.dead`. A chronctl queue may not be
  named `dead`, which would collide with it.

Messages are persistent, published with publisher confirms, body JSON
`{"id": task_id}` (never pickle), `priority` = task priority, `message_id` =
task id. A message only says "run task X": the state store decides whether X
still runs (a cancelled, finished or duplicate delivery is acked and dropped).

Delays never sit in the broker (no per-message TTL, so no head-of-line
blocking: a task due earlier is never stuck behind one due later). A task is
published when it is due: `enqueue` publishes tasks due now; a *due pump*
(run by `dequeue` every `pump_interval` and at once after local changes)
asks the state store for due pending tasks not yet published and publishes
them. `claim_for_publish` stamps `published_at` atomically (one UPDATE ...
RETURNING), so two processes never publish the same task; after the
broker's confirm the task is marked `publish_confirmed`. A stamp never
confirmed (crash between stamp and publish) is published again after
`republish_after` seconds, so nothing is lost; a rare duplicate is dropped at
delivery because the task is no longer pending.

Delivery: a claiming process keeps one consumer open per queue it takes work
from, with `prefetch_count` = twice its slots, so the broker streams messages
into a local buffer while tasks run and `dequeue` takes its next batch from
there (no round trip per message). Only when the buffer is empty does
`dequeue` also ask with basic.get; those answers and the deliveries the
broker sent before them are merged by priority, then broker order. Messages
are taken with manual acks, and their tasks are claimed in the state store
(pending -> running with worker, delivery count and lease). The message stays
unacked while the task runs. `acknowledge` acks it; `reject(requeue=True)`
records the retry in the state store (pending at `retry_at`, unpublished) and
acks: the pump republishes it when due; `reject(requeue=False)` marks it dead
and rejects the message without requeue, so RabbitMQ dead-letters it to
`<queue_name>.dead`; `release` nacks with requeue. `wait_for_work` returns as
soon as a message arrives. A queue no longer claimed (paused) stops being
consumed and its buffered messages go back to the broker.

A consumer that dies (kill -9, lost connection) has its unacked messages
redelivered by RabbitMQ with `redelivered=True`. A redelivered message whose
task is still `running` in the state store is a lost run: it counts as a
failed attempt and the receiving worker takes the task over, or, out of
retries, the task goes dead and the message is dead-lettered: bounded
redeliveries, then the dead letter queue. Leases stay as the safety net:
`recover_expired` returns expired tasks to pending and the pump republishes
them.

No double fires: `record_fire` runs in the state store (its atomic
`last_fire` compare-and-set plus the task insert in one transaction), so
schedulers sharing a state store never double-fire. Several hosts therefore
need a shared state store (`RedisBackend`, which then also indexes unpublished
pending tasks); SQLite serves the processes of one host.

Outages: the connection is `aio_pika.connect_robust`, which reconnects with
`reconnect_interval` backoff and restores channels, exchanges and queues.
While the broker is down, broker operations raise BackendUnavailableError
naming only the redacted URL. `enqueue` still succeeds: the task is stored in
the state store and the pump publishes it once the broker is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Collection, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from ..errors import BackendError, BackendUnavailableError
from ..models import FireOutcome, Task
from .base import BulkProgress, QueueBackend, QueueInfo
from .broker import BrokerBackend

if TYPE_CHECKING:
    from aio_pika.abc import (
        AbstractChannel,
        AbstractExchange,
        AbstractIncomingMessage,
        AbstractQueue,
        AbstractRobustConnection,
    )

log = logging.getLogger("chronctl.backends.rabbitmq")

LOST_CONSUMER_ERROR = "worker lost: its RabbitMQ connection closed before the task finished"
DEAD_QUEUE = "dead"
_PUBLISH_BATCH = 500
# Options read from the URL's query string (everything else goes to aio-pika).
URL_OPTIONS = ("queue_name", "exchange_name", "durable", "max_priority")


_quiet_connects = 0  # first connections in progress: their failure is our one-line error


class _RedactingFilter(logging.Filter):
    """aio-pika/aiormq log the broker URL with its user name: print it redacted. While a
    first connection is attempted, drop their records: a failure raises one clear line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from . import redact_url

        if _quiet_connects:
            return False

        text = record.getMessage()
        redacted = redact_url(text)
        if redacted != text:
            record.msg, record.args = redacted, ()
        return True


_LIBRARY_LOGGERS = (
    "aio_pika",
    "aio_pika.robust_connection",
    "aio_pika.connection",
    "aio_pika.tools",
    "aiormq",
    "aiormq.connection",
    "aiormq.channel",
    "aiormq.tools",
)


def _redact_library_logs() -> None:
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactingFilter) for f in logger.filters):
            logger.addFilter(_RedactingFilter())


def _refusal(exc: BaseException) -> str | None:
    """'login' or 'vhost' when the broker answered and refused us, else None.

    aiormq raises ProbableAuthenticationError for a refused login (reply 403);
    a refused Connection.Open (unknown vhost, or no permission on it: reply
    530) surfaces as ConnectionClosed, or, in aiormq 6-7, as InvalidFrameError
    "Expected ... Connection.OpenOk, got <Connection.Close ...>".
    """
    try:
        from aiormq import exceptions as amqp
    except ImportError:
        return None
    if isinstance(exc, amqp.ProbableAuthenticationError | amqp.AuthenticationError):
        return "login"
    if isinstance(exc, amqp.ConnectionClosed) and exc.args:
        return {403: "login", 530: "vhost"}.get(exc.args[0])
    text = str(exc)
    if isinstance(exc, amqp.InvalidFrameError) and "OpenOk" in text and "Close" in text:
        return "vhost"
    return None


def _network_reason(exc: BaseException, timeout: float) -> str:
    """`connection refused`, `unknown host`, `no answer within 10s`: from the error
    number, never from a message that might quote the URL."""
    import socket

    for err in (exc, exc.__cause__, exc.__context__):
        if isinstance(err, socket.gaierror):
            return "unknown host"
        if isinstance(err, OSError) and isinstance(err.errno, int):
            if err.errno > 0:
                return os.strerror(err.errno).lower()
            if err.errno in (socket.EAI_NONAME, socket.EAI_NODATA):  # POSIX has both
                return "unknown host"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, ConnectionError):
        return "connection lost"
    return type(exc).__name__


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """`amqp://h/%2F?queue_name=q&heartbeat=30` -> (URL without chronctl options, options)."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        (ours.__setitem__(key, value) if key in URL_OPTIONS else rest.append((key, value)))
    query = "&".join(f"{k}={v}" for k, v in rest)
    return urlunsplit(parts._replace(query=query)), ours


class RabbitMQBackend(BrokerBackend):
    shared = True
    broker_name = "RabbitMQ"

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/%2F",
        queue_name: str = "chronctl",
        exchange_name: str = "chronctl",
        durable: bool = True,
        max_priority: int = 10,
        state: QueueBackend | None = None,
        *,
        republish_after: float = 30.0,
        pump_interval: float = 0.5,
        reconnect_interval: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        from . import redact_url

        if state is None:
            from .sqlite import SQLiteBackend

            state = SQLiteBackend("chronctl.db")
        super().__init__(state)
        self.url = url
        self.queue_name = queue_name
        self.exchange_name = exchange_name
        self.durable = durable
        self.max_priority = max_priority
        self.republish_after = republish_after
        self.pump_interval = pump_interval
        self.reconnect_interval = reconnect_interval
        self.timeout = timeout
        self.display_url = redact_url(url)
        self._conn: AbstractRobustConnection | None = None
        self._pub: AbstractChannel | None = None
        self._chan: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._queues: dict[str, AbstractQueue] = {}
        self._known: set[str] = set()  # chronctl queues declared by this instance, ever
        self._declare_lock = asyncio.Lock()
        self._pump_lock = asyncio.Lock()
        self._pump_at = 0.0
        self._dirty = True
        self._recover_at = 0.0
        # task id -> (delivery count of the run, message held unacked while it runs)
        self._held: dict[str, tuple[int, AbstractIncomingMessage]] = {}
        self._buffer: list[tuple[str, AbstractIncomingMessage]] = []
        self._arrived = asyncio.Event()
        self._last_queues: list[str] = []
        self._last_max = 1
        # chronctl queue -> (broker queue, consumer tag): kept open while this process claims
        # work, so deliveries stream into `_buffer` instead of one basic.get round trip each
        self._consumers: dict[str, tuple[AbstractQueue, str]] = {}
        self._infos: list[QueueInfo] | None = None
        self._infos_until = 0.0
        self._due_hint: float | None = None

    # -- names ------------------------------------------------------------------------
    def broker_queue(self, queue: str) -> str:
        return f"{self.queue_name}.{queue}"

    @property
    def dead_queue(self) -> str:
        return f"{self.queue_name}.{DEAD_QUEUE}"

    @property
    def dlx(self) -> str:
        return f"{self.exchange_name}.dlx"

    # -- plumbing ---------------------------------------------------------------------
    def _unavailable(self, exc: BaseException) -> BackendError:
        """What a broker failure means, in one line: a refused login, a refused
        virtual host and an unreachable broker each need a different fix. The
        exception's own text may carry the URL with its password: never echo it."""
        where = f"RabbitMQ at {self.display_url}"
        refused = _refusal(exc)
        if refused == "login":
            return BackendError(f"{where}: authentication failed for user '{self._user}'")
        if refused == "vhost":
            return BackendError(
                f"{where}: virtual host '{self._vhost}' does not exist, or user "
                f"'{self._user}' may not use it"
            )
        return BackendUnavailableError(
            f"{where} is unreachable: {_network_reason(exc, self.timeout)}"
        )

    @property
    def _user(self) -> str:
        return unquote(urlsplit(self.url).username or "guest")  # aio-pika's default login

    @property
    def _vhost(self) -> str:
        return unquote(urlsplit(self.url).path[1:]) or "/"

    @contextlib.asynccontextmanager
    async def _broker(self) -> AsyncIterator[None]:
        """Map any broker/network failure to one redacted line."""
        conn = self._conn
        if conn is not None and not conn.connected.is_set():
            # Down and reconnecting in the background: fail now instead of hanging.
            raise BackendUnavailableError(
                f"RabbitMQ at {self.display_url} is unreachable (reconnecting)"
            )
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except BackendError:
            raise
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise self._unavailable(exc) from None

    async def connect(self) -> None:
        if self._conn is not None:
            return
        self.check_state()  # a store that cannot track publishing is refused before we dial
        try:
            import aio_pika
        except ImportError:
            from . import missing_extra

            raise missing_extra("aio-pika", "rabbitmq", "amqp://") from None

        global _quiet_connects
        _redact_library_logs()
        _quiet_connects += 1
        try:
            async with self._broker():
                conn = await aio_pika.connect_robust(
                    self.url,
                    reconnect_interval=self.reconnect_interval,
                    client_properties={"connection_name": "chronctl"},
                )
        finally:
            _quiet_connects -= 1
        self._conn = conn
        try:
            await self.connect_state()
        except BaseException:
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        try:
            async with self._broker():
                # A message no queue takes (a queue deleted by hand) raises, never vanishes.
                self._pub = await conn.channel(publisher_confirms=True, on_return_raises=True)
                self._chan = await conn.channel(publisher_confirms=False)
                self._exchange = await self._pub.declare_exchange(
                    self.exchange_name, aio_pika.ExchangeType.DIRECT, durable=self.durable
                )
                dlx = await self._pub.declare_exchange(
                    self.dlx, aio_pika.ExchangeType.FANOUT, durable=self.durable
                )
                dead = await self._chan.declare_queue(self.dead_queue, durable=self.durable)
                await dead.bind(dlx, routing_key="")
        except BaseException:
            await self.disconnect()
            raise

    async def disconnect(self) -> None:
        conn, self._conn = self._conn, None
        self._pub = self._chan = self._exchange = None
        self._queues.clear()
        self._held.clear()
        self._buffer.clear()
        self._consumers.clear()
        try:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), self.timeout)
        finally:
            await self.disconnect_state()

    async def _ensure(self) -> None:
        if self._conn is None:
            await self.connect()

    async def health_check(self) -> bool:
        if not await self.state.health_check():
            return False
        try:
            await self._ensure()
            async with self._broker():
                assert self._chan is not None
                await self._chan.declare_queue(self.dead_queue, passive=True)
            return True
        except BackendError:
            return False

    async def _queue(self, name: str) -> AbstractQueue:
        queue = self._queues.get(name)
        if queue is not None:
            return queue
        async with self._declare_lock:
            queue = self._queues.get(name)
            if queue is None:
                assert self._chan is not None and self._exchange is not None
                queue = await self._chan.declare_queue(
                    self.broker_queue(name),
                    durable=self.durable,
                    arguments={
                        "x-max-priority": self.max_priority,
                        "x-dead-letter-exchange": self.dlx,
                    },
                )
                await queue.bind(self.exchange_name, routing_key=name)
                self._queues[name] = queue
                self._known.add(name)
        return queue

    @staticmethod
    async def _settle(message: AbstractIncomingMessage, action: Coroutine[Any, Any, Any]) -> None:
        """ack/nack/reject `message`; one of a closed channel was already requeued by RabbitMQ.

        It returns once the frame is written or the message's channel is gone, and never
        lets a dropped connection pass for a cancellation (issue 15): aiormq fails the
        frames it had not written with CancelledError although nobody cancelled us, and a
        frame waiting for room in a dead connection's write queue waits forever. Either
        made an acknowledgement already committed in the state store lose its
        task_succeeded event (and its worker's in-flight slot), and could end the heartbeat.
        """
        from aiormq.exceptions import ChannelInvalidStateError

        try:
            closing = message.channel.closing
        except ChannelInvalidStateError:
            action.close()
            return
        settle = asyncio.ensure_future(action)
        try:
            await asyncio.wait((settle, closing), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            settle.cancel()  # a real cancellation of the caller
            raise
        finally:
            if closing.done():
                if not closing.cancelled():
                    closing.exception()  # retrieved: the closure is expected here
            else:
                closing.cancel()  # the observer only, never the channel
        if not settle.done() or settle.cancelled():
            settle.cancel()
            log.debug("could not settle a message: its connection closed")
            return
        exc = settle.exception()
        if exc is not None:
            log.debug("could not settle a message: %s", exc)

    @staticmethod
    def _open(message: AbstractIncomingMessage) -> bool:
        """Whether the channel that delivered `message` is still open. aio-pika raises
        rather than answer once it is closed: let through, that ended the worker's claim
        loop after a dropped connection (buffered messages of the old channel)."""
        from aiormq.exceptions import ChannelInvalidStateError

        try:
            return not message.channel.is_closed
        except ChannelInvalidStateError:
            return False

    def _check_queue(self, tasks: Iterable[Task]) -> None:
        for task in tasks:
            if task.queue == DEAD_QUEUE:
                raise BackendError(
                    f"queue name '{DEAD_QUEUE}' is reserved on RabbitMQ: {self.dead_queue} is "
                    "the dead letter queue"
                )

    # -- publishing -------------------------------------------------------------------
    async def _publish(self, tasks: Sequence[Task]) -> None:
        """Publish claimed tasks; confirm them in the state store, or un-stamp them."""
        if not tasks:
            return
        import aio_pika

        ids = [t.id for t in tasks]
        mode = (
            aio_pika.DeliveryMode.PERSISTENT
            if self.durable
            else aio_pika.DeliveryMode.NOT_PERSISTENT
        )
        try:
            await self._ensure()
            async with self._broker():
                assert self._exchange is not None
                for name in {t.queue for t in tasks}:
                    await self._queue(name)
                exchange = self._exchange
                await asyncio.gather(
                    *(
                        exchange.publish(
                            aio_pika.Message(
                                json.dumps({"id": t.id}).encode(),
                                content_type="application/json",
                                delivery_mode=mode,
                                message_id=t.id,
                                priority=max(0, min(t.priority, self.max_priority)),
                            ),
                            routing_key=t.queue,
                            mandatory=True,
                        )
                        for t in tasks
                    )
                )
        except BaseException:
            self._queues.clear()  # a queue deleted behind our back is declared again
            with contextlib.suppress(Exception):
                await self.state.unpublish(ids)
            raise
        await self.state.confirm_published(ids)

    async def _publish_now(self, ids: Sequence[str]) -> None:
        """Publish these just-stored tasks if due; a broker outage leaves them to the pump."""
        now = time.time()
        for start in range(0, len(ids), _PUBLISH_BATCH):
            chunk = ids[start : start + _PUBLISH_BATCH]
            tasks = await self.state.claim_for_publish(
                now, len(chunk), ids=chunk, stale=self.republish_after
            )
            try:
                await self._publish(tasks)
            except BackendUnavailableError as exc:
                log.warning("%s; stored tasks will be published when it is back", exc)
                self._dirty = True
                return

    async def _pump(self, force: bool = False) -> int:
        """Publish due pending tasks nobody published yet (delays, retries, recoveries)."""
        now = time.time()
        hint = self._due_hint  # next_due told a worker to come back at this time
        if not (force or self._dirty or now >= self._pump_at or (hint is not None and now >= hint)):
            return 0
        async with self._pump_lock:
            self._dirty = False
            self._due_hint = None
            self._pump_at = now + self.pump_interval
            count = 0
            while True:
                tasks = await self.state.claim_for_publish(
                    time.time(), _PUBLISH_BATCH, stale=self.republish_after
                )
                try:
                    await self._publish(tasks)
                except BaseException:
                    self._dirty = True
                    raise
                count += len(tasks)
                if len(tasks) < _PUBLISH_BATCH:
                    return count

    # -- the queue --------------------------------------------------------------------
    async def enqueue(self, task: Task) -> tuple[str, bool]:
        self._check_queue([task])
        await self._ensure()
        task_id, created = await self.state.enqueue(task)
        if created and task.scheduled_at <= time.time():
            await self._publish_now([task.id])
        self.notify()
        return task_id, created

    async def enqueue_many(
        self,
        tasks: Sequence[Task],
        *,
        resume: str | None = None,
        progress: BulkProgress | None = None,
    ) -> list[tuple[str, bool]]:
        """As atomic or resumable as the state store's `enqueue_many` (SQLite: one
        transaction; Redis: resumable steps), since the tasks live there. Publishing
        follows; a task stored but not yet published (an interruption, an outage)
        is published by the pump of any running worker."""
        self._check_queue(tasks)
        await self._ensure()
        out = await self.state.enqueue_many(tasks, resume=resume, progress=progress)
        now = time.time()
        due = [
            t.id
            for t, (_, created) in zip(tasks, out, strict=True)
            if created and t.scheduled_at <= now
        ]
        try:
            await self._publish_now(due)
        except asyncio.CancelledError:
            # Every task is stored: publishing is left to the pump, and the caller
            # learns that the batch is complete rather than that it was cut short.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            self._dirty = True
        self.notify()
        return out

    async def record_fire(
        self, job: str, fire_time: float, task: Task | None, max_instances: int | None
    ) -> FireOutcome:
        if task is not None:
            self._check_queue([task])
        await self._ensure()
        out = await self.state.record_fire(job, fire_time, task, max_instances)
        if out is FireOutcome.ENQUEUED and task is not None:
            if task.scheduled_at <= time.time():
                await self._publish_now([task.id])
            self.notify()
        return out

    async def _consumable(self, queues: Sequence[str] | None) -> list[str]:
        # Queue names and pauses are read at most once a second (a pause from another
        # process applies within a second; one from this process at once).
        now = time.monotonic()
        if self._infos is None or now >= self._infos_until:
            self._infos = await self.state.list_queues()
            self._infos_until = now + 1.0
        infos = self._infos
        paused = {q.name for q in infos if q.paused}
        if queues is not None:
            names = set(queues)
        else:  # every queue: those with active tasks, those seen here, and "default"
            names = {q.name for q in infos} | self._known | {"default"}
        return sorted(n for n in names if n not in paused and n != DEAD_QUEUE)

    async def dequeue(
        self,
        max_items: int = 1,
        *,
        queues: Sequence[str] | None = None,
        lease: float = 30.0,
        worker: str = "",
    ) -> list[Task]:
        await self._ensure()
        now = time.time()
        if now >= self._recover_at:
            self._recover_at = now + 1.0
            if await self.state.recover_expired():
                self._dirty = True
        await self._pump()
        names = await self._consumable(queues)
        self._last_queues, self._last_max = names, max(1, max_items)
        wanted = set(names)
        if self._consumers and set(self._consumers) != wanted:
            async with self._broker():  # a queue paused or added since: consume accordingly
                await self._consume(names, max(1, max_items))
        messages = await self._take(wanted, max_items)
        if not messages and names:
            try:
                async with self._broker():
                    await self._consume(names, max(1, max_items))
                    got: list[tuple[str, AbstractIncomingMessage]] = []
                    active = [(n, await self._queue(n)) for n in names]
                    while active and len(got) < max_items:
                        for name, queue in list(active):
                            message = await queue.get(no_ack=False, fail=False)
                            if message is None:
                                active.remove((name, queue))
                                continue
                            got.append((name, message))
                            messages.append(message)
                            if not message.message_count:
                                # basic.get-ok says the queue is now empty: skip the round
                                # trip that would only hear "get-empty".
                                active.remove((name, queue))
                            if len(got) >= max_items:
                                break
                # Our consumers may have taken what the gets missed: the broker sent those
                # deliveries before its get answers (one channel keeps frame order), so
                # once their callbacks have run they are in the buffer. Gets and deliveries
                # together, highest priority first: the rest stays buffered.
                for _ in range(5):
                    await asyncio.sleep(0)
                got = [(n, m) for n, m in self._buffer if n in wanted] + got  # sent first
                self._buffer = [(n, m) for n, m in self._buffer if n not in wanted]
                got.sort(key=lambda item: -(item[1].priority or 0))
                messages = [m for _, m in got[:max_items]]
                self._buffer = got[max_items:] + self._buffer
            except BaseException:
                self._queues.clear()  # declare again next time (a queue deleted by hand)
                self._consumers.clear()
                for message in messages:  # never leave a fetched message stranded
                    await self._settle(message, message.nack(requeue=True))
                raise
        return await self._claim(messages, lease, worker)

    async def _take(self, wanted: set[str], limit: int) -> list[AbstractIncomingMessage]:
        """Up to `limit` buffered messages of the wanted queues; those of queues no longer
        wanted (paused) go back to the broker."""
        messages: list[AbstractIncomingMessage] = []
        keep: list[tuple[str, AbstractIncomingMessage]] = []
        for name, message in self._buffer:
            if not self._open(message):
                continue  # its channel died: RabbitMQ requeued it
            if name in wanted and len(messages) < limit:
                messages.append(message)
            elif name in wanted:
                keep.append((name, message))
            else:
                await self._settle(message, message.nack(requeue=True))
        self._buffer = keep
        return messages

    async def _consume(self, names: Sequence[str], slots: int) -> None:
        """Keep one consumer per claimed queue. The broker then pushes up to `prefetch`
        unacked messages (the running tasks' and as many again, buffered): a busy worker
        finds its next batch already here. A queue no longer claimed (paused) stops
        being consumed; its buffered messages are nacked back by `dequeue`."""
        assert self._chan is not None
        for name in [n for n in self._consumers if n not in names]:
            queue, tag = self._consumers.pop(name)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(queue.cancel(tag), 1.0)
        if not self._consumers:
            await self._chan.set_qos(prefetch_count=2 * slots)
        for name in names:
            if name not in self._consumers:
                queue = await self._queue(name)
                self._consumers[name] = (
                    queue,
                    await queue.consume(self._consumer(name), no_ack=False),
                )

    async def _claim(
        self, messages: list[AbstractIncomingMessage], lease: float, worker: str
    ) -> list[Task]:
        if not messages:
            return []
        by_id: dict[str, AbstractIncomingMessage] = {}
        drop: list[AbstractIncomingMessage] = []
        for message in messages:
            try:
                task_id = json.loads(message.body)["id"]
                if not isinstance(task_id, str):
                    raise TypeError(task_id)
            except (ValueError, KeyError, TypeError):
                log.warning("dead-lettering a malformed message on %s", message.routing_key)
                await self._settle(message, message.reject(requeue=False))
                continue
            if task_id in by_id:
                drop.append(message)
            else:
                by_id[task_id] = message
        # A redelivery is a lost run unless this very process still runs the task (its own
        # connection was restored after a broker restart).
        lost = [i for i, m in by_id.items() if m.redelivered and i not in self._held]
        try:
            claimed, dead = await self.state.claim_ids(
                list(by_id), lease=lease, worker=worker, lost=lost, lost_error=LOST_CONSUMER_ERROR
            )
        except BaseException:
            for message in by_id.values():
                await self._settle(message, message.nack(requeue=True))
            raise
        taken = {t.id: t for t in claimed}
        for task_id, message in by_id.items():
            held = self._held.get(task_id)
            if task_id in taken:
                if held is not None:
                    await self._settle(held[1], held[1].ack())  # an older run of it lost its lease
                self._held[task_id] = (taken[task_id].deliveries, message)
            elif task_id in dead:
                await self._settle(message, message.reject(requeue=False))
            elif held is not None and not self._open(held[1]):
                self._held[task_id] = (held[0], message)  # still running here: adopt the copy
            else:
                drop.append(message)  # cancelled, finished, not due, or a duplicate
        for message in drop:
            await self._settle(message, message.ack())
        return claimed

    def _pop_held(self, task: Task) -> AbstractIncomingMessage | None:
        held = self._held.get(task.id)
        if held is None or held[0] != task.deliveries:
            return None
        del self._held[task.id]
        return held[1]

    async def acknowledge(self, task: Task) -> bool:
        ok = await self.state.acknowledge(task)
        message = self._pop_held(task)
        if message is not None:
            await self._settle(message, message.ack())
        return ok

    async def reject(self, task: Task, *, requeue: bool, retry_at: float | None = None) -> bool:
        ok = await self.state.reject(task, requeue=requeue, retry_at=retry_at)
        message = self._pop_held(task)
        if message is not None:
            if ok and not requeue:
                await self._settle(message, message.reject(requeue=False))  # -> <queue_name>.dead
            else:
                await self._settle(
                    message, message.ack()
                )  # the pump republishes the retry when due
        if ok and requeue:
            self._dirty = True
            if retry_at is None or retry_at <= time.time():
                await self._pump_quietly()
            self.notify()
        return ok

    async def _pump_quietly(self) -> None:
        try:
            await self._pump(force=True)
        except BackendUnavailableError as exc:
            log.warning("%s; due tasks will be published when it is back", exc)

    async def release(self, tasks: Iterable[Task], *, at: float | None = None) -> None:
        """Back to pending: the message goes back to its queue, or, with `at` (a rate-limited
        task stepping aside), is acked and the pump publishes the task again at `at`."""
        tasks = list(tasks)
        await self.state.release(tasks, at=at)
        for task in tasks:
            message = self._pop_held(task)
            if message is not None:
                await self._settle(
                    message, message.nack(requeue=True) if at is None else message.ack()
                )
        if at is not None:
            self._dirty = True
        self.notify()

    async def extend_leases(self, tasks: Sequence[Task], lease: float) -> set[str]:
        lost = await self.state.extend_leases(tasks, lease)
        for task in tasks:
            if task.id in lost:
                message = self._pop_held(task)
                if message is not None:
                    await self._settle(message, message.ack())
        return lost

    async def recover_expired(self) -> int:
        count = await self.state.recover_expired()
        if count:
            self._dirty = True
            await self._pump_quietly()
            self.notify()
        return count

    async def next_due(self, queues: Sequence[str] | None = None) -> float | None:
        """When this process has something to do without a message: the pump's next work.

        Due tasks already published arrive as messages and wake `wait_for_work`."""
        if self._buffer:
            return time.time()
        due: float | None = await self.state.next_publish(queues, stale=self.republish_after)
        self._due_hint = due
        return due

    async def wait_for_work(self, timeout: float) -> None:
        """Wait for a message on the queues last dequeued from (their consumers stay open),
        a local wakeup, or `timeout`; messages stay buffered (unacked) for the next dequeue."""
        if self._buffer or self._wakeup.is_set():
            self._wakeup.clear()
            return
        self._arrived.clear()
        if self._conn is not None and self._last_queues:
            try:
                async with self._broker():
                    await self._consume(self._last_queues, self._last_max)
            except BackendUnavailableError as exc:
                log.debug("cannot consume while idle: %s", exc)
                self._consumers.clear()
        waits = [
            asyncio.ensure_future(self._wakeup.wait()),
            asyncio.ensure_future(self._arrived.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
            self._wakeup.clear()

    def _consumer(self, name: str) -> Any:
        async def on_message(message: AbstractIncomingMessage) -> None:
            self._buffer.append((name, message))
            self._arrived.set()

        return on_message

    # -- state the broker must hear of (the rest is forwarded by BrokerBackend) -------
    async def retry_dead(self, task_ids: Sequence[str] | None = None) -> int:
        count = await self.state.retry_dead(task_ids)
        if count:
            self._dirty = True
            await self._ensure()
            await self._pump_quietly()
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
        count = await self.state.purge_dead(
            older_than, limit=limit, job=job, exclude_jobs=exclude_jobs
        )
        if older_than is None and limit is None and job is None and not exclude_jobs:
            await self._ensure()
            async with self._broker():
                assert self._chan is not None
                dead = await self._chan.declare_queue(self.dead_queue, passive=True)
                await dead.purge()
        return count

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        await self.state.set_queue_paused(queue, paused)
        self._infos = None
        if not paused:
            self.notify()

    async def import_tasks(self, tasks: Sequence[Task]) -> int:
        self._check_queue(tasks)
        added = await self.state.import_tasks(tasks)
        if added:
            self._dirty = True
            await self._ensure()
            await self._pump_quietly()
            self.notify()
        return added

    # -- tests and tooling ------------------------------------------------------------
    async def delete_layout(self, queues: Iterable[str] = ()) -> None:
        """Delete this backend's broker queues and exchanges (tests, uninstall)."""
        await self._ensure()
        assert self._chan is not None
        seen = {t.queue for t in await self.state.list_tasks(limit=None)}
        names = {self.broker_queue(q) for q in (*self._known, *seen, *queues, "default")}
        for name in sorted(names | {self.dead_queue}):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._chan.queue_delete(name), self.timeout)
        for name in (self.exchange_name, self.dlx):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._chan.exchange_delete(name), self.timeout)
