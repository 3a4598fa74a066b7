"""Job definitions: what to run, with which defaults, on which trigger.

A JobSpec is built from the manifest or from `@scheduler.job`; workers look
jobs up by name only, so a task can never name an arbitrary import path.
`build_task` makes a task of a job (the scheduler, the CLI and a worker's
`on_failure` all use it), and `JobSpec.timeline` says when it fires next.
"""

from __future__ import annotations

import importlib
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .errors import ManifestError, UsageError
from .models import JobState, Task, check_name, dumps
from .triggers import Timeline, Trigger, parse_at, timeline

Executor = Literal["auto", "async", "thread", "process"]
Backoff = Literal["exponential", "fixed"]
DEFAULT_SHELL = "/bin/sh"
MAX_PAYLOAD = 1024 * 1024  # bytes of JSON args+kwargs per task: a queue is not a file store


@dataclass(slots=True)
class RetryPolicy:
    max_retries: int = 3
    backoff: Backoff = "exponential"
    delay: float = 1.0
    max_delay: float = 3600.0
    jitter: bool = True

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1 for the first retry)."""
        # Capped exponent: max_retries may be any 64-bit count, and 2**1024 is no float.
        growth = 1 if self.backoff == "fixed" else 2 ** min(max(0, attempt - 1), 64)
        base = self.delay * growth
        base = min(base, self.max_delay)
        if self.jitter and base > 0:
            # +-10%: spreads a burst of retries without changing the expected delay.
            base *= random.uniform(0.9, 1.1)
        return min(base, self.max_delay)


@dataclass(slots=True)
class JobSpec:
    name: str
    entrypoint: str | None = None
    func: Callable[..., Any] | None = None
    # A list is exec'd as it is; a string is a shell line run by `shell -c`.
    command: list[str] | str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    trigger: Trigger | None = None
    timezone: str = "UTC"
    queue: str = "default"
    priority: int = 5
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = 600.0
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    max_instances: int | None = None  # None: 1 for triggered jobs, unlimited otherwise
    jitter: float = 0.0
    rate_limit: tuple[int, float] | None = None  # (count, per seconds)
    executor: Executor = "auto"
    misfire_grace_time: float | None = None  # None: the scheduler's
    coalesce: bool | None = None
    pythonpath: list[str] = field(default_factory=list)
    on_failure: str | None = None  # a job enqueued when a task of this one goes dead
    concurrency_policy: str | None = None  # forbid | allow | replace (max_instances alias)
    catchup: str | None = None  # skip | once | all (misfire policy alias)
    user: str | None = None  # shell jobs: run as this user (chronctl must be root)
    shell: str = DEFAULT_SHELL  # runs a string command, as cron's SHELL does
    # Retention of this job's rows (chronctl/retention.py): seconds, None for "forever",
    # or "default" for the [scheduler] setting.
    keep_history: float | Literal["default"] | None = "default"
    keep_dead: float | Literal["default"] | None = "default"

    @property
    def is_shell(self) -> bool:
        return self.command is not None

    def argv(self, args: list[str]) -> list[str]:
        """What to exec: task args are arguments, never text spliced into a shell line.

        A string command gets them as `$1`, `$2`, ...; `$0` is the job's name,
        so the shell's own error messages say which job failed.
        """
        if isinstance(self.command, str):
            return [self.shell, "-c", self.command, self.name, *args]
        if self.command is None:
            raise ManifestError("has no command", job=self.name)
        return [*self.command, *args]

    @property
    def effective_max_instances(self) -> int | None:
        if self.concurrency_policy == "allow":
            return None
        if self.concurrency_policy in ("forbid", "replace"):
            return 1
        if self.max_instances is not None:
            return self.max_instances
        return 1 if self.trigger is not None else None

    def timeline(self, state: JobState | None, now: float) -> Timeline | None:
        """When this job fires, given what the backend remembers of it (None: no
        trigger). The fire loop and every command that shows a next fire ask this."""
        if self.trigger is None:
            return None
        if state is None:
            return timeline(self.trigger, now=now)
        return timeline(
            self.trigger, now=now, first_seen=state.first_seen, last_fire=state.last_fire
        )

    def resolve(self) -> Callable[..., Any]:
        """Import the entrypoint once; errors name the job, never run other code."""
        if self.func is not None:
            return self.func
        if self.entrypoint is None:
            raise ManifestError("has neither entrypoint nor command", job=self.name)
        self.func = import_entrypoint(self.entrypoint, self.pythonpath, job=self.name)
        return self.func


def import_entrypoint(
    entrypoint: str, pythonpath: list[str] | None = None, *, job: str | None = None
) -> Callable[..., Any]:
    module_name, sep, attr = entrypoint.partition(":")
    if not sep or not module_name or not attr:
        raise ManifestError(
            f"bad entrypoint '{entrypoint}': expected 'package.module:function'",
            job=job,
            key="entrypoint",
        )
    for path in pythonpath or []:
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ManifestError(
            f"cannot import '{module_name}': {type(exc).__name__}: {exc}",
            job=job,
            key="entrypoint",
        ) from exc
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ManifestError(
                f"'{module_name}' has no attribute '{attr}'", job=job, key="entrypoint"
            ) from exc
    if not callable(obj):
        raise ManifestError(f"'{entrypoint}' is not callable", job=job, key="entrypoint")
    return obj


def build_task(
    spec: JobSpec,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    delay: float | None = None,
    at: datetime | str | None = None,
    priority: int | None = None,
    queue: str | None = None,
    key: str | None = None,
) -> Task:
    """A task of `spec` with the job's defaults, checked: JSON args, priority 0..9.

    Every way a task is made goes through here (`enqueue`, `trigger`,
    `enqueue --from`, `enqueue_many`, a worker's `on_failure`), so a bad
    payload is refused the same way everywhere, before anything is stored.
    """
    args = list(spec.args) if args is None else args
    kwargs = dict(spec.kwargs) if kwargs is None else kwargs
    if not isinstance(args, list):
        raise UsageError("args must be a JSON array")
    if not isinstance(kwargs, dict):
        raise UsageError("kwargs must be a JSON object")
    try:
        size = len(dumps([args, kwargs]).encode()) if args or kwargs else 0
    except (TypeError, ValueError) as exc:
        raise UsageError(f"args and kwargs must be JSON values: {exc}") from exc
    if size > MAX_PAYLOAD:
        raise UsageError(
            f"payload of {size / 1e6:.1f} MB is over the {MAX_PAYLOAD // 1024} KiB "
            "limit: pass a path or an id, not the data itself"
        )
    priority = spec.priority if priority is None else priority
    if not isinstance(priority, int) or not 0 <= priority <= 9:
        raise UsageError(f"bad priority {priority!r}: expected 0..9")
    now = time.time()
    scheduled = now
    if at is not None:
        scheduled = parse_at(at, spec.timezone).timestamp()
    elif delay:
        if delay < 0:
            raise UsageError("delay must not be negative")
        scheduled = now + delay
    return Task(
        job=spec.name,
        args=args,
        kwargs=kwargs,
        queue=check_name(queue, "queue") if queue else spec.queue,
        priority=priority,
        scheduled_at=scheduled,
        max_retries=spec.retry.max_retries,
        key=key,
        created_at=now,
    )
