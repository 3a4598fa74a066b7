"""Redis-specific behaviour on a real server: URLs, several schedulers and workers,
kill -9 recovery, a Redis restart mid-run, shared rate limits, the CLI."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chronctl import Scheduler
from chronctl.backends import from_url, redact_url
from chronctl.backends.redis import RedisBackend, parse_redis_url
from chronctl.errors import BackendError, BackendUnavailableError, UsageError
from chronctl.models import FireOutcome, Task

from .cli.helpers import ROOT, chronctl, one_error_line, poll, spawn
from .conftest import REDIS_URL, need_service, redis_reachable, with_query
from .test_engine import wait, waiter

pytestmark = pytest.mark.services
Controls = tuple[Callable[[], None], Callable[[], None]]  # start, kill -9


def unique_url() -> str:
    return with_query(REDIS_URL, prefix=f"chronctl-test-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def redis_url() -> Iterator[str]:
    ok, why = redis_reachable()
    need_service("Redis", ok, why)
    url = unique_url()
    yield url

    async def drop() -> None:
        backend = RedisBackend(url)
        async with backend:
            await backend.drop_everything()

    asyncio.run(drop())


def test_records_keep_every_field() -> None:
    """A task's record leaves out defaults and uses one-letter keys: a key out of place
    would silently swap, say, the worker and the error, so check with all fields set
    and distinct, and a bare task (nearly everything left out) too."""
    from dataclasses import fields

    from chronctl.backends.redis import task_from_record, task_record
    from chronctl.backends.redis.lua import RECORD_KEYS
    from chronctl.models import Task, TaskStatus

    assert sorted([*RECORD_KEYS, "id"]) == sorted(f.name for f in fields(Task))
    assert len(set(RECORD_KEYS.values())) == len(RECORD_KEYS)
    task = Task(
        job="j",
        args=[1, "a"],
        kwargs={"k": [2]},
        queue="q",
        priority=7,
        scheduled_at=11.5,
        id="tid",
        status=TaskStatus.RUNNING,
        attempt=2,
        max_retries=9,
        key="key",
        created_at=10.25,
        started_at=12.0,
        finished_at=13.0,
        result={"r": 1},
        error="err",
        traceback="tb",
        output="out",
        lease_until=14.0,
        worker="w",
        deliveries=3,
        fire_time=9.0,
    )
    assert task_from_record("tid", json.dumps(task_record(task))) == task
    bare = Task(job="j", id="t2", created_at=5.0)
    assert task_record(bare) == {"j": "j", "a": "5.0"}
    assert task_from_record("t2", json.dumps(task_record(bare))) == bare


def test_url_forms() -> None:
    assert parse_redis_url("redis://u:p@h:6379/3?prefix=app")["prefix"] == "app"
    sentinel = parse_redis_url("redis+sentinel://:pw@s1:26379,s2:26380/mymaster/2")
    assert sentinel["sentinel"] == [("s1", 26379), ("s2", 26380)]
    assert (sentinel["service"], sentinel["db"], sentinel["password"]) == ("mymaster", 2, "pw")
    cluster = parse_redis_url("rediss://:pw@h1:7000,h2:7001,[::1]/0?prefix=app")
    assert cluster["cluster"] == [("h1", 7000), ("h2", 7001), ("::1", 6379)]
    assert (cluster["tls"], cluster["password"], cluster["prefix"]) == (True, "pw", "app")
    assert parse_redis_url("redis://h1:7000?cluster=yes")["cluster"] == [("h1", 7000)]
    with pytest.raises(UsageError, match="only database 0"):
        parse_redis_url("redis://h1:7000,h2:7001/3")
    backend = from_url("rediss://admin:s3cret@cache.example:6380/1")
    assert isinstance(backend, RedisBackend)
    assert backend.display_url == "rediss://***@cache.example:6380/1"
    assert "s3cret" not in redact_url(backend.url)


async def test_unreachable_redis_is_one_clear_error() -> None:
    backend = RedisBackend("redis://user:s3cret@127.0.0.1:1/0", socket_connect_timeout=0.5)
    with pytest.raises(BackendUnavailableError) as info:
        await backend.connect()
    assert "unreachable" in str(info.value) and "s3cret" not in str(info.value)


async def test_two_schedulers_fire_once(redis_url: str) -> None:
    schedulers = [Scheduler(RedisBackend(redis_url), misfire_grace_time=600) for _ in range(3)]
    for s in schedulers:
        s.job(name="minutely", cron="* * * * *")(lambda: None)
        await s.backend.connect()
    last = (int(time.time() // 60) - 3) * 60 + 1.0
    await schedulers[0].backend.job_state("minutely", last - 3600)
    assert await schedulers[0].backend.record_fire("minutely", last, None, None) is (
        FireOutcome.MISSED
    )
    await asyncio.gather(*(s.fire_due() for s in schedulers))
    assert len(await schedulers[0].backend.list_tasks(job="minutely")) == 1
    for s in schedulers:
        await s.backend.disconnect()


async def test_rate_limit_is_shared_by_every_worker(redis_url: str) -> None:
    starts: list[float] = []
    schedulers = []
    for _ in range(2):
        s = Scheduler(RedisBackend(redis_url), workers=4, lease=5, shutdown_timeout=5)

        @s.job(name="limited", rate_limit=(4, 1.0))
        async def limited() -> None:
            starts.append(time.time())

        schedulers.append(s)
    done = [waiter(s, "task_succeeded")[0] for s in schedulers]
    counted: list[int] = []
    for s in schedulers:
        s.on("task_succeeded", lambda e: counted.append(1))
    for s in schedulers:
        await s.start()
    try:
        for _ in range(12):
            await schedulers[0].enqueue("limited")
        await wait(done[0], timeout=20)
        deadline = time.monotonic() + 20
        while len(counted) < 12 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # two processes' events: no single event to await
    finally:
        for s in schedulers:
            await s.stop()
    assert len(starts) == 12
    starts.sort()
    for i in range(len(starts) - 4):
        assert starts[i + 4] - starts[i] >= 1.0 - 0.05, starts  # never 5 within a second


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, Controls]]:
    """A redis-server this test owns (never the shared one), persisted so a restart loses
    nothing: append-only file fsynced on every write."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        str(tmp_path),
    ]
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        poll(lambda: _listening(port), timeout=10, what="redis-server")

    def stop() -> None:
        procs[-1].send_signal(signal.SIGKILL)
        procs[-1].wait()

    start()
    yield f"redis://127.0.0.1:{port}/0", (start, stop)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True


async def test_redis_restart_mid_run_loses_nothing(own_redis: tuple[str, Controls]) -> None:
    url, (start, stop) = own_redis
    s = Scheduler(
        RedisBackend(url, socket_timeout=1, socket_connect_timeout=1),
        workers=4,
        lease=5,
        shutdown_timeout=5,
    )
    ran: list[int] = []

    @s.job()
    async def work(n: int) -> None:
        ran.append(n)

    first, _ = waiter(s, "task_succeeded", 10)
    async with s:
        for n in range(10):
            await s.enqueue("work", args=[n])
        await wait(first)
        stop()  # kill -9 the server: every connection drops
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


def _manifest(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(f"""
[scheduler]
backend = "{url}"
lease = "1s"
shutdown_timeout = "5s"
pythonpath = ["{ROOT}"]
[defaults]
retry_delay = "0s"
[jobs.crash_once]
entrypoint = "tests.cli.jobs_for_cli:crash_once"
[jobs.crash]
entrypoint = "tests.cli.jobs_for_cli:kill_my_worker"
max_retries = 1
[jobs.echo]
entrypoint = "tests.cli.jobs_for_cli:echo"
[jobs.fail]
entrypoint = "tests.cli.jobs_for_cli:fail"
max_retries = 0
""")
    return path


def _json(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_kill_9_worker_recovers_on_redis(tmp_path: Path, redis_url: str) -> None:
    _manifest(tmp_path, redis_url)
    marker = tmp_path / "marker"
    task_id = _json(
        chronctl(
            "--json", "enqueue", "crash_once", "--args", json.dumps([str(marker)]), cwd=tmp_path
        )
    )["id"]  # type: ignore[index]
    proc = spawn("run", cwd=tmp_path, log=tmp_path / "run1.log")
    poll(lambda: marker.exists(), what="the task to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = spawn("run", cwd=tmp_path, log=tmp_path / "run2.log")
    try:

        def status(i: str) -> str:
            return _json(chronctl("--json", "tasks", "show", i, cwd=tmp_path))["status"]  # type: ignore[index]

        poll(lambda: status(task_id) == "succeeded", what="the task to run again")
        crasher = _json(chronctl("--json", "enqueue", "crash", cwd=tmp_path))["id"]  # type: ignore[index]
        # The crasher kills every worker that runs it: restart until it is dead-lettered.
        for n in range(6):
            if status(crasher) == "dead":
                break
            if proc.poll() is not None:
                proc = spawn("run", cwd=tmp_path, log=tmp_path / f"run{n + 3}.log")
            time.sleep(1.2)  # a lease must expire before the task comes back
        assert status(crasher) == "dead"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    shown = _json(chronctl("--json", "tasks", "show", task_id, cwd=tmp_path))
    assert shown["result"] == "recovered" and shown["attempt"] == 1  # type: ignore[index]


def test_operator_commands_on_redis(tmp_path: Path, redis_url: str) -> None:
    _manifest(tmp_path, redis_url)
    ok = _json(chronctl("--json", "enqueue", "echo", "--args", '["x"]', "--key", "k", cwd=tmp_path))
    again = _json(chronctl("--json", "enqueue", "echo", "--key", "k", cwd=tmp_path))
    assert again == {"id": ok["id"], "created": False}  # type: ignore[index]
    _json(chronctl("--json", "enqueue", "fail", cwd=tmp_path))
    assert _json(chronctl("--json", "queues", "list", cwd=tmp_path)) == [
        {"name": "default", "pending": 2, "running": 0, "paused": False, "max_pending": None}
    ]
    assert chronctl("run", "--once", cwd=tmp_path).returncode == 0
    [dead] = _json(chronctl("--json", "dlq", "list", cwd=tmp_path))  # type: ignore[misc]
    assert dead["job"] == "fail" and dead["error"] == "RuntimeError: boom"
    assert _json(chronctl("--json", "dlq", "retry", "--all", cwd=tmp_path)) == {"count": 1}
    assert len(_json(chronctl("--json", "history", cwd=tmp_path))) == 2  # type: ignore[arg-type]
    status = _json(chronctl("--json", "status", cwd=tmp_path))
    assert status["dead"] == 0 and status["backend"].startswith("redis://")  # type: ignore[index]
    # Migrate SQLite -> Redis, twice: the second copies nothing.
    sqlite = f"sqlite:///{tmp_path / 'old.db'}"
    _json(chronctl("--json", "--backend", sqlite, "enqueue", "echo", "--args", "[1]", cwd=tmp_path))
    first = _json(
        chronctl("--json", "--backend", sqlite, "migrate", "--to", redis_url, cwd=tmp_path)
    )
    second = _json(
        chronctl("--json", "--backend", sqlite, "migrate", "--to", redis_url, cwd=tmp_path)
    )
    assert first["tasks"] == 1 and second["tasks"] == 0  # type: ignore[index]


@pytest.mark.parametrize(
    "url",
    ["redis://admin:s3cret@127.0.0.1:1/0", "redis://admin:s3cret@127.0.0.1:1,127.0.0.1:2/0"],
    ids=["single", "cluster"],
)
def test_cli_says_when_redis_is_down(tmp_path: Path, url: str) -> None:
    _manifest(tmp_path, url)
    result = chronctl("tasks", "list", cwd=tmp_path)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "unreachable" in line and "s3cret" not in line


def test_cli_on_a_redis_cluster(tmp_path: Path) -> None:
    """The CLI and a worker on a three-node cluster: every key of a prefix shares one hash
    tag, so each Lua script runs on the node that owns that slot."""
    from .redis_cluster import cluster_url

    url, why = cluster_url()
    need_service("Redis Cluster", url is not None, why)
    prefix = f"chronctl-test-{uuid.uuid4().hex[:10]}"
    (tmp_path / "jobs.toml").write_text(f"""
[scheduler]
backend = "{url}?prefix={prefix}"
[jobs.flaky]
command = ["sh", "-c", "test -e seen || {{ touch seen; exit 3; }}"]
retry_delay = "0s"
max_retries = 1
""")
    enq = chronctl("enqueue", "flaky", cwd=tmp_path)
    assert enq.returncode == 0, enq.stderr
    task_id = enq.stdout.strip()
    run = chronctl("run", "--once", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    shown = json.loads(chronctl("--json", "tasks", "show", task_id, cwd=tmp_path).stdout)
    assert (shown["status"], shown["attempt"]) == ("succeeded", 1)  # failed once, retried
    runs = json.loads(chronctl("--json", "history", cwd=tmp_path).stdout)
    assert [r["status"] for r in runs] == ["succeeded", "failed"]


async def test_a_big_batch_keeps_its_record_only_while_unfinished(redis_url: str) -> None:
    """The record `bulk:<batch>` lists the ids stored so far, expires if abandoned, and
    goes once the batch is complete."""
    from chronctl.backends.redis import BULK_KEEP
    from chronctl.models import Task

    backend = RedisBackend(redis_url)
    async with backend:
        stored = 0
        stepped = asyncio.Event()

        def progress(count: int) -> None:
            nonlocal stored
            stored += count
            stepped.set()

        lines = [Task(job="j", args=[i]) for i in range(5000)]
        run = asyncio.ensure_future(backend.enqueue_many(lines, resume="r", progress=progress))
        await stepped.wait()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        record = backend.prefix + "bulk:r"
        ids = await backend._redis.lrange(record, 0, -1)
        assert 0 < stored < 5000 and len(ids) == stored
        assert set(ids) == {t.id for t in await backend.list_tasks(limit=None)}
        assert 0 < await backend._redis.ttl(record) <= BULK_KEEP
        out = await backend.enqueue_many([Task(job="j", args=[i]) for i in range(5000)], resume="r")
        assert [task_id for task_id, _ in out[:stored]] == ids  # the earlier run's tasks
        assert not await backend._redis.exists(record)


async def test_a_step_past_a_vanished_record_stores_nothing(redis_url: str) -> None:
    """Another run of the same batch completed it (deleting the record) while this one
    was still sending: its later steps must not store the batch's tail a second time."""
    from chronctl.models import Task

    backend = RedisBackend(redis_url)
    async with backend:
        step = json.dumps([{"id": "t1", "job": "j", "queue": "default", "scheduled_at": "0"}])
        with pytest.raises(BackendError, match="record of this bulk enqueue is gone"):
            await backend._call("enqueue", step, "1", "o", "gone", "1000", "5000", "60")
        assert await backend.get_task("t1") is None
        assert await backend.get_task(Task(job="j").id) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"]
)
def test_an_interrupted_bulk_enqueue_run_again_stores_every_line_once(
    tmp_path: Path, redis_url: str, sig: signal.Signals
) -> None:
    """Issue 14: 50,000 lines killed halfway left an unknown part stored, said nothing, and
    a rerun stored everything again. Now Ctrl-C and SIGTERM say how many lines are
    stored, and the same command again stores only the rest, after a kill -9 too."""
    import redis as sync_redis

    from .cli.helpers import command, env

    lines = 50_000
    _manifest(tmp_path, redis_url)
    bulk = tmp_path / "bulk.jsonl"
    bulk.write_text("".join(json.dumps({"job": "echo", "args": [i]}) + "\n" for i in range(lines)))
    pending = RedisBackend(redis_url).prefix + "ready:default"  # the echo job's queue
    client = sync_redis.Redis.from_url(REDIS_URL.split("?")[0])
    try:
        proc = subprocess.Popen(
            [*command(), "enqueue", "--from", str(bulk)],
            cwd=tmp_path,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        poll(lambda: client.zcard(pending) > 0, timeout=60, what="the first steps to land")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        stored = client.zcard(pending)
    finally:
        client.close()
    assert 0 < stored < lines, (out, err)
    if sig != signal.SIGKILL:
        assert proc.returncode == 128 + sig and out == ""
        assert one_error_line(subprocess.CompletedProcess([], proc.returncode, out, err)) == (
            f"chronctl: interrupted: stored {stored} of {lines} lines; "
            "run the same command again to store the rest"
        )
    again = chronctl("enqueue", "--from", str(bulk), cwd=tmp_path, timeout=180)
    assert again.returncode == 0, again.stderr
    assert again.stdout == (
        f"enqueued {lines - stored} task(s), {stored} already there "
        "(stored by an earlier run, or by key)\n"
    )

    async def every_args() -> list[int]:
        async with RedisBackend(redis_url) as backend:
            return sorted(t.args[0] for t in await backend.list_tasks(limit=None))

    assert asyncio.run(every_args()) == list(range(lines))  # each line exactly once


async def test_a_pending_task_sent_again_is_stored_and_counted_once(
    redis_url: str,
) -> None:
    """The per-job count (max_instances) is a counter, not a set: sending the same
    pending task again must neither store nor count it twice."""
    task = Task(job="j")
    async with RedisBackend(redis_url) as backend:
        assert await backend.enqueue(task) == (task.id, True)
        assert await backend.enqueue(task) == (task.id, False)
        assert await backend.count_active("j") == 1
        assert len(await backend.dequeue(5)) == 1
        assert await backend.dequeue(5) == []


async def test_pending_records_are_short_and_their_buckets_listpacks(redis_url: str) -> None:
    """Issue 15: what keeps a pending task near 220 bytes on the server. A plain task's
    record holds its job, scheduled time and enqueue sequence only, and its bucket stays
    a listpack; it has no other key than its queue entry (no per-status, per-job sets)."""
    import redis as sync_redis

    tasks = [Task(job="task") for _ in range(300)]
    async with RedisBackend(redis_url) as backend:
        await backend.enqueue_many(tasks)
        p = backend.prefix
    db = sync_redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        raw = db.hget(f"{p}tp:{tasks[0].id[-3:]}", tasks[0].id)
        assert raw is not None and sorted(json.loads(raw)) == ["a", "i", "j"]
        buckets = {f"{p}tp:{t.id[-3:]}" for t in tasks}
        assert {db.object("encoding", b) for b in buckets} == {"listpack"}
        pattern = p.replace("{", "\\{").replace("}", "\\}") + "*"
        assert {k[len(p) :].split(":")[0] for k in db.scan_iter(match=pattern)} == {
            "tp",
            "ready",
            "active",
            "queues",
            "seq",
            "layout",
        }
    finally:
        db.close()


async def test_any_task_id_finds_its_bucket(redis_url: str) -> None:
    """A bucket is named by the id's last three characters, in hex when they are not
    plain ASCII (a multi-byte character cut in half would be no valid key name)."""
    ids = ["tâché", "x", "a b", "日本語"]
    async with RedisBackend(redis_url) as backend:
        await backend.enqueue_many([Task(job="j", id=i) for i in ids])
        assert [t and t.id for t in [await backend.get_task(i) for i in ids]] == ids
        assert sorted(t.id for t in await backend.dequeue(10)) == sorted(ids)
        assert await backend.drop_everything() > 0


@pytest.fixture(params=["single", "cluster"])
def any_redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh prefix on the shared Redis or on the test Cluster, dropped afterwards."""
    if request.param == "single":
        ok, why = redis_reachable()
        need_service("Redis", ok, why)
        url = unique_url()
    else:
        from .redis_cluster import cluster_url

        seeds, why = cluster_url()
        need_service("Redis Cluster", seeds is not None, why)
        url = f"{seeds}?prefix=chronctl-test-{uuid.uuid4().hex[:10]}"
    yield url

    async def drop() -> None:
        async with RedisBackend(url) as backend:
            await backend.drop_everything()

    asyncio.run(drop())


async def test_a_schedule_change_reaches_another_process_and_wakes_no_worker(
    any_redis_url: str,
) -> None:
    """Two processes on one prefix: a put or delete on one sets `schedules_changed` on
    the other through `wake`, and that message leaves the other's workers asleep (it
    brings them no work); an enqueue after it still wakes them."""
    from chronctl.schedules import Schedule

    writer, reader = RedisBackend(any_redis_url), RedisBackend(any_redis_url)
    async with writer, reader:
        await wait(reader._subscribed, 5)  # else the message could go out before it listens
        reader.schedules_changed.clear()
        reader._wakeup.clear()
        acme = Schedule(name="acme", job="report", cron="0 9 * * *", created=1.0, updated=1.0)
        assert await writer.put_schedule(acme, create=True)
        await wait(reader.schedules_changed, 2)
        assert not reader._wakeup.is_set()  # messages arrive in order: none woke it
        assert await reader.get_schedule("acme") == acme
        assert await reader.schedules_version() == await writer.schedules_version() == 1

        reader.schedules_changed.clear()
        assert await writer.delete_schedule("acme")
        await wait(reader.schedules_changed, 2)
        assert await reader.list_schedules() == []
        assert await reader.schedules_version() == 2

        await writer.enqueue(Task(job="report"))
        await wait(reader._wakeup, 2)
