"""The TOML manifest (SPEC §2) turned into a SchedulerConfig and JobSpecs.

Everything a manifest can get wrong is caught here, before a scheduler
starts, and reported as ONE ManifestError naming the file, the line, the job
and the key, with the closest valid key for a typo: a user fixes one clear
line at a time instead of reading a traceback.

Decisions (also the user-visible rules):

- Tables: `[scheduler]`, `[defaults]` and `[jobs.NAME]`; any other top-level
  table or key is an error. Job names match `[A-Za-z0-9_.-]+`; job and queue
  names both pass `models.check_name` (at most 200 bytes; queue names may use
  any printable character but spaces and commas).
- Relative paths are relative to the manifest's directory, never to the
  current directory, so `chronctl run` behaves the same from anywhere:
  `backend`/`state` as `sqlite:///rel.db` become `sqlite:////abs/dir/rel.db`
  (other URLs are untouched), and `pythonpath`, `pidfile`, `log_file` and a
  job's `cwd` become absolute. Without a file (`parse_manifest(text)`),
  the current directory stands in for the manifest's.
- `[defaults]` holds every per-job setting that can sensibly be shared:
  queue, priority, max_retries, retry_backoff, retry_delay, retry_max_delay,
  timeout, max_instances, jitter, executor, misfire_grace_time, coalesce,
  timezone, rate_limit, on_failure, concurrency_policy, catchup, user and
  shell. A job's own key wins. A job's timezone falls back to
  `[defaults].timezone`, then `[scheduler].timezone`, then UTC (cron would
  use the host's zone; a manifest says its zone so it means the same on every
  host, and `import-crontab` writes the host's zone for that reason).
- `on_failure` from `[defaults]` skips the job it names (an alert is not its
  own alert); `on_failure = ""` opts a job out.
- `keep_history`/`keep_dead` in `[jobs.NAME]` override `[scheduler]`'s for that
  job ("forever" keeps all). `[defaults]` refuses them: `[scheduler]` already is
  the default, and it also covers rows of jobs no longer in the manifest.
- `timeout = 0` means no limit (JobSpec.timeout is None); the built-in
  default is 10 minutes. Durations go through parse_duration, so NaN and
  infinity are refused.
- `command` is a list of strings, exec'd without a shell, or one string: a
  shell line run with `/bin/sh -c` (or the job's `shell`), as crontab does,
  so `>`, `|` and `&&` mean what they mean in a crontab. Task args reach a
  shell line only as `$1`, `$2`, ... (see JobSpec.argv). Whether the line
  parses (`sh -n`) is checked only by `check_commands`, which `validate`
  calls. `executor = "process"` is refused for a command (it already runs in
  its own process).
- `rate_limit` is "COUNT/PERIOD": "100/s", "10/m", "5/h", "1/d" or a
  duration period like "10/30s"; it becomes `(count, per_seconds)`.
- `at` takes an ISO 8601 string or a native TOML datetime; one without an
  offset is in the job's timezone. A bare TOML date means its midnight, as
  the string "2026-12-24" does.
- `args` and `kwargs` must hold JSON values only (no TOML dates, NaN or
  infinity): task payloads are JSON, never pickle.
- `entrypoint` syntax ("pkg.mod:func") is checked here; whether it imports
  is checked only by `check_entrypoints`, which `chronctl validate` calls,
  so loading a manifest never runs user code.
- TOML does not say where a value is; lines for value errors are found by
  scanning the text for the job's header and the first `key =` below it
  (best effort: a key written as a dotted key elsewhere gets the header line).
"""

from __future__ import annotations

import difflib
import math
import pwd
import re
import shutil
import subprocess
import tomllib
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, cast

from .backends import QueueBackend, from_url, plugin_scheme, url_problem
from .backpressure import QueueLimits
from .durations import parse_duration, shorten
from .errors import ManifestError, UsageError
from .jobs import DEFAULT_SHELL, Backoff, Executor, JobSpec, RetryPolicy
from .models import check_name, dumps
from .triggers import CronTrigger, DateTrigger, IntervalTrigger, Trigger, get_timezone, parse_at

__all__ = [
    "Manifest",
    "SchedulerConfig",
    "check_commands",
    "check_entrypoints",
    "load_manifest",
    "parse_manifest",
    "resolve_backend",
]


@dataclass
class SchedulerConfig:
    """`[scheduler]`, with paths already made absolute relative to the manifest."""

    backend: str = "sqlite:///chronctl.db"
    state: str | None = None
    timezone: str = "UTC"
    workers: int = 8
    misfire_grace_time: float = 60.0
    coalesce: bool = True
    shutdown_timeout: float = 30.0
    lease: float = 30.0
    pythonpath: list[str] = field(default_factory=lambda: ["."])
    pidfile: str = "chronctl.pid"
    log_file: str = "chronctl.log"
    queues: list[str] | None = None
    prefetch: int | None = None  # None: twice `workers`
    # Backpressure and retention (see chronctl/backpressure.py, chronctl/retention.py);
    # None is unlimited / "forever".
    max_pending: int | None = None
    keep_history: float | None = 30 * 86400.0
    keep_dead: float | None = 180 * 86400.0
    max_dead: int | None = 10_000


@dataclass
class Manifest:
    path: Path | None
    config: SchedulerConfig
    jobs: dict[str, JobSpec]
    # Kept so check_entrypoints can name the file as the user wrote it and
    # still point at the `entrypoint =` line.
    source: str = field(default="", repr=False, compare=False)
    display_path: str | None = field(default=None, repr=False, compare=False)
    #: `[queues.NAME] max_pending`: per queue, over `[scheduler] max_pending`.
    queue_max_pending: dict[str, int] = field(default_factory=dict)

    @property
    def limits(self) -> QueueLimits:
        """Every queue's `max_pending`, as enqueues and fires check it."""
        return QueueLimits(self.config.max_pending, dict(self.queue_max_pending))


# -- keys -------------------------------------------------------------------

TOP_LEVEL = ("scheduler", "defaults", "jobs", "queues")
SCHEDULER_KEYS = (
    "backend",
    "state",
    "timezone",
    "workers",
    "misfire_grace_time",
    "coalesce",
    "shutdown_timeout",
    "lease",
    "pythonpath",
    "pidfile",
    "log_file",
    "queues",
    "prefetch",
    "max_pending",
    "keep_history",
    "keep_dead",
    "max_dead",
)
QUEUE_KEYS = ("max_pending",)
FOREVER = "forever"
DEFAULT_KEYS = (
    "queue",
    "priority",
    "max_retries",
    "retry_backoff",
    "retry_delay",
    "retry_max_delay",
    "timeout",
    "max_instances",
    "jitter",
    "executor",
    "misfire_grace_time",
    "coalesce",
    "timezone",
    "rate_limit",
    "on_failure",
    "concurrency_policy",
    "catchup",
    "user",
    "shell",
)
TRIGGER_KEYS = ("cron", "every", "at")
#: A job's own retention (chronctl/retention.py); the default is [scheduler]'s, not [defaults]'.
JOB_KEEP_KEYS = ("keep_history", "keep_dead")
JOB_KEYS = (
    "entrypoint",
    "command",
    "env",
    "cwd",
    *TRIGGER_KEYS,
    "args",
    "kwargs",
    *DEFAULT_KEYS,
    *JOB_KEEP_KEYS,
)

JOB_NAME = re.compile(r"[A-Za-z0-9_.-]+")
ENTRYPOINT = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
BACKOFFS = ("exponential", "fixed")
EXECUTORS = ("auto", "async", "thread", "process")
CONCURRENCY_POLICIES = ("forbid", "allow", "replace")
CATCHUPS = ("skip", "once", "all")
BACKEND_SCHEMES = (
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
STATE_SCHEMES = ("memory", "sqlite", "redis", "rediss", "redis+sentinel", "postgresql", "postgres")
_RATE_UNITS = {"sec": "s", "second": "s", "min": "m", "minute": "m", "hour": "h", "day": "d"}

DEFAULT_TIMEOUT = 600.0
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Task arguments deeper than this are a mistake, and every process that decodes them must
# stay clear of Python's recursion limit.
MAX_NESTING = 100


class _Invalid(Exception):
    """A value error before the caller knows where to put it (job, key, line)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def closest(word: str, choices: Iterable[str]) -> str | None:
    """Typo suggestion; cutoff 0.6 keeps 'retries' -> 'max_retries' but not noise."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


# -- finding lines ------------------------------------------------------------


class _Lines:
    """Best-effort map from table paths and keys to 1-based line numbers."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        # (line number, table path) for every `[table]` header, in order.
        self.headers: list[tuple[int, tuple[str, ...]]] = []
        for number, line in enumerate(self.lines, start=1):
            stripped = line.strip()
            if not stripped.startswith("[") or stripped.startswith("[["):
                continue
            try:
                parsed = tomllib.loads(stripped)
            except (ValueError, RecursionError):  # TOMLDecodeError is a ValueError
                continue
            path: list[str] = []
            node: Any = parsed
            while isinstance(node, dict) and len(node) == 1:
                name, node = next(iter(node.items()))
                path.append(name)
            self.headers.append((number, tuple(path)))

    def section(self, path: tuple[str, ...]) -> tuple[int, int] | None:
        """(header line, last line) of the table `path`; the top level is (0, ...)."""
        if not path:
            end = self.headers[0][0] - 1 if self.headers else len(self.lines)
            return 0, end
        for index, (number, header) in enumerate(self.headers):
            if header == path:
                end = (
                    self.headers[index + 1][0] - 1
                    if index + 1 < len(self.headers)
                    else len(self.lines)
                )
                return number, end
        return None

    def table(self, path: tuple[str, ...]) -> int | None:
        """Line of `[a.b]`, else of a header below it, else of `b = {...}` in `[a]`."""
        found = self.section(path)
        if found is not None and found[0]:
            return found[0]
        for number, header in self.headers:
            if header[: len(path)] == path:
                return number
        if path:
            return self._key_in(path[:-1], path[-1])
        return None

    def key(self, path: tuple[str, ...], key: str) -> int | None:
        """Line of `key =` inside table `path`, else the table's line."""
        return self._key_in(path, key) or self.table(path)

    def _key_in(self, path: tuple[str, ...], key: str) -> int | None:
        found = self.section(path)
        if found is None:
            return None
        start, end = found
        name = re.escape(key)
        pattern = re.compile(rf"""^\s*(?:{name}|"{name}"|'{name}')\s*[=.]""")
        for number in range(start + 1, end + 1):
            if pattern.match(self.lines[number - 1]):
                return number
        return None


def _deepest_line(text: str) -> int | None:
    """The line where brackets nest deepest, skipping strings and comments (best effort:
    only called for a document tomllib could not parse)."""
    depth = deepest = 0
    line = found = 1
    quote = ""
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\n":
            line += 1
        elif quote:
            if char == "\\" and quote[0] == '"':
                i += 1
            elif text.startswith(quote, i):
                i += len(quote) - 1
                quote = ""
        elif char == "#":
            end = text.find("\n", i)
            i = (end if end >= 0 else len(text)) - 1  # the newline is counted next
        elif char in "\"'":
            quote = char * 3 if text.startswith(char * 3, i) else char
            i += len(quote) - 1
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest, found = depth, line
        elif char in "]}":
            depth -= 1
        i += 1
    return found if deepest else None


# -- value checks -------------------------------------------------------------


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime):
        return "a datetime"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, time):
        return "a time"
    return type(value).__name__


def _string(value: Any, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_type_name(value)}")
    if not empty and not value.strip():
        raise _Invalid("must not be empty")
    return value


def _integer(value: Any, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"expected an integer, got {_type_name(value)} {value!r}")
    if not INT64_MIN <= value <= INT64_MAX:  # tomllib reads any size; TOML and the stores don't
        raise _Invalid(f"{shorten(value)} is out of range: TOML integers are 64-bit")
    if low is not None and high is not None and not low <= value <= high:
        raise _Invalid(f"must be between {low} and {high}, got {value}")
    if low is not None and value < low:
        raise _Invalid(f"must be at least {low}, got {value}")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_type_name(value)} {value!r}")
    return value


def _duration(value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Invalid(
            f"expected a duration like '30s' or a number of seconds, got {_type_name(value)}"
        )
    try:
        seconds = parse_duration(value)
    except UsageError as exc:
        raise _Invalid(str(exc)) from exc
    if not math.isfinite(seconds):  # belt and braces: TOML has inf and nan literals
        raise _Invalid(f"bad duration {value!r}: must be finite")
    if positive and seconds <= 0:
        raise _Invalid(f"must be a positive duration, got {value!r}")
    return seconds


def _forever_or(value: Any, convert: Callable[[Any], Any]) -> Any:
    """A retention setting: "forever" keeps everything (None), anything else converts."""
    return None if value == FOREVER else convert(value)


def _choice(value: Any, choices: tuple[str, ...]) -> str:
    text = _string(value)
    if text not in choices:
        options = ", ".join(f"'{c}'" for c in choices)
        raise _Invalid(f"expected one of {options}, got {text!r}", hint=closest(text, choices))
    return text


def _timezone(value: Any) -> str:
    name = _string(value)
    try:
        get_timezone(name)
    except UsageError as exc:
        raise _Invalid(str(exc), hint=closest(name, zoneinfo.available_timezones())) from exc
    return name


def _string_list(value: Any, *, comma_string: bool = False) -> list[str]:
    if isinstance(value, str) and comma_string:
        value = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _Invalid(f"expected an array of strings, got {_type_name(value)}")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise _Invalid(f"expected an array of non-empty strings, found {item!r}")
    return list(value)


def _rate_limit(value: Any) -> tuple[int, float]:
    text = _string(value).strip().lower().replace(" ", "")
    count_text, sep, per_text = text.partition("/")
    if not sep or not count_text.isdigit() or not per_text:
        raise _Invalid(
            f"bad rate limit {value!r}: expected e.g. '100/s', '10/m', '5/h' or '10/30s'"
        )
    count = int(count_text)
    if count < 1:
        raise _Invalid(f"bad rate limit {value!r}: the count must be at least 1")
    per_text = _RATE_UNITS.get(per_text, per_text)
    if per_text.isalpha():
        per_text = "1" + per_text
    try:
        per = parse_duration(per_text)
    except UsageError as exc:
        raise _Invalid(
            f"bad rate limit {value!r}: expected e.g. '100/s', '10/m', '5/h' or '10/30s'"
        ) from exc
    if not per > 0 or not math.isfinite(per):
        raise _Invalid(f"bad rate limit {value!r}: the period must be positive")
    return count, per


def nesting_depth(value: Any) -> int:
    """How deep arrays and tables nest, counted without recursion (the input may be deep)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def _json_value(value: Any, what: str) -> Any:
    if nesting_depth(value) > MAX_NESTING:
        raise _Invalid(f"{what} nests deeper than {MAX_NESTING} levels")
    try:
        dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _Invalid(
            f"{what} must hold JSON values only (strings, numbers, booleans, "
            f"arrays, tables; no dates, nan or inf): {exc}"
        ) from exc
    return value


def _absolute(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path))


def _store_url(value: Any, base: Path, schemes: tuple[str, ...]) -> str:
    """Validate a backend/state URL and pin a relative SQLite file to the manifest dir."""
    url = _string(value).strip()
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise _Invalid(f"bad URL {url!r}: expected e.g. 'sqlite:///chronctl.db'")
    if scheme not in schemes and not (schemes is BACKEND_SCHEMES and plugin_scheme(scheme)):
        options = ", ".join(f"{s}://" for s in schemes)
        raise _Invalid(
            f"unknown URL scheme '{scheme}://': expected one of {options}",
            hint=(h + "://") if (h := closest(scheme, schemes)) else None,
        )
    if scheme != "sqlite":
        problem = url_problem(url)
        if problem:
            raise _Invalid(problem)
        return url
    if not rest.startswith("/") or rest == "/":
        raise _Invalid(f"bad URL {url!r}: expected sqlite:///relative.db or sqlite:////absolute.db")
    file = rest[1:]
    if file.startswith("/") or file.startswith(":memory:"):
        return url
    return "sqlite:///" + str(base / file)


# -- parsing ------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, path: str | Path | None) -> None:
        self.text = text
        self.where = str(path) if path is not None else None
        self.base = Path(path).expanduser().resolve().parent if path is not None else Path.cwd()
        self.lines = _Lines(text)

    # errors
    def fail(
        self,
        message: str,
        *,
        table: tuple[str, ...],
        key: str | None = None,
        job: str | None = None,
        hint: str | None = None,
    ) -> NoReturn:
        line = self.lines.key(table, key) if key else self.lines.table(table)
        raise ManifestError(message, path=self.where, line=line, job=job, key=key, hint=hint)

    def check(
        self, table: tuple[str, ...], key: str, job: str | None, convert: Callable[[], Any]
    ) -> Any:
        """Run one conversion, turning any complaint into a ManifestError at `key`."""
        try:
            return convert()
        except _Invalid as exc:
            self.fail(exc.message, table=table, key=key, job=job, hint=exc.hint)
        except UsageError as exc:  # TriggerError and parse_duration's
            self.fail(str(exc), table=table, key=key, job=job)

    def unknown_keys(
        self,
        data: dict[str, Any],
        valid: tuple[str, ...],
        table: tuple[str, ...],
        job: str | None,
        where: str,
    ) -> None:
        for key in data:
            if key in valid:
                continue
            message = "unknown key" if job else f"unknown key in {where}"
            if where == "[defaults]" and key in JOB_KEEP_KEYS:
                message = (
                    "the default is [scheduler]'s: set it there (it covers every job, "
                    "those no longer in the manifest too) or in [jobs.NAME]"
                )
            elif where == "[defaults]" and key in JOB_KEYS:
                message = "cannot be a default: set it in each [jobs.NAME]"
            self.fail(message, table=table, key=key, job=job, hint=closest(key, valid))

    def table_of(self, data: dict[str, Any], name: str) -> dict[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            self.fail(f"'{name}' must be a table: write [{name}]", table=(), key=name)
        return value

    # the document
    def parse(self) -> Manifest:
        try:
            data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            raise self.syntax_error(exc) from None
        except RecursionError:
            raise ManifestError(
                f"invalid TOML: arrays or tables nest deeper than {MAX_NESTING} levels",
                path=self.where,
                line=_deepest_line(self.text),
            ) from None
        except ValueError as exc:  # an integer past Python's 4,300-digit limit
            long_number = re.search(r"\d[\d_]{4000,}", self.text)
            raise ManifestError(
                f"invalid TOML: {str(exc).split(';')[0]}",
                path=self.where,
                line=self.text.count("\n", 0, long_number.start()) + 1 if long_number else None,
            ) from None
        for key, value in data.items():
            if key in TOP_LEVEL:
                continue
            hint = closest(key, TOP_LEVEL)
            if isinstance(value, dict):
                self.fail(
                    f"unknown table [{key}]: expected [scheduler], [defaults], [jobs.NAME] "
                    "or [queues.NAME]",
                    table=(key,),
                    hint=hint,
                )
            message = "unknown top-level key"
            if key in SCHEDULER_KEYS:
                message += ": put it under [scheduler]"
            elif key in JOB_KEYS:
                message += ": put it under [defaults] or [jobs.NAME]"
            self.fail(message, table=(), key=key, hint=hint)
        config = self.scheduler(self.table_of(data, "scheduler"))
        defaults = self.defaults(self.table_of(data, "defaults"), config)
        jobs: dict[str, JobSpec] = {}
        for name, table in self.table_of(data, "jobs").items():
            jobs[name] = self.job(name, table, defaults, config)
        for spec in jobs.values():
            target = spec.on_failure
            if target is not None and target not in jobs:
                in_job = "on_failure" in self.table_of(data, "jobs")[spec.name]
                self.fail(
                    f"on_failure names unknown job '{target}'",
                    table=("jobs", spec.name) if in_job else ("defaults",),
                    key="on_failure",
                    job=spec.name,
                    hint=closest(target, jobs),
                )
            if target == spec.name:
                self.fail(
                    "on_failure cannot name the job itself",
                    table=("jobs", spec.name),
                    key="on_failure",
                    job=spec.name,
                )
        queue_max_pending = self.queue_tables(self.table_of(data, "queues"))
        manifest_path = Path(self.where).expanduser().resolve() if self.where is not None else None
        return Manifest(
            path=manifest_path,
            config=config,
            jobs=jobs,
            source=self.text,
            display_path=self.where,
            queue_max_pending=queue_max_pending,
        )

    def queue_tables(self, data: dict[str, Any]) -> dict[str, int]:
        """`[queues.NAME]` tables: each queue's `max_pending`."""
        out: dict[str, int] = {}
        for name, table in data.items():
            where = ("queues", name)
            self.check(where, "max_pending", None, partial(_queue, name))
            if not isinstance(table, dict):
                self.fail(f"'queues.{name}' must be a table: write [queues.{name}]", table=())
            self.unknown_keys(table, QUEUE_KEYS, where, None, f"[queues.{name}]")
            if "max_pending" in table:
                out[name] = self.check(
                    where, "max_pending", None, partial(_integer, table["max_pending"], 0)
                )
        return out

    def syntax_error(self, exc: tomllib.TOMLDecodeError) -> ManifestError:
        text = str(exc)
        match = re.search(r"\s*\(at line (\d+), column \d+\)\s*$", text)
        line: int | None = None
        if match:
            line = int(match.group(1))
            text = text[: match.start()]
        elif text.endswith("(at end of document)"):
            text = text[: -len("(at end of document)")].rstrip()
            line = max(1, len(self.lines.lines))
        return ManifestError(f"invalid TOML: {text}", path=self.where, line=line)

    def scheduler(self, data: dict[str, Any]) -> SchedulerConfig:
        table = ("scheduler",)
        self.unknown_keys(data, SCHEDULER_KEYS, table, None, "[scheduler]")
        cfg = SchedulerConfig()
        converters: dict[str, Callable[[Any], Any]] = {
            "backend": lambda v: _store_url(v, self.base, BACKEND_SCHEMES),
            "state": lambda v: _store_url(v, self.base, STATE_SCHEMES),
            "timezone": _timezone,
            "workers": lambda v: _integer(v, 1),
            "misfire_grace_time": _duration,
            "coalesce": _boolean,
            "shutdown_timeout": _duration,
            "lease": lambda v: _duration(v, positive=True),
            "pythonpath": _string_list,
            "pidfile": _string,
            "log_file": _string,
            "queues": lambda v: [_queue(q) for q in _string_list(v, comma_string=True)],
            "prefetch": lambda v: _integer(v, 0),
            "max_pending": lambda v: _integer(v, 0),
            "keep_history": lambda v: _forever_or(v, lambda d: _duration(d, positive=True)),
            "keep_dead": lambda v: _forever_or(v, lambda d: _duration(d, positive=True)),
            "max_dead": lambda v: _forever_or(v, lambda n: _integer(n, 0)),
        }
        for key, value in data.items():
            convert = converters[key]
            setattr(cfg, key, self.check(table, key, None, partial(convert, value)))
        # Defaults too: an unset backend still lives next to the manifest.
        if "backend" not in data:
            cfg.backend = _store_url(cfg.backend, self.base, BACKEND_SCHEMES)
        cfg.pythonpath = [_absolute(p, self.base) for p in cfg.pythonpath]
        cfg.pidfile = _absolute(cfg.pidfile, self.base)
        cfg.log_file = _absolute(cfg.log_file, self.base)
        return cfg

    def defaults(self, data: dict[str, Any], config: SchedulerConfig) -> dict[str, Any]:
        """Checked `[defaults]` values, converted like the same keys of a job."""
        table = ("defaults",)
        self.unknown_keys(data, DEFAULT_KEYS, table, None, "[defaults]")
        return {
            key: self.check(table, key, None, partial(_setting, key, value))
            for key, value in data.items()
        }

    def job(
        self, name: str, data: Any, defaults: dict[str, Any], config: SchedulerConfig
    ) -> JobSpec:
        self.job_table(name, data)
        settings = dict(defaults)
        for key in DEFAULT_KEYS:
            if key in data:
                settings[key] = self.job_value(name, data, key, partial(_setting, key))
        timezone = settings.get("timezone", config.timezone)
        run = self.what_to_run(name, data)
        trigger = self.when_to_run(name, data, timezone)
        self.job_combinations(name, data, settings, run.command)
        on_failure = settings.get("on_failure") or None  # "" opts out
        if "on_failure" not in data and on_failure == name:
            on_failure = None  # the [defaults] alert job is not its own alert
        timeout = settings.get("timeout", DEFAULT_TIMEOUT)
        keep = {key: self.job_value(name, data, key, _keep) for key in JOB_KEEP_KEYS if key in data}
        return JobSpec(
            name=name,
            entrypoint=run.entrypoint,
            command=run.command,
            env=run.env,
            cwd=run.cwd,
            trigger=trigger,
            timezone=timezone,
            queue=settings.get("queue", "default"),
            priority=settings.get("priority", 5),
            retry=RetryPolicy(
                max_retries=settings.get("max_retries", 3),
                backoff=cast(Backoff, settings.get("retry_backoff", "exponential")),
                delay=settings.get("retry_delay", 1.0),
                max_delay=settings.get("retry_max_delay", 3600.0),
            ),
            timeout=timeout or None,  # 0 = no limit
            args=run.args,
            kwargs=run.kwargs,
            max_instances=settings.get("max_instances"),
            jitter=settings.get("jitter", 0.0),
            rate_limit=settings.get("rate_limit"),
            executor=cast(Executor, settings.get("executor", "auto")),
            misfire_grace_time=settings.get("misfire_grace_time"),
            coalesce=settings.get("coalesce"),
            pythonpath=list(config.pythonpath),
            on_failure=on_failure,
            concurrency_policy=settings.get("concurrency_policy"),
            catchup=settings.get("catchup"),
            user=settings.get("user") if run.command is not None else None,
            shell=settings.get("shell", DEFAULT_SHELL),
            keep_history=keep.get("keep_history", "default"),
            keep_dead=keep.get("keep_dead", "default"),
        )

    def job_table(self, name: str, data: Any) -> None:
        """The job's name and that its table holds only job keys."""
        table = ("jobs", name)
        if not JOB_NAME.fullmatch(name):
            self.fail(
                "bad job name: use letters, digits, '_', '.' and '-' only", table=table, job=name
            )
        try:
            check_name(name, "job")  # the shared rule adds the length limit
        except UsageError as exc:
            self.fail(str(exc), table=table)
        if not isinstance(data, dict):
            self.fail(
                f"must be a table ([jobs.{name}]), got {_type_name(data)}", table=table, job=name
            )
        self.unknown_keys(data, JOB_KEYS, table, name, "a job")

    def job_value(
        self, name: str, data: dict[str, Any], key: str, convert: Callable[[Any], Any]
    ) -> Any:
        """`data[key]` converted; a complaint becomes a ManifestError at the key's line."""
        return self.check(("jobs", name), key, name, lambda: convert(data[key]))

    def later_key(self, name: str, keys: Iterable[str]) -> str:
        """Of two conflicting keys, the one written last: where the user went wrong."""
        return max(keys, key=lambda k: self.lines.key(("jobs", name), k) or 0)

    def what_to_run(self, name: str, data: dict[str, Any]) -> _WhatToRun:
        """`entrypoint` or `command`, and what the run gets: env, cwd, args, kwargs."""
        table = ("jobs", name)
        if "entrypoint" in data and "command" in data:
            self.fail(
                "has both 'entrypoint' and 'command': use one",
                table=table,
                key=self.later_key(name, ("entrypoint", "command")),
                job=name,
            )
        if "entrypoint" not in data and "command" not in data:
            self.fail(
                "needs 'entrypoint' (a Python function) or 'command' (a shell command)",
                table=table,
                job=name,
            )

        def value(key: str, convert: Callable[[Any], Any], default: Any = None) -> Any:
            return self.job_value(name, data, key, convert) if key in data else default

        return _WhatToRun(
            entrypoint=value("entrypoint", _entrypoint),
            command=value("command", _command),
            env=value("env", _env, {}),
            cwd=value("cwd", lambda v: _absolute(_string(v), self.base)),
            args=value("args", _args, []),
            kwargs=value("kwargs", _kwargs, {}),
        )

    def when_to_run(self, name: str, data: dict[str, Any], timezone: str) -> Trigger | None:
        """At most one of `cron`, `every`, `at`; none makes an enqueue-only job."""
        present = [k for k in TRIGGER_KEYS if k in data]
        if len(present) > 1:
            self.fail(
                f"has {' and '.join(repr(k) for k in present)}: use at most one trigger",
                table=("jobs", name),
                key=self.later_key(name, present),
                job=name,
            )
        if not present:
            return None
        key = present[0]
        trigger: Trigger = self.job_value(name, data, key, lambda v: _trigger(key, v, timezone))
        return trigger

    def job_combinations(
        self,
        name: str,
        data: dict[str, Any],
        settings: dict[str, Any],
        command: list[str] | str | None,
    ) -> None:
        """Keys that are each valid but do not go together."""
        table = ("jobs", name)
        if command is not None and settings.get("executor") == "process":
            key = "executor" if "executor" in data else "command"
            self.fail(
                "executor 'process' cannot run a command: a command already runs in "
                "its own process",
                table=table,
                key=key,
                job=name,
            )
        for first, second in (("concurrency_policy", "max_instances"), ("catchup", "coalesce")):
            if first in data and second in data:
                self.fail(
                    f"has both '{first}' and '{second}': use one", table=table, key=first, job=name
                )
        if "user" in data and command is None:
            self.fail(
                "'user' applies to command jobs only (a Python job runs inside "
                "chronctl's own process)",
                table=table,
                key="user",
                job=name,
            )
        if "shell" in data and not isinstance(command, str):
            self.fail(
                "'shell' applies to a string command only (a list command is exec'd "
                "without a shell)",
                table=table,
                key="shell",
                job=name,
            )


@dataclass(slots=True)
class _WhatToRun:
    entrypoint: str | None
    command: list[str] | str | None
    env: dict[str, str]
    cwd: str | None
    args: list[Any]
    kwargs: dict[str, Any]


def _setting(key: str, value: Any) -> Any:
    """Convert one key that may appear in both [defaults] and a job."""
    if key == "queue":
        return _queue(value)
    if key == "priority":
        return _integer(value, 0, 9)
    if key == "max_retries":
        return _integer(value, 0)
    if key == "retry_backoff":
        return _choice(value, BACKOFFS)
    if key in ("retry_delay", "retry_max_delay", "timeout", "jitter", "misfire_grace_time"):
        return _duration(value)
    if key == "max_instances":
        return _integer(value, 1)
    if key == "executor":
        return _choice(value, EXECUTORS)
    if key == "coalesce":
        return _boolean(value)
    if key == "timezone":
        return _timezone(value)
    if key == "rate_limit":
        return _rate_limit(value)
    if key == "on_failure":
        return _string(value, empty=True).strip()
    if key == "shell":
        return _string(value).strip()
    if key == "concurrency_policy":
        return _choice(value, CONCURRENCY_POLICIES)
    if key == "catchup":
        return _choice(value, CATCHUPS)
    if key == "user":
        return _user(value)
    raise AssertionError(key)  # pragma: no cover - DEFAULT_KEYS and this list agree


def _keep(value: Any) -> float | None:
    """A job's `keep_history`/`keep_dead`: a duration, or "forever" (None)."""
    result: float | None = _forever_or(value, lambda d: _duration(d, positive=True))
    return result


def _queue(value: Any) -> str:
    return check_name(_string(value), "queue")


def _user(value: Any) -> str:
    name = _string(value)
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise _Invalid(f"unknown user '{name}'") from None
    return name


def _entrypoint(value: Any) -> str:
    text = _string(value).strip()
    if not ENTRYPOINT.fullmatch(text):
        raise _Invalid(f"bad entrypoint {text!r}: expected 'package.module:function'")
    return text


def _command(value: Any) -> list[str] | str:
    if isinstance(value, str):
        if not value.strip():
            raise _Invalid("must name a program to run")
        return value
    if not isinstance(value, list):
        raise _Invalid(f"expected an array of strings or a string, got {_type_name(value)}")
    parts = value
    for item in parts:
        if not isinstance(item, str):
            raise _Invalid(f"expected an array of strings, found {_type_name(item)} {item!r}")
    if not parts or not parts[0]:
        raise _Invalid("must name a program to run")
    return list(parts)


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a table of strings, got {_type_name(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise _Invalid(
                f"value of '{key}' must be a string, got {_type_name(item)} {item!r} (quote it)"
            )
    return dict(value)


def _args(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _Invalid(f"expected an array, got {_type_name(value)}")
    return list(_json_value(value, "args"))


def _kwargs(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a table, got {_type_name(value)}")
    return dict(_json_value(value, "kwargs"))


def _trigger(key: str, value: Any, timezone: str) -> Trigger:
    if key == "cron":
        return CronTrigger(_string(value).strip(), timezone)
    if key == "every":
        return IntervalTrigger(_duration(value, positive=True))
    if isinstance(value, datetime):
        return DateTrigger(parse_at(value, timezone))
    if isinstance(value, date):
        return DateTrigger(parse_at(datetime(value.year, value.month, value.day), timezone))
    if not isinstance(value, str):
        raise _Invalid(
            f"expected a date and time like 2026-12-24T18:00:00, got {_type_name(value)}"
        )
    return DateTrigger(parse_at(value, timezone))


# -- public -------------------------------------------------------------------


def parse_manifest(text: str, path: str | Path | None = None) -> Manifest:
    """Parse manifest text; `path` is only for messages and relative paths."""
    return _Parser(text, path).parse()


def load_manifest(path: str | Path) -> Manifest:
    where = str(path)
    try:
        raw = Path(path).expanduser().read_bytes()
    except FileNotFoundError:
        raise ManifestError("manifest not found", path=where) from None
    except IsADirectoryError:
        raise ManifestError("is a directory, not a manifest file", path=where) from None
    except OSError as exc:
        raise ManifestError(f"cannot read manifest: {exc.strerror or exc}", path=where) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"not UTF-8 text: {exc.reason} at byte {exc.start}", path=where
        ) from None
    return parse_manifest(text, path)


def resolve_backend(manifest: Manifest | None, url: str | None = None) -> QueueBackend:
    """The backend to work on: `url` (`--backend`, a relative SQLite path taken from the
    current directory), else the manifest's `[scheduler] backend`.

    The one place a backend is chosen: `chronctl run`, every command that reads or
    changes state, and `Scheduler.from_manifest` come through here, so they cannot
    pick different stores. A RabbitMQ backend keeps job state in the manifest's
    `state` store, whichever URL names the broker.
    """
    state = manifest.config.state if manifest is not None else None
    if url:
        return from_url(url, base=Path.cwd(), state=state)
    if manifest is None:
        raise UsageError("no backend: give --backend URL or a manifest")
    base = manifest.path.parent if manifest.path else None
    return from_url(manifest.config.backend, base=base, state=state)


def check_entrypoints(manifest: Manifest) -> list[ManifestError]:
    """Import every entrypoint; errors are returned so `validate` can list them all."""
    where = manifest.display_path
    if where is None and manifest.path is not None:
        where = str(manifest.path)
    lines = _Lines(manifest.source)
    errors: list[ManifestError] = []
    for spec in manifest.jobs.values():
        if spec.entrypoint is None or spec.func is not None:
            continue
        try:
            spec.resolve()
        except ManifestError as exc:
            errors.append(
                ManifestError(
                    exc.message,
                    path=where,
                    line=lines.key(("jobs", spec.name), "entrypoint"),
                    job=spec.name,
                    key="entrypoint",
                    hint=exc.hint,
                )
            )
        except Exception as exc:  # a module that imports but misbehaves on getattr
            errors.append(
                ManifestError(
                    f"cannot load '{spec.entrypoint}': {type(exc).__name__}: {exc}",
                    path=where,
                    line=lines.key(("jobs", spec.name), "entrypoint"),
                    job=spec.name,
                    key="entrypoint",
                )
            )
    return errors


# Shells whose `-n` reads a line without running it; another `shell` is only looked up.
POSIX_SHELLS = frozenset({"sh", "bash", "dash", "ksh", "mksh", "zsh", "ash", "busybox", "yash"})
SYNTAX_CHECK_TIMEOUT = 5.0


def check_commands(manifest: Manifest) -> list[ManifestError]:
    """Check every shell line as its shell would parse it, without running it.

    A string command is no longer split by chronctl, so a stray quote would
    only show at its first run (cron mails it at 3 a.m.); `validate` asks the
    job's shell instead (`sh -n -c LINE`).
    """
    where = manifest.display_path
    if where is None and manifest.path is not None:
        where = str(manifest.path)
    lines = _Lines(manifest.source)
    errors: list[ManifestError] = []
    for spec in manifest.jobs.values():
        if not isinstance(spec.command, str):
            continue
        problem, key = shell_problem(spec), "command"
        if problem is None:
            continue
        if problem.startswith("shell '"):  # the shell itself, not the line
            key = "shell" if lines._key_in(("jobs", spec.name), "shell") else "command"
        line = lines.key(("jobs", spec.name), key)
        errors.append(ManifestError(problem, path=where, line=line, job=spec.name, key=key))
    return errors


def shell_problem(spec: JobSpec) -> str | None:
    """Why the job's shell would refuse its line (None: it parses); import-crontab
    asks too, so an imported manifest passes `validate`."""
    assert isinstance(spec.command, str)
    found = shutil.which(spec.shell)
    if found is None:
        return f"shell '{spec.shell}' not found or not executable"
    if Path(found).name not in POSIX_SHELLS:
        return None
    try:
        checked = subprocess.run(
            [found, "-n", "-c", spec.command, spec.name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=SYNTAX_CHECK_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"shell '{spec.shell}' could not check the line: {exc}"
    if checked.returncode == 0:
        return None
    said = [ln for ln in checked.stderr.splitlines() if ln.strip()]
    said = [ln for ln in said if "error" in ln.lower()] or said  # bash echoes the line too
    # "job: 1: Syntax error: ..." / "job: -c: line 1: syntax error ...": keep the reason.
    reason = re.sub(r"^.*?(line )?\d+: ", "", said[0]) if said else "it does not parse"
    reason = re.sub(r"^syntax error:?\s*", "", reason, flags=re.IGNORECASE)
    return f"shell syntax error: {reason}"
