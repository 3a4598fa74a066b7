"""The URL forms of the PostgreSQL backend, and the schema name it may use.

`postgresql://user:pass@host:5432/db?schema=chronctl&min_size=1&max_size=10`: the
query parameters chronctl reads are taken out before the rest goes to asyncpg, which
would otherwise send them to the server as settings (and fail on `schema`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...errors import UsageError

DEFAULT_SCHEMA = "chronctl"
SCHEMES = ("postgresql", "postgres")
# A plain identifier: no quoting surprises in `DROP SCHEMA`, and it fits a channel name.
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_OURS = ("schema", "min_size", "max_size")


def check_schema(name: str) -> str:
    """A schema name chronctl may create: letters, digits and `_`, at most 63 bytes."""
    if not _SCHEMA_NAME.fullmatch(name):
        raise UsageError(
            f"bad PostgreSQL schema name {name!r}: use letters, digits and '_' "
            "(not first), at most 63 characters"
        )
    return name


def parse_postgres_url(url: str) -> tuple[str, dict[str, Any]]:
    """(the DSN for asyncpg, chronctl's options: schema, min_size, max_size)."""
    from .. import redact_url

    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise UsageError(f"bad backend URL '{redact_url(url)}': expected postgresql://...")
    kept: list[tuple[str, str]] = []
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _OURS:
            kept.append((name, value))
        elif name == "schema":
            options["schema"] = check_schema(value)
        else:
            try:
                options[name] = int(value)
            except ValueError:
                raise UsageError(f"bad {name} in '{redact_url(url)}': {value!r}") from None
            if options[name] < (0 if name == "min_size" else 1):
                raise UsageError(f"bad {name} in '{redact_url(url)}': {value!r}")
    dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), parts.fragment))
    return dsn, options
