-- chronctl's SQLite layout, schema version 1 (before issue 15): tests/cli/test_sqlite_upgrade.py
-- opens a file made from it with the current code.
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
CREATE INDEX IF NOT EXISTS tasks_claim ON tasks(status, queue, priority DESC, scheduled_at);
CREATE INDEX IF NOT EXISTS tasks_pending ON tasks(priority, scheduled_at)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS tasks_job ON tasks(job, status);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at);
CREATE INDEX IF NOT EXISTS tasks_lease ON tasks(lease_until) WHERE status = 'running';
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
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_fire REAL,
    paused INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY, paused INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS processes (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    role TEXT NOT NULL,
    started REAL NOT NULL,
    last_beat REAL NOT NULL,
    queues TEXT
);
ALTER TABLE tasks ADD COLUMN published_at REAL;
ALTER TABLE tasks ADD COLUMN publish_confirmed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS tasks_publish ON tasks(scheduled_at)
    WHERE status = 'pending' AND publish_confirmed = 0;
INSERT INTO meta VALUES ('schema_version', '1');
