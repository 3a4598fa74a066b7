"""The SQLite backend's tables and indexes, its schema version, and the SQL fragments
the backend's statements share (kept beside the indexes they are written to use)."""

from __future__ import annotations

from ...models import TaskStatus

# A table added with CREATE IF NOT EXISTS (schedules) needs no new version: an older
# chronctl opening the file ignores it, a newer one creates it on open.
# 2: one partial index for claims (tasks_next) instead of tasks_claim + tasks_pending; no
# tasks_created; tasks_publish only where a broker uses the file (issue 15: 256 -> ~185 B
# per pending task). `_upgrade` brings an older file up to date when it is opened.
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    scheduled_at REAL NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_retries INTEGER NOT NULL DEFAULT 3,
    key TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    lease_until REAL,
    worker TEXT,
    deliveries INTEGER NOT NULL DEFAULT 0,
    fire_time REAL,
    args TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    result TEXT,
    error TEXT,
    traceback TEXT,
    output TEXT
);
CREATE INDEX IF NOT EXISTS tasks_next ON tasks(priority, queue, scheduled_at)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS tasks_job ON tasks(job, status);
CREATE INDEX IF NOT EXISTS tasks_done ON tasks(status) WHERE status NOT IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS tasks_lease ON tasks(lease_until) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS tasks_job_done ON tasks(job, status,
    COALESCE(finished_at, CASE created_at WHEN 0 THEN scheduled_at ELSE created_at END))
    WHERE status NOT IN ('pending', 'running');
CREATE UNIQUE INDEX IF NOT EXISTS tasks_key ON tasks(key)
    WHERE key IS NOT NULL AND status IN ('pending', 'running');
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    job TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    args TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    scheduled_at REAL,
    started_at REAL,
    finished_at REAL NOT NULL,
    result TEXT,
    error TEXT,
    traceback TEXT,
    output TEXT
);
CREATE INDEX IF NOT EXISTS runs_job ON runs(job, id);
CREATE INDEX IF NOT EXISTS runs_finished ON runs(finished_at);
CREATE INDEX IF NOT EXISTS runs_job_finished ON runs(job, finished_at);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_fire REAL,
    paused INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY, paused INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schedules (name TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS processes (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    role TEXT NOT NULL,
    started REAL NOT NULL,
    last_beat REAL NOT NULL,
    queues TEXT
);
"""

_TASK_COLUMNS = (
    "id",
    "job",
    "queue",
    "priority",
    "scheduled_at",
    "status",
    "attempt",
    "max_retries",
    "key",
    "created_at",
    "started_at",
    "finished_at",
    "lease_until",
    "worker",
    "deliveries",
    "fire_time",
    "args",
    "kwargs",
    "result",
    "error",
    "traceback",
    "output",
)
_INSERT_TASK = (
    f"INSERT INTO tasks ({', '.join(_TASK_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _TASK_COLUMNS)})"
)
_RUN_COLUMNS = (
    "task_id",
    "job",
    "queue",
    "priority",
    "attempt",
    "status",
    "args",
    "kwargs",
    "scheduled_at",
    "started_at",
    "finished_at",
    "result",
    "error",
    "traceback",
    "output",
)
_INSERT_RUN = (
    f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' for _ in _RUN_COLUMNS)})"
)
_ACTIVE = "('pending', 'running')"
# Added to a query on finished statuses so that SQLite may use the partial index tasks_done
# (it cannot tell that `status = 'dead'` implies it).
_FINISHED = f"status NOT IN {_ACTIVE}"
# created_at 0: the task was created when it was first scheduled (most are: 8 bytes saved
# per task); the UPDATEs that move scheduled_at write the real value first.
_CREATED = "(CASE created_at WHEN 0 THEN scheduled_at ELSE created_at END)"
_KEEP_CREATED = f"created_at = {_CREATED}"
# When a finished task finished: the last column of tasks_job_done (per-job retention
# reads one job's oldest rows from it, written exactly so for the planner to match).
_DONE_AT = f"COALESCE(finished_at, {_CREATED})"
# The pending tasks in claim order: each query below is one seek on it (INDEXED BY: the
# planner may otherwise pick tasks_job and read every pending row).
_NEXT = "tasks INDEXED BY tasks_next WHERE status = 'pending'"
_TOP_PRIORITY = f"SELECT MAX(priority) FROM {_NEXT}"
_FIRST_QUEUE = f"SELECT MIN(queue) FROM {_NEXT} AND priority = ?"
# Indexes version 1 had that version 2 does without (tasks_publish comes back with a broker).
_V1_INDEXES = ("tasks_claim", "tasks_pending", "tasks_created", "tasks_publish", "tasks_due")
_OWNED = "id = ? AND status = 'running' AND worker IS ? AND deliveries = ?"


def _status_in(values: set[str]) -> str:
    """`status IN (...)` with the values as literals (TaskStatus values, nothing else), so
    that the planner can pick a partial index: tasks_next, tasks_lease or tasks_done."""
    literals = [repr(TaskStatus(v).value) for v in sorted(values)]
    # One value as `=`: SQLite matches a partial index's WHERE with it, not with IN (x).
    clause = f"status IN ({', '.join(literals)})"
    if len(literals) == 1:
        clause = f"status = {literals[0]}"
    return clause if values & {"pending", "running"} else f"{clause} AND {_FINISHED}"
