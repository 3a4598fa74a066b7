"""Backends and the URL table that picks one.

A URL's scheme picks the backend: the built-in ones below, then a scheme a
package registers, either in code (`register_backend`) or, for a backend
installed as its own distribution, under the `chronctl.backends` entry point
group (`spool = "mypkg.spool:SpoolBackend"`), as pytest and SQLAlchemy find
their plugins. A factory is called as `factory(url, base)`, `base` being the
manifest's directory for relative paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .base import QueueBackend, QueueInfo

if TYPE_CHECKING:
    from .memory import MemoryBackend
    from .postgres import PostgresBackend
    from .rabbitmq import RabbitMQBackend
    from .redis import RedisBackend
    from .sqlite import SQLiteBackend

__all__ = [
    "MemoryBackend",
    "PostgresBackend",
    "QueueBackend",
    "QueueInfo",
    "RabbitMQBackend",
    "RedisBackend",
    "SQLiteBackend",
    "from_url",
    "missing_extra",
    "plugin_scheme",
    "redact_url",
    "register_backend",
    "url_problem",
]

_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<cred>[^@/\s]+)@", re.I)


def redact_url(url: str) -> str:
    """`redis://user:pass@host/0` -> `redis://***@host/0`: credentials never reach output."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", url)


def url_problem(url: str) -> str | None:
    """What makes `url` unusable before any backend looks at it (None when nothing does).

    urllib raises ValueError for a malformed host or port, which would otherwise
    surface as an unexpected error deep inside a client library. Each host of a
    cluster or sentinel list (`h1:7000,h2:7001`) is checked on its own.
    """
    from urllib.parse import urlsplit

    try:
        netloc = urlsplit(url).netloc
        for host in netloc.rpartition("@")[2].split(","):
            urlsplit("//" + host).port  # noqa: B018 - parsing it is the check
    except ValueError as exc:
        return f"bad URL '{redact_url(url)}': {exc}"
    return None


def missing_extra(package: str, extra: str, scheme: str) -> UsageError:
    """The one line for a backend whose client library is not installed."""
    return UsageError(
        f"the {scheme} backend needs the {package} package: pip install 'chronctl[{extra}]'"
    )


def sqlite_path(url: str, base: Path | None = None) -> Path:
    """`sqlite:///rel.db` is relative (to `base`), `sqlite:////abs.db` absolute."""
    rest = url[len("sqlite://") :]
    if not rest.startswith("/") or rest == "/":
        raise UsageError(f"bad backend URL '{redact_url(url)}': expected sqlite:///path.db")
    path = Path(rest[1:])  # "/rel.db" -> rel.db, "//abs.db" -> /abs.db
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


def _rabbitmq(url: str, base: Path | None, options: dict[str, Any]) -> QueueBackend:
    """`amqp://user:pass@host:5672/vhost?queue_name=q&exchange_name=x`; its state store is
    `state=` (the manifest's `[scheduler] state`), by default `sqlite:///chronctl.db`."""
    from .rabbitmq import RabbitMQBackend, split_url

    state_url = options.pop("state", None) or "sqlite:///chronctl.db"
    if state_url.split("://", 1)[0].lower() in ("amqp", "amqps"):
        raise UsageError("the state store of a RabbitMQ backend cannot be amqp:// itself")
    broker_url, query = split_url(url)
    kwargs: dict[str, Any] = {
        k: v for k, v in query.items() if k in ("queue_name", "exchange_name")
    }
    if "durable" in query:
        kwargs["durable"] = query["durable"].lower() not in ("0", "false", "no")
    if "max_priority" in query:
        try:
            kwargs["max_priority"] = int(query["max_priority"])
        except ValueError:
            raise UsageError(f"bad max_priority in '{redact_url(url)}'") from None
    return RabbitMQBackend(broker_url, state=from_url(state_url, base=base), **kwargs, **options)


#: Builds a backend from its URL and the manifest's directory.
BackendFactory = Callable[[str, "Path | None"], QueueBackend]
_BUILT_IN = (
    "memory",
    "sqlite",
    "redis",
    "rediss",
    "redis+sentinel",
    "amqp",
    "amqps",
    "postgresql",
    "postgres",
)
_registered: dict[str, BackendFactory] = {}


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Make `scheme://...` URLs build a backend with `factory(url, base)`."""
    scheme = scheme.lower()
    if scheme in _BUILT_IN:
        raise UsageError(f"'{scheme}' is a built-in backend scheme")
    _registered[scheme] = factory


def _plugin(scheme: str) -> BackendFactory | None:
    """A registered scheme, else the installed distribution that declares it."""
    if scheme in _registered:
        return _registered[scheme]
    # Here, not at the top: importlib.metadata costs ~25 ms to import, and only a
    # scheme that is neither built in nor registered needs it.
    from importlib.metadata import entry_points

    for entry in entry_points(group="chronctl.backends", name=scheme):
        try:
            factory: BackendFactory = entry.load()
        except Exception as exc:  # a broken plugin is its package's bug: name it
            raise UsageError(
                f"backend plugin '{scheme}' ({entry.value}) failed to load: {exc}"
            ) from None
        return factory
    return None


def plugin_scheme(scheme: str) -> bool:
    """Whether `scheme://` names a backend a package provides (not a built-in one)."""
    return scheme.lower() not in _BUILT_IN and _plugin(scheme.lower()) is not None


def from_url(url: str, *, base: Path | None = None, **options: Any) -> QueueBackend:
    """`state=` names the state store of a backend that keeps task state elsewhere
    (amqp://); other backends ignore it."""
    problem = url_problem(url)
    if problem:
        raise UsageError(problem)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("amqp", "amqps"):
        options.pop("state", None)
    if scheme == "memory":
        from .memory import MemoryBackend

        return MemoryBackend()
    if scheme == "sqlite":
        from .sqlite import SQLiteBackend

        return SQLiteBackend(sqlite_path(url, base), **options)
    if scheme in ("redis", "rediss", "redis+sentinel"):
        from .redis import RedisBackend

        return RedisBackend(url, **options)
    if scheme in ("amqp", "amqps"):
        return _rabbitmq(url, base, options)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresBackend

        return PostgresBackend(url, **options)
    factory = _plugin(scheme) if scheme else None
    if factory is not None:
        return factory(url, base)
    raise UsageError(
        f"unknown backend URL '{redact_url(url)}': expected memory://, sqlite:///path.db, "
        "redis://host:6379/0, amqp://host:5672/vhost, postgresql://host:5432/db "
        "or a plugin's scheme"
    )


def __getattr__(name: str) -> Any:
    # Lazy: importing a backend pulls its client library; `chronctl --version` must stay fast.
    if name == "MemoryBackend":
        from .memory import MemoryBackend

        return MemoryBackend
    if name == "SQLiteBackend":
        from .sqlite import SQLiteBackend

        return SQLiteBackend
    if name == "RedisBackend":
        from .redis import RedisBackend

        return RedisBackend
    if name == "PostgresBackend":
        from .postgres import PostgresBackend

        return PostgresBackend
    if name == "RabbitMQBackend":
        from .rabbitmq import RabbitMQBackend

        return RabbitMQBackend
    raise AttributeError(name)
