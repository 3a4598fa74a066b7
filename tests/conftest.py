"""Shared fixtures: backends for the contract suite, and service checks.

A backend that needs a server skips with a reason when the server is
unreachable, unless CHRONCTL_REQUIRE_SERVICES=1 (CI), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from chronctl.backends.base import QueueBackend

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REQUIRE_SERVICES = os.environ.get("CHRONCTL_REQUIRE_SERVICES") == "1"


def _hypothesis_profiles() -> None:
    """CI replays the same examples every run, so it never fails (or passes) by luck;
    a local run keeps exploring new ones and remembers failures in .hypothesis/.
    A bug a local run finds becomes an @example, so CI checks it from then on."""
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "chronctl-ci",
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    if os.environ.get("CI") or REQUIRE_SERVICES:
        settings.load_profile("chronctl-ci")


_hypothesis_profiles()


def need_service(name: str, reachable: bool, why: str) -> None:
    """Skip (or, in CI, fail) a test whose server is down."""
    if reachable:
        return
    message = f"{name} unreachable: {why}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (CHRONCTL_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def _memory(tmp_path: Path) -> QueueBackend:
    from chronctl.backends.memory import MemoryBackend

    return MemoryBackend()


def _sqlite(tmp_path: Path) -> QueueBackend:
    from chronctl.backends.sqlite import SQLiteBackend

    return SQLiteBackend(tmp_path / "contract.db")


# The servers the tests use: set these on a shared machine (another port, database,
# password or vhost). Every test takes its server from here, never from a literal.
REDIS_URL = os.environ.get("CHRONCTL_TEST_REDIS", "redis://127.0.0.1:6379/15")
RABBITMQ_URL = os.environ.get("CHRONCTL_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")
POSTGRES_URL = os.environ.get("CHRONCTL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def with_query(url: str, **params: str) -> str:
    """`url` plus query parameters (a server URL from the environment may carry its own)."""
    return url + ("&" if "?" in url else "?") + "&".join(f"{k}={v}" for k, v in params.items())


def _reachable(url: str, default_port: int) -> tuple[bool, str]:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    where = (parts.hostname or "127.0.0.1", parts.port or default_port)
    try:
        socket.create_connection(where, 1).close()
    except OSError as exc:
        return False, f"{where[0]}:{where[1]}: {exc}"
    return True, ""


def redis_reachable() -> tuple[bool, str]:
    return _reachable(REDIS_URL, 6379)


def rabbitmq_reachable() -> bool:
    """Whether the broker of CHRONCTL_TEST_AMQP accepts connections (its host and port)."""
    return _reachable(RABBITMQ_URL, 5672)[0]


def need_rabbitmq() -> None:
    ok, why = _reachable(RABBITMQ_URL, 5672)
    need_service("RabbitMQ", ok, why)


def rabbitmq_vhost() -> str:
    """The virtual host of CHRONCTL_TEST_AMQP (`/` when the URL names none)."""
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(RABBITMQ_URL).path[1:]) or "/"


def _redis(tmp_path: Path) -> QueueBackend:
    import uuid

    ok, why = redis_reachable()
    need_service("Redis", ok, why)
    from chronctl.backends.redis import RedisBackend

    return RedisBackend(REDIS_URL, key_prefix=f"chronctl-test-{uuid.uuid4().hex[:10]}:")


def rabbitmq_backend(tmp_path: Path, **options: object) -> QueueBackend:
    """A RabbitMQBackend with a prefix unique to the test and a SQLite state store."""
    import uuid

    from chronctl.backends.rabbitmq import RabbitMQBackend
    from chronctl.backends.sqlite import SQLiteBackend

    need_rabbitmq()
    prefix = f"chronctl-test-{uuid.uuid4().hex[:10]}"
    state = options.pop("state", None) or SQLiteBackend(tmp_path / "rabbit-state.db")
    return RabbitMQBackend(
        RABBITMQ_URL, queue_name=prefix, exchange_name=prefix, state=state, **options
    )  # type: ignore[arg-type]


def postgres_reachable() -> tuple[bool, str]:
    return _reachable(POSTGRES_URL, 5432)


def postgres_schema() -> str:
    """A schema of this test's own (dropped by `forget_test_data`)."""
    import uuid

    return f"chronctl_test_{uuid.uuid4().hex[:12]}"


def _postgres(tmp_path: Path) -> QueueBackend:
    ok, why = postgres_reachable()
    need_service("PostgreSQL", ok, why)
    from chronctl.backends.postgres import PostgresBackend

    return PostgresBackend(POSTGRES_URL, schema=postgres_schema())


def _redis_cluster(tmp_path: Path) -> QueueBackend:
    """A local three-node Redis Cluster (started once per session on free ports)."""
    import uuid

    from tests.redis_cluster import cluster_url

    url, why = cluster_url()
    need_service("Redis Cluster", url is not None, why)
    from chronctl.backends.redis import RedisBackend

    return RedisBackend(str(url), key_prefix=f"chronctl-test-{uuid.uuid4().hex[:10]}:")


def _rabbitmq_on_redis(tmp_path: Path) -> QueueBackend:
    """RabbitMQ delivering, Redis holding the state: the several-hosts deployment."""
    state = _redis(tmp_path)
    return rabbitmq_backend(tmp_path, state=state)


def _rabbitmq_on_postgres(tmp_path: Path) -> QueueBackend:
    """RabbitMQ delivering, PostgreSQL holding the state."""
    return rabbitmq_backend(tmp_path, state=_postgres(tmp_path))


BACKEND_FACTORIES: dict[str, Callable[[Path], QueueBackend]] = {
    "memory": _memory,
    "postgres": _postgres,
    "rabbitmq": rabbitmq_backend,
    "rabbitmq-postgres": _rabbitmq_on_postgres,
    "rabbitmq-redis": _rabbitmq_on_redis,
    "sqlite": _sqlite,
    "redis": _redis,
    "redis-cluster": _redis_cluster,
}


@pytest.fixture(params=sorted(BACKEND_FACTORIES))
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


def _spool(tmp_path: Path) -> QueueBackend:
    from examples.spool_backend import SpoolBackend

    return SpoolBackend(tmp_path / "spool")


#: Backends that implement only the required core (tests/contract/test_core_contract.py).
CORE_ONLY_FACTORIES: dict[str, Callable[[Path], QueueBackend]] = {"spool": _spool}


@pytest.fixture
async def backend(backend_name: str, tmp_path: Path) -> AsyncIterator[QueueBackend]:
    async with open_backend(backend_name, tmp_path) as instance:
        yield instance


@contextlib.asynccontextmanager
async def open_backend(backend_name: str, tmp_path: Path) -> AsyncIterator[QueueBackend]:
    """A connected backend of this test's own, emptied of what the test left on a server."""
    factory = BACKEND_FACTORIES.get(backend_name) or CORE_ONLY_FACTORIES[backend_name]
    instance = factory(tmp_path)
    await instance.connect()
    try:
        yield instance
    finally:
        await forget_test_data(instance)
        await instance.disconnect()


async def forget_test_data(instance: QueueBackend) -> None:
    """Delete what a test left on a shared server: its RabbitMQ objects, its Redis keys."""
    from chronctl.backends.broker import BrokerBackend
    from chronctl.backends.postgres import PostgresBackend
    from chronctl.backends.rabbitmq import RabbitMQBackend
    from chronctl.backends.redis import RedisBackend

    if isinstance(instance, RabbitMQBackend):
        await instance.delete_layout()
    stores = [instance, instance.state] if isinstance(instance, BrokerBackend) else [instance]
    for store in stores:
        if isinstance(store, RedisBackend):
            await store.connect()
            await store.drop_everything()
        if isinstance(store, PostgresBackend):
            await store.connect()
            await store.drop_schema()


@pytest.fixture(autouse=True)
def _broker_lock(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Tests run on several processes (`-n 2`), and the broker restart tests stop the
    shared RabbitMQ node (`rabbitmqctl stop_app`): a RabbitMQ test elsewhere would meet
    it down. Every test that talks to RabbitMQ (`rabbitmq` or `amqp` in its file, name or
    backend parameter) holds a shared lock; a `broker_restart` test holds it exclusively.
    The lock file sits in the run's base temp dir, which every xdist worker shares."""
    import fcntl

    nodeid = request.node.nodeid.lower()
    if "rabbitmq" not in nodeid and "amqp" not in nodeid:
        yield
        return
    exclusive = request.node.get_closest_marker("broker_restart") is not None
    base = tmp_path_factory.getbasetemp()
    lock = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "rabbitmq.lock"
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
