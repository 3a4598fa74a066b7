"""RabbitMQBackend on a real broker: layout, dead letters, delays, priorities, a killed
consumer and a broker restart. (The contract, engine and cron suites also run on it.)"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from chronctl.backends.rabbitmq import LOST_CONSUMER_ERROR, RabbitMQBackend
from chronctl.backends.redis import RedisBackend
from chronctl.backends.sqlite import SQLiteBackend
from chronctl.errors import BackendUnavailableError
from chronctl.models import Task, TaskStatus
from tests.conftest import (
    RABBITMQ_URL,
    ROOT,
    _redis,
    forget_test_data,
    rabbitmq_backend,
    rabbitmq_vhost,
    with_query,
)


def make_rabbit(tmp_path: Path, state: str, **options: object) -> RabbitMQBackend:
    """A RabbitMQ backend whose state store is a SQLite file (one host) or Redis (several)."""
    store = _redis(tmp_path) if state == "redis" else None
    backend = rabbitmq_backend(tmp_path, state=store, **options)
    assert isinstance(backend, RabbitMQBackend)
    return backend


async def close_rabbit(backend: RabbitMQBackend) -> None:
    await forget_test_data(backend)
    await backend.disconnect()


def state_url(backend: RabbitMQBackend) -> str:
    """The URL another process opens to share this backend's state store."""
    from chronctl.backends.redis import RedisBackend

    if isinstance(backend.state, RedisBackend):
        return f"{backend.state.url}?prefix={backend.state.prefix}"
    return f"sqlite:///{backend.state.db_path}"  # type: ignore[attr-defined]


def twin(backend: RabbitMQBackend) -> RabbitMQBackend:
    """Another process's view: same broker names, its own connection to the same state."""
    from chronctl.backends import from_url

    return RabbitMQBackend(
        RABBITMQ_URL, backend.queue_name, backend.exchange_name, state=from_url(state_url(backend))
    )


@pytest.fixture(params=["sqlite", "redis"])
async def rabbit(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[RabbitMQBackend]:
    backend = make_rabbit(tmp_path, request.param)
    await backend.connect()
    try:
        yield backend
    finally:
        await close_rabbit(backend)


def rabbitmqctl(*args: str) -> str:
    """rabbitmqctl on the broker of CHRONCTL_TEST_AMQP, which must run on this host (it
    talks to the local node); listings are of the URL's virtual host."""
    from urllib.parse import urlsplit

    host = urlsplit(RABBITMQ_URL).hostname or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1", socket.gethostname()):
        pytest.skip(f"rabbitmqctl drives the local node, and CHRONCTL_TEST_AMQP names {host}")
    if args[0].startswith("list_"):
        args = (args[0], "-p", rabbitmq_vhost(), *args[1:])
    out = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


async def queue_depth(name: str) -> int:
    """Messages waiting in a broker queue, asked over AMQP (works on any test server)."""
    import aio_pika

    connection = await aio_pika.connect(RABBITMQ_URL)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def broker_messages(
    backend: RabbitMQBackend, queue: str, want: int, deadline: float = 5.0
) -> list[str]:
    """Task ids of messages waiting in a broker queue (taken off it), polling until `want`."""
    import aio_pika

    ids: list[str] = []
    connection = await aio_pika.connect(RABBITMQ_URL)
    try:
        channel = await connection.channel()
        q = await channel.declare_queue(queue, passive=True)
        end = time.monotonic() + deadline
        while len(ids) < want and time.monotonic() < end:
            message = await q.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            ids.append(json.loads(message.body)["id"])
    finally:
        await connection.close()
    return ids


async def test_layout_as_rabbitmqctl_shows_it(rabbit: RabbitMQBackend) -> None:
    await rabbit.enqueue(Task(job="j", queue="mail"))
    rows = {
        line.split("\t")[0]: line.split("\t")[1:]
        for line in rabbitmqctl("list_queues", "name", "durable", "arguments").splitlines()
    }
    durable, arguments = rows[f"{rabbit.queue_name}.mail"]
    assert durable == "true"
    assert f'{{"x-dead-letter-exchange","{rabbit.exchange_name}.dlx"}}' in arguments
    assert '{"x-max-priority",10}' in arguments
    assert rows[f"{rabbit.queue_name}.dead"][0] == "true"
    exchanges = {
        tuple(line.split("\t")[:3])
        for line in rabbitmqctl("list_exchanges", "name", "type", "durable").splitlines()
    }
    assert (rabbit.exchange_name, "direct", "true") in exchanges
    assert (f"{rabbit.exchange_name}.dlx", "fanout", "true") in exchanges


async def test_dead_task_lands_in_the_dead_queue(rabbit: RabbitMQBackend) -> None:
    t = Task(job="j", max_retries=0)
    await rabbit.enqueue(t)
    [got] = await rabbit.dequeue(1, worker="w")
    got.error = "RuntimeError: no"
    assert await rabbit.reject(got, requeue=False)
    assert await broker_messages(rabbit, rabbit.dead_queue, 1) == [t.id]
    assert [d.id for d in await rabbit.list_tasks(status=TaskStatus.DEAD)] == [t.id]
    # dlq retry publishes the same task again.
    assert await rabbit.retry_dead([t.id]) == 1
    assert [x.id for x in await rabbit.dequeue(1)] == [t.id]


async def test_delayed_task_does_not_block_an_earlier_one(rabbit: RabbitMQBackend) -> None:
    later = Task(job="j", scheduled_at=time.time() + 60, priority=9)
    now = Task(job="j", priority=0)
    await rabbit.enqueue(later)
    await rabbit.enqueue(now)
    started = time.monotonic()
    assert [t.id for t in await rabbit.dequeue(5)] == [now.id]
    assert time.monotonic() - started < 1.0
    # The delay is in the state store, not in the broker.
    assert await rabbit.next_due() == pytest.approx(later.scheduled_at)
    assert await broker_messages(rabbit, rabbit.broker_queue("default"), 1, 0.3) == []


async def test_priority_nine_before_zero(rabbit: RabbitMQBackend) -> None:
    low = Task(job="j", priority=0)
    high = Task(job="j", priority=9)
    await rabbit.enqueue_many([low, high])
    assert [t.id for t in await rabbit.dequeue(1)] == [high.id]
    assert [t.id for t in await rabbit.dequeue(1)] == [low.id]


async def test_wait_for_work_wakes_on_a_message_from_another_process(
    rabbit: RabbitMQBackend, tmp_path: Path
) -> None:
    await rabbit.dequeue(4)  # remembers which queues to consume while idle
    other = twin(rabbit)
    await other.connect()
    try:
        waiter = asyncio.create_task(rabbit.wait_for_work(30))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        t = Task(job="j")
        started = time.monotonic()
        await other.enqueue(t)
        await asyncio.wait_for(waiter, 5)
        assert time.monotonic() - started < 1.0
        assert [x.id for x in await rabbit.dequeue(4)] == [t.id]
    finally:
        await other.disconnect()


_DOOMED_CONSUMER = """
import asyncio, os, signal, sys
from chronctl.backends import from_url
from chronctl.backends.rabbitmq import RabbitMQBackend

async def main():
    url, prefix, state = sys.argv[1:4]
    backend = RabbitMQBackend(url, prefix, prefix, state=from_url(state))
    await backend.connect()
    got = await backend.dequeue(10, worker="doomed", lease=300)
    print(" ".join(sorted(t.id for t in got)), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no ack, no clean close

asyncio.run(main())
"""


async def test_killed_consumer_redelivers_and_counts(rabbit: RabbitMQBackend) -> None:
    retry = Task(job="j", max_retries=1)
    last = Task(job="j", max_retries=0)
    await rabbit.enqueue_many([retry, last])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _DOOMED_CONSUMER,
        RABBITMQ_URL,
        rabbit.queue_name,
        state_url(rabbit),
        stdout=subprocess.PIPE,
        env=env,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == -9
    assert out.decode().split() == sorted([retry.id, last.id])
    # RabbitMQ redelivers the unacked messages; the lease (300 s) plays no part here.
    got: list[Task] = []
    end = time.monotonic() + 10
    while not got and time.monotonic() < end:
        got = await rabbit.dequeue(10, worker="heir")
        if not got:
            await asyncio.sleep(0.05)
    [taken] = got
    assert (taken.id, taken.worker, taken.attempt, taken.deliveries, taken.error) == (
        retry.id,
        "heir",
        1,
        2,
        LOST_CONSUMER_ERROR,
    )
    dead = await rabbit.get_task(last.id)
    assert dead is not None and (dead.status, dead.attempt) == (TaskStatus.DEAD, 1)
    assert await broker_messages(rabbit, rabbit.dead_queue, 1) == [last.id]
    assert sorted((r.task_id, r.error) for r in await rabbit.history()) == sorted(
        [(retry.id, LOST_CONSUMER_ERROR), (last.id, LOST_CONSUMER_ERROR)]
    )
    taken.result = "ok"
    assert await rabbit.acknowledge(taken)


@pytest.mark.broker_restart  # stops the shared broker: see conftest._broker_lock
async def test_broker_restart_loses_nothing(rabbit: RabbitMQBackend) -> None:
    before = Task(job="j", priority=3)
    await rabbit.enqueue(before)
    during = Task(job="j", priority=2)
    rabbitmqctl("stop_app")
    try:
        with pytest.raises(BackendUnavailableError) as info:
            await rabbit.dequeue(10)
        message = str(info.value)
        assert "\n" not in message and "guest:guest" not in message
        assert rabbit.display_url in message
        # Stored in the state store; published once the broker is back.
        assert await rabbit.enqueue(during) == (during.id, True)
    finally:
        rabbitmqctl("start_app")
    got: list[Task] = []
    end = time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < end:
        try:
            got += await rabbit.dequeue(10)
        except BackendUnavailableError:
            await asyncio.sleep(0.2)  # the robust connection is still reconnecting
    assert [t.id for t in got] == [before.id, during.id]
    after = Task(job="j")
    await rabbit.enqueue(after)
    assert [t.id for t in await rabbit.dequeue(10)] == [after.id]


def test_from_url_options_and_state(tmp_path: Path) -> None:
    from chronctl.backends import from_url
    from chronctl.backends.sqlite import SQLiteBackend

    backend = from_url(
        "amqp://u:secret@mq:5672/prod?queue_name=q&exchange_name=x&heartbeat=30",
        base=tmp_path,
        state="sqlite:///state.db",
    )
    assert isinstance(backend, RabbitMQBackend)
    assert (backend.queue_name, backend.exchange_name) == ("q", "x")
    assert backend.url == "amqp://u:secret@mq:5672/prod?heartbeat=30"
    assert backend.display_url == "amqp://***@mq:5672/prod?heartbeat=30"
    assert isinstance(backend.state, SQLiteBackend)
    assert backend.state.db_path == tmp_path / "state.db"
    default = from_url("amqps://mq/", base=tmp_path)
    assert default.state.db_path == tmp_path / "chronctl.db"  # type: ignore[attr-defined]
    shared = from_url("amqp://mq/", state="redis://:pw@cache:6379/2?prefix=app")
    assert shared.state.prefix == "{app}:"  # type: ignore[attr-defined]
    assert shared.state.display_url == "redis://***@cache:6379/2?prefix=app"


async def test_due_pump_of_another_process_publishes_a_delayed_task(
    rabbit: RabbitMQBackend,
) -> None:
    t = Task(job="j", scheduled_at=time.time() + 0.5)
    await rabbit.enqueue(t)
    other = twin(rabbit)
    await other.connect()
    try:
        assert await other.dequeue(1) == []
        due = await other.next_due()
        assert due == pytest.approx(t.scheduled_at)
        await asyncio.sleep(max(0.0, due - time.time()))  # what an idle worker does
        assert [x.id for x in await other.dequeue(1)] == [t.id]
    finally:
        await other.disconnect()


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_cli_on_an_amqp_manifest(tmp_path: Path, store: str) -> None:
    import uuid

    from tests.cli.helpers import chronctl, one_error_line
    from tests.conftest import REDIS_URL, need_rabbitmq, need_service, redis_reachable

    need_rabbitmq()
    prefix = f"chronctl-test-{uuid.uuid4().hex[:10]}"
    state = "sqlite:///state.db"
    if store == "redis":  # the several-hosts deployment
        ok, why = redis_reachable()
        need_service("Redis", ok, why)
        state = with_query(REDIS_URL, prefix=prefix)
    (tmp_path / "jobs.toml").write_text(f"""
[scheduler]
backend = "{with_query(RABBITMQ_URL, queue_name=prefix, exchange_name=prefix)}"
state = "{state}"

[jobs.hello]
command = ["true"]

[jobs.broken]
command = ["false"]
queue = "mail"
max_retries = 0
""")
    try:
        for job in ("hello", "broken"):
            assert chronctl("enqueue", job, cwd=tmp_path).returncode == 0
        assert asyncio.run(queue_depth(f"{prefix}.default")) == 1
        assert asyncio.run(queue_depth(f"{prefix}.mail")) == 1
        run = chronctl("run", "--once", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        tasks = json.loads(chronctl("--json", "tasks", "list", cwd=tmp_path).stdout)
        assert sorted((t["job"], t["status"]) for t in tasks) == [
            ("broken", "dead"),
            ("hello", "succeeded"),
        ]
        assert asyncio.run(queue_depth(f"{prefix}.dead")) == 1
        [dead] = json.loads(chronctl("--json", "dlq", "list", cwd=tmp_path).stdout)
        assert dead["job"] == "broken"
        purge = chronctl("--json", "dlq", "purge", cwd=tmp_path)
        assert json.loads(purge.stdout) == {"count": 1}
        assert asyncio.run(queue_depth(f"{prefix}.dead")) == 0
        down = chronctl(
            "--backend", "amqp://user:hunter2@127.0.0.1:1/%2F", "tasks", "list", cwd=tmp_path
        )
        assert down.returncode == 1
        line = one_error_line(down)
        assert "hunter2" not in line and "amqp://***@127.0.0.1:1/%2F" in line
    finally:
        from chronctl.backends import from_url

        cleaner = RabbitMQBackend(
            RABBITMQ_URL, prefix, prefix, state=from_url(state, base=tmp_path)
        )

        async def drop() -> None:
            await cleaner.connect()
            await cleaner.delete_layout(["default", "mail"])
            if isinstance(cleaner.state, RedisBackend):
                await cleaner.state.drop_everything()
            await cleaner.disconnect()

        asyncio.run(drop())


@pytest.mark.broker_restart  # stops the shared broker: see conftest._broker_lock
async def test_running_scheduler_survives_a_broker_restart(rabbit: RabbitMQBackend) -> None:
    from chronctl import Scheduler

    scheduler = Scheduler(rabbit, workers=2, lease=10, shutdown_timeout=5)
    ran: list[str] = []
    done = asyncio.Event()

    @scheduler.job(name="tick")
    async def tick(label: str) -> None:
        ran.append(label)
        done.set()

    async with scheduler:
        await scheduler.enqueue("tick", args=["before"])
        await asyncio.wait_for(done.wait(), 10)
        done.clear()
        rabbitmqctl("stop_app")
        try:
            await asyncio.sleep(1.5)  # the idle worker meets the outage
            await scheduler.enqueue("tick", args=["during"])  # stored, published later
        finally:
            rabbitmqctl("start_app")
        await asyncio.wait_for(done.wait(), 30)
        await scheduler.enqueue("tick", args=["after"])
        end = time.monotonic() + 10
        while len(ran) < 3 and time.monotonic() < end:
            await asyncio.sleep(0.05)
    assert ran == ["before", "during", "after"]


async def test_two_schedulers_sharing_the_state_store_fire_once(rabbit: RabbitMQBackend) -> None:
    from chronctl.models import FireOutcome

    other = twin(rabbit)
    await other.connect()
    try:
        fire = time.time() - 1
        outcomes = await asyncio.gather(
            *(
                backend.record_fire("cron", fire, Task(job="cron", key=f"cron@{fire}"), 1)
                for backend in (rabbit, other, rabbit, other)
            )
        )
        assert sorted(outcomes) == sorted([FireOutcome.ENQUEUED] + [FireOutcome.DUPLICATE] * 3)
        [task] = await rabbit.list_tasks(job="cron")
        assert await broker_messages(rabbit, rabbit.broker_queue("default"), 2, 0.5) == [task.id]
    finally:
        await other.disconnect()


async def test_state_file_from_before_the_publish_columns_still_opens(tmp_path: Path) -> None:
    """The SQLite migration: an older file gains the publish markers and keeps its tasks."""
    import sqlite3

    from chronctl.backends.sqlite import rows, schema

    path = tmp_path / "old.db"
    old = Task(job="j")
    db = sqlite3.connect(path)
    db.executescript(schema._SCHEMA)  # the schema before the ALTER TABLE migration
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute(schema._INSERT_TASK, rows._task_row(old))
    db.commit()
    assert "published_at" not in {r[1] for r in db.execute("PRAGMA table_info(tasks)")}
    db.close()
    store = SQLiteBackend(path)
    await store.connect()
    try:
        [claimed] = await store.claim_for_publish(time.time(), 10)
        assert claimed.id == old.id
        assert await store.claim_for_publish(time.time(), 10) == []  # stamped once
        await store.confirm_published([old.id])
        assert await store.next_publish() is None
    finally:
        await store.disconnect()
    await store.connect()  # a second open migrates nothing and loses nothing
    try:
        assert [t.id for t in await store.list_tasks()] == [old.id]
    finally:
        await store.disconnect()


@pytest.mark.parametrize("state", ["sqlite", "redis"])
async def test_a_crash_between_stamp_and_publish_loses_nothing(tmp_path: Path, state: str) -> None:
    backend = make_rabbit(tmp_path, state, republish_after=0.3)
    await backend.connect()
    try:
        t = Task(job="j")
        await backend.state.enqueue(t)  # stored, as enqueue does first...
        stamped = await backend.state.claim_for_publish(time.time(), 10, stale=0.3)
        assert [x.id for x in stamped] == [t.id]  # ...stamped, then the publisher died
        assert await backend.dequeue(1) == []  # another publisher may still be at it
        due = await backend.next_due()
        assert due is not None and due > time.time()
        await asyncio.sleep(due - time.time())
        assert [x.id for x in await backend.dequeue(1)] == [t.id]
    finally:
        await close_rabbit(backend)


async def test_tasks_already_in_a_redis_store_are_published(tmp_path: Path) -> None:
    """A Redis store filled before any RabbitMQ backend used it (migrate, or a Redis-only
    deployment switching to RabbitMQ) has its pending tasks indexed and published."""
    from chronctl.backends.redis import RedisBackend

    backend = make_rabbit(tmp_path, "redis")
    store = backend.state
    assert isinstance(store, RedisBackend)
    early, later = Task(job="j", priority=1), Task(job="j", scheduled_at=time.time() + 0.3)
    await store.connect()
    await store.enqueue_many([early, later])
    await backend.connect()
    try:
        assert [t.id for t in await backend.dequeue(5)] == [early.id]
        due = await backend.next_due()
        assert due == pytest.approx(later.scheduled_at)
        await asyncio.sleep(max(0.0, due - time.time()))
        assert [t.id for t in await backend.dequeue(5)] == [later.id]
    finally:
        await close_rabbit(backend)


def test_a_state_store_without_publish_markers_is_refused(tmp_path: Path) -> None:
    from chronctl.backends.memory import MemoryBackend
    from chronctl.errors import BackendError

    backend = RabbitMQBackend(RABBITMQ_URL, "never", "never", state=MemoryBackend())
    with pytest.raises(BackendError, match=r"cannot be the state store.*redis://"):
        asyncio.run(backend.connect())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("case", ["wrong password", "unknown vhost", "closed port"])
def test_cli_says_what_went_wrong_with_rabbitmq(tmp_path: Path, case: str) -> None:
    """Issue 14: a refused login, an unknown vhost and an unreachable broker each say so
    in their own line (they all said "unreachable (SomeAMQPError)"); no password shows."""
    import uuid
    from urllib.parse import quote, unquote, urlsplit, urlunsplit

    from chronctl.backends import redact_url
    from tests.cli.helpers import chronctl, one_error_line
    from tests.conftest import need_rabbitmq

    parts = urlsplit(RABBITMQ_URL)
    user = unquote(parts.username or "guest")
    secret = f"not-the-password-{uuid.uuid4().hex[:8]}"
    where = f"{parts.hostname}:{parts.port or 5672}"
    if case == "wrong password":
        need_rabbitmq()
        url = urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{secret}@{where}"))
        says = f": authentication failed for user '{user}'"
    elif case == "unknown vhost":
        need_rabbitmq()
        vhost = f"chronctl-no-such-vhost-{uuid.uuid4().hex[:8]}"
        url = urlunsplit(parts._replace(path=f"/{vhost}"))
        secret = unquote(parts.password or "guest")
        says = f": virtual host '{vhost}' does not exist, or user '{user}' may not use it"
    else:
        url = f"amqp://{quote(user, safe='')}:{secret}@127.0.0.1:{_free_port()}/%2F"
        says = " is unreachable: connection refused"
    result = chronctl("--backend", url, "queues", "list", cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    line = one_error_line(result)
    assert line == f"chronctl: RabbitMQ at {redact_url(url)}{says}"
    if secret != user:
        assert secret not in line


_NO_AIO_PIKA = '''
"""As if aio-pika (and its aiormq) were not installed: the import system finds nothing."""
import sys


class _NotInstalled:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in ("aio_pika", "aiormq"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled)
'''


def test_cli_names_the_extra_when_aio_pika_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like Redis: `pip install 'chronctl[rabbitmq]'`, not "unexpected error"."""
    from tests.cli.helpers import chronctl, one_error_line

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_NO_AIO_PIKA)
    monkeypatch.setenv("PYTHONPATH", str(site))
    result = chronctl("--backend", RABBITMQ_URL, "queues", "list", cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert one_error_line(result) == (
        "chronctl: the amqp:// backend needs the aio-pika package: pip install 'chronctl[rabbitmq]'"
    )


def test_library_log_lines_stay_out_of_cli_output(tmp_path: Path) -> None:
    """aio-pika logs "Purging queue ..." at INFO: the CLI prints its own line only."""
    import uuid

    from tests.cli.helpers import chronctl
    from tests.conftest import need_rabbitmq

    need_rabbitmq()
    prefix = f"chronctl-test-{uuid.uuid4().hex[:10]}"
    (tmp_path / "jobs.toml").write_text(f"""
[scheduler]
backend = "{with_query(RABBITMQ_URL, queue_name=prefix, exchange_name=prefix)}"
state = "sqlite:///state.db"

[jobs.hello]
command = ["true"]
""")
    try:
        assert chronctl("enqueue", "hello", cwd=tmp_path).returncode == 0
        for command, says in (
            (("queues", "purge", "default"), "purged 1 pending task(s) from 'default'\n"),
            (("dlq", "purge"), "purged 0 dead letter(s)\n"),
        ):
            result = chronctl(*command, cwd=tmp_path)
            assert (result.returncode, result.stdout, result.stderr) == (0, says, "")
    finally:
        from chronctl.backends import from_url

        cleaner = RabbitMQBackend(
            RABBITMQ_URL, prefix, prefix, state=from_url("sqlite:///state.db", base=tmp_path)
        )

        async def drop() -> None:
            await cleaner.connect()
            await cleaner.delete_layout(["default"])
            await cleaner.disconnect()

        asyncio.run(drop())


class _SettleHeld(SQLiteBackend):
    """A real SQLite store whose acknowledgement of `hold_job`'s task commits, then does not
    return until `proceed` is set: the group commit is done (a lease renewal finds the task
    no longer running) while the worker's settle is still pending, the window of issue 15."""

    def __init__(self, path: Path, hold_job: str) -> None:
        super().__init__(path)
        self.hold_job = hold_job
        self.held_id: str | None = None
        self.proceed = asyncio.Event()
        self.found_acked = asyncio.Event()  # a renewal saw the held task already acked
        self.renewed_after = asyncio.Event()  # the heartbeat came round again after that

    async def acknowledge(self, task: Task) -> bool:
        ok = await super().acknowledge(task)
        if task.job == self.hold_job:
            self.held_id = task.id
            await self.proceed.wait()
        return ok

    async def extend_leases(self, tasks: Sequence[Task], lease: float) -> set[str]:
        if self.found_acked.is_set():
            self.renewed_after.set()  # so the beat that found it has been handled
        lost = await super().extend_leases(tasks, lease)
        if self.held_id is not None and self.held_id in lost:
            self.found_acked.set()
        return lost


@pytest.mark.parametrize("over", ["rabbitmq", "sqlite-alone"])
async def test_renewal_finding_a_task_acked_leaves_its_settle_alone(
    tmp_path: Path, over: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 15: a W1 run hung, every task succeeded, fewer task_succeeded events than
    tasks. The heartbeat renewed the lease of a task whose acknowledgement had committed
    but whose settle had not resumed, found it not running, and cancelled the settle."""
    from chronctl import Scheduler
    from chronctl.events import EventBus
    from chronctl.executors import Executors
    from chronctl.scheduler import build_task
    from chronctl.worker import Worker

    state = _SettleHeld(tmp_path / "state.db", hold_job="quick")
    backend = rabbitmq_backend(tmp_path, state=state) if over == "rabbitmq" else state
    await backend.connect()
    jobs = Scheduler(backend)
    release_slow = asyncio.Event()

    @jobs.job()
    async def quick() -> None:
        return None

    @jobs.job()
    async def slow() -> None:  # keeps the heartbeat beating after `quick` is settled
        await release_slow.wait()

    bus = EventBus()
    succeeded: list[str] = []
    bus.on("task_succeeded", lambda event: succeeded.append(event.task.id))
    executors = Executors(threads=2, processes=1)
    worker = Worker(
        backend, jobs.get_job, executors, concurrency=2, prefetch=0, lease=0.3, events=bus
    )
    try:
        ids = [(await backend.enqueue(build_task(jobs.jobs[n], [], {})))[0] for n in jobs.jobs]
        with caplog.at_level(logging.DEBUG, logger="chronctl.backends.rabbitmq"):
            run = asyncio.create_task(worker.run_until_idle())
            await asyncio.wait_for(state.renewed_after.wait(), 10)
            state.proceed.set()
            release_slow.set()
            await asyncio.wait_for(run, 10)
        assert sorted(succeeded) == sorted(ids)  # one event per task, none lost
        runs = await backend.history(limit=None)
        assert sorted(r.task_id for r in runs) == sorted(ids)  # one acknowledgement each
        assert not [r for r in caplog.records if "could not settle" in r.getMessage()]
        if isinstance(backend, RabbitMQBackend):
            name = backend.broker_queue("default")
            await backend.disconnect()  # an unacked message would go back to the queue now
            assert await queue_depth(name) == 0
            await backend.connect()
    finally:
        await executors.shutdown()
        if isinstance(backend, RabbitMQBackend):
            await close_rabbit(backend)
        else:
            await backend.disconnect()


async def test_settling_on_a_dropped_connection_is_neither_a_cancellation_nor_a_hang() -> None:
    """When its connection drops, aiormq fails a frame it had not written with
    CancelledError (`FutureStore.reject_all`), and a frame waiting for room in the dead
    connection's write queue waits forever: the ack of a task whose success is already
    committed must neither turn into a cancelled run nor hang it (issue 15). A real
    cancellation of the caller still goes through."""
    import aio_pika

    from tests.conftest import need_rabbitmq

    need_rabbitmq()

    async def unwritten() -> None:
        raise asyncio.CancelledError  # what awaiting a frame rejected by reject_all raises

    async def no_room() -> None:
        await asyncio.Event().wait()  # a put on the full write queue nobody drains

    connection = await aio_pika.connect(RABBITMQ_URL)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        for _ in range(2):
            await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=queue.name)
        messages = []
        while len(messages) < 2:  # published without confirms: a get may come first
            message = await queue.get(no_ack=False, fail=False)
            if message is not None:
                messages.append(message)

        await RabbitMQBackend._settle(messages[0], unwritten())  # no CancelledError

        cancelled = asyncio.create_task(RabbitMQBackend._settle(messages[0], no_room()))
        await asyncio.sleep(0)  # one loop turn: it now waits for room
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled

        stuck = asyncio.create_task(RabbitMQBackend._settle(messages[1], no_room()))
        await asyncio.sleep(0)
        assert not stuck.done()
        await channel.close()
        await asyncio.wait_for(stuck, 10)  # returns: the broker requeued the message
    finally:
        await connection.close()


async def test_a_message_of_a_closed_channel_reads_as_not_open(tmp_path: Path) -> None:
    """aio-pika raises, rather than answer, when asked for a closed channel's message's
    channel: after a dropped connection that ended the worker's claim loop (issue 15)."""
    import aio_pika

    from tests.conftest import need_rabbitmq

    need_rabbitmq()
    connection = await aio_pika.connect(RABBITMQ_URL)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=queue.name)
        message = None
        while message is None:  # published without confirms: the get may come first
            message = await queue.get(no_ack=False, fail=False)
        assert RabbitMQBackend._open(message)
        await channel.close()
        assert not RabbitMQBackend._open(message)
    finally:
        await connection.close()
