"""The Redis backend's Lua state machine (`state.lua`), one EVAL per state change.

A task is one compact JSON record (`RECORD_KEYS`: one-letter keys, string values,
fields equal to their default left out), stored as a field of a bucket hash
(`tp:<b>` while pending, `tx:<b>` otherwise; `<b>` is the id's last three
characters, or their bytes in hex unless they are letters, digits or `-_.`):
4,096 small hashes that Redis keeps as listpacks, a few bytes per task, where a
key per task costs a hundred.
"""

from importlib import resources

#: Task field -> the record's key. `id` is the bucket field's name, not in the record.
RECORD_KEYS = {
    "job": "j",
    "queue": "q",
    "status": "s",
    "priority": "p",
    "scheduled_at": "a",
    "created_at": "c",
    "attempt": "n",
    "max_retries": "m",
    "deliveries": "d",
    "key": "k",
    "worker": "w",
    "started_at": "b",
    "finished_at": "f",
    "lease_until": "l",
    "fire_time": "t",
    "args": "A",
    "kwargs": "K",
    "result": "r",
    "error": "e",
    "traceback": "x",
    "output": "o",
}
#: Values a record leaves out (created_at is left out when it equals scheduled_at).
#: Besides, `i` holds the enqueue sequence and `u`/`v` the broker's publish stamp/ok.
DEFAULTS = {
    "q": "default",
    "s": "pending",
    "p": "5",
    "n": "0",
    "m": "3",
    "d": "0",
    "A": "[]",
    "K": "{}",
}
#: The storage layout this code reads and writes (`<prefix>layout`); 1 was a hash per task,
#: 2 had no per-job index of finished tasks (`done:<status>:<job>`, `donejobs`).
LAYOUT = "3"

#: The script, from `state.lua` (a file of its own, so luacheck reads it), with the
#: record's keys and defaults filled in from the tables above: one source for both sides.
SCRIPT = (
    resources.files(__package__)
    .joinpath("state.lua")
    .read_text(encoding="utf-8")
    .replace("__DEFAULTS__", ", ".join(f"{k} = '{v}'" for k, v in DEFAULTS.items()))
    .replace("__LONG__", ", ".join(f"{name} = '{key}'" for name, key in RECORD_KEYS.items()))
)
