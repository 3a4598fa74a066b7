"""The Redis backend: many `chronctl run` processes on many hosts share one Redis.

`backend.py` is the backend (and the data layout), `state.lua` the state machine its
scripts run, `lua.py` loads it, `records.py` encodes tasks and runs, `url.py` reads
the URL forms.
"""

from __future__ import annotations

from .backend import BULK_KEEP, BULK_STEP, RedisBackend
from .records import run_from_json, run_to_json, task_from_record, task_record
from .url import parse_redis_url

__all__ = [
    "BULK_KEEP",
    "BULK_STEP",
    "RedisBackend",
    "parse_redis_url",
    "run_from_json",
    "run_to_json",
    "task_from_record",
    "task_record",
]
