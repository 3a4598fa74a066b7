"""The PostgreSQL backend: many `chronctl run` processes on many hosts share one database.

`backend.py` is the backend, `schema.py` its tables (all in one schema of their own),
`rows.py` the row codecs, `listen.py` how idle workers hear of new work (LISTEN/NOTIFY),
`url.py` the URL form (`postgresql://user:pass@host:5432/db?schema=chronctl`).
"""

from __future__ import annotations

from .backend import SAFETY_RECHECK, PostgresBackend
from .schema import SCHEMA_VERSION
from .url import DEFAULT_SCHEMA, parse_postgres_url

__all__ = [
    "DEFAULT_SCHEMA",
    "SAFETY_RECHECK",
    "SCHEMA_VERSION",
    "PostgresBackend",
    "parse_postgres_url",
]
