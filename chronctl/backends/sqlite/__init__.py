"""The SQLite backend: the embedded default, shared by processes on one host.

`backend.py` is the backend, `schema.py` its tables and shared SQL, `rows.py` the
row codecs, `wake.py` how an idle worker hears of another process's commit.
"""

from __future__ import annotations

from .backend import SQLiteBackend, create_private_file
from .schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "SQLiteBackend", "create_private_file"]
