"""The operator facade: what every command does, as library functions.

The CLI parses arguments, calls one of these and prints; `Scheduler`'s
methods call the same ones (`cancel_task`, `retry_dead`, `list_queues`,
`set_job_paused`, ...), so a script on the library and an operator at the
terminal get the same answers and the same errors. Sections follow the
commands: reaching the backend, jobs and their next fires, what operators
type, enqueue, tasks and dead letters, queues, status, migrate, cleanup.

Long operations work in chunks, each one atomic on the backend, and report
progress through a callback: if a call fails halfway, what is done is done
completely and running the command again finishes the rest.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .backends import QueueBackend, QueueInfo
from .backpressure import UNLIMITED, QueueLimits, SkippedFire, check_room, last_skip
from .daemon import daemon_pid, pid_alive, process_started, read_pid
from .durations import parse_duration
from .errors import (
    BackendError,
    BackendUnavailableError,
    ChronctlError,
    TaskNotFoundError,
    UnknownJobError,
    UnknownQueueError,
    Unsupported,
    UsageError,
)
from .jobs import JobSpec, build_task
from .manifest import (
    MAX_NESTING,
    Manifest,
    check_commands,
    check_entrypoints,
    closest,
    load_manifest,
    nesting_depth,
    resolve_backend,
)
from .models import (
    FINISHED,
    HEARTBEAT_INTERVAL,
    JobState,
    Process,
    Run,
    Task,
    TaskStatus,
    iso,
)
from .retention import RetentionPolicy, RetentionReport, last_report
from .schedules import Schedule, effective_spec
from .triggers import get_timezone

Progress = Callable[[int], None]  # called with how many more items are done
CHUNK = 500
BULK_FIELDS = frozenset({"job", "args", "kwargs", "at", "in", "priority", "queue", "key"})


def _noop(_: int) -> None:
    pass


# -- reaching the backend ------------------------------------------------------


def open_backend(
    manifest_path: Path, backend_url: str | None, command: str, manifest: Manifest | None = None
) -> QueueBackend:
    """The backend a state command talks to: `--backend`, else the manifest's.

    A memory backend lives inside one process, so another process can never
    see its tasks: say that in one line instead of showing an empty list.
    """
    if not backend_url and manifest is None:
        manifest = load_manifest(manifest_path)
    backend = resolve_backend(manifest, backend_url)
    if not backend.shared:
        raise BackendUnavailableError(
            f"`chronctl {command}` cannot reach a memory:// backend: it lives inside the "
            "process that runs it (use sqlite:// or redis:// to share state)"
        )
    return backend


def optional_manifest(manifest_path: Path, backend_url: str | None) -> Manifest | None:
    """The manifest, or None when `--backend` is given and there is no manifest file.

    Commands that only read or change the backend work without a manifest;
    they use it, when there is one, to know the jobs and queues it names.
    """
    if backend_url and not manifest_path.exists():
        return None
    return load_manifest(manifest_path)


# -- jobs and when they fire -----------------------------------------------------

#: How long `validate` and `jobs next` wait for the backend before showing next
#: fires without its state (they check a manifest; they must work offline too).
STATE_READ_TIMEOUT = 5.0


def job_named(jobs: Mapping[str, JobSpec], name: str) -> JobSpec:
    """The job `name`; an unknown name is an error that suggests the closest one."""
    spec = jobs.get(name)
    if spec is None:
        raise UnknownJobError(name, closest(name, jobs))
    return spec


@dataclass(slots=True)
class StoredStates:
    """What the backend remembers of jobs, as far as it could be read."""

    states: dict[str, JobState] = field(default_factory=dict)
    unread: str | None = None  # why the backend could not be read; next fires assume no state
    #: Stored schedules and trigger overrides, by name (none on a backend without them).
    schedules: dict[str, Schedule] = field(default_factory=dict)


async def stored_states(
    manifest: Manifest, backend_url: str | None = None, schedule: str | None = None
) -> StoredStates:
    """Job state for `validate` and `jobs next`, which show the fires `run` will fire;
    with `schedule`, that name's stored schedule or override too (`jobs next NAME`).

    Read-only and best effort: a store that does not exist yet is not created
    (it holds no state), a memory backend has none outside its process, and an
    unreachable backend gives no state with the reason in `unread`.
    """
    backend = resolve_backend(manifest, backend_url)
    if not backend.shared or backend.not_created():
        return StoredStates()
    try:
        async with asyncio.timeout(STATE_READ_TIMEOUT):
            async with backend:
                states = await job_states(backend)
                stored = await stored_schedule(backend, schedule) if schedule else None
                return StoredStates(states, None, {stored.name: stored} if stored else {})
    except TimeoutError:
        return StoredStates(
            unread=f"{backend.display_url} gave no answer within {STATE_READ_TIMEOUT:.0f}s"
        )
    except (ChronctlError, OSError) as exc:  # their messages name the backend
        return StoredStates(unread=str(exc) or type(exc).__name__)


async def job_states(backend: QueueBackend) -> dict[str, JobState]:
    return {state.name: state for state in await backend.list_job_states()}


async def stored_schedule(backend: QueueBackend, name: str) -> Schedule | None:
    """The stored schedule or override `name`; None also on a backend that stores none."""
    try:
        return await backend.get_schedule(name)
    except Unsupported:
        return None


async def schedules_by_name(backend: QueueBackend) -> dict[str, Schedule]:
    """Every stored schedule and override; none on a backend that cannot store them."""
    try:
        return {s.name: s for s in await backend.list_schedules()}
    except Unsupported:
        return {}


def fired_spec(
    jobs: Mapping[str, JobSpec], name: str, schedules: Mapping[str, Schedule]
) -> JobSpec:
    """What fires under the fire name `name`: a manifest job (as its stored override
    reschedules it), or a runtime schedule's job with the schedule's trigger and
    arguments. Unknown names are UnknownJobError, with the closest job or schedule."""
    spec = jobs.get(name)
    stored = schedules.get(name)
    if spec is not None:
        return effective_spec(stored, spec) if stored and stored.override else spec
    if stored is None or stored.override:
        raise UnknownJobError(name, closest(name, [*jobs, *schedules]))
    job = jobs.get(stored.job)
    if job is None:
        raise ChronctlError(
            f"schedule '{name}' is orphaned: its job '{stored.job}' is not in the manifest"
        )
    return effective_spec(stored, job)


def fire_state(
    name: str, states: Mapping[str, JobState], schedules: Mapping[str, Schedule]
) -> JobState | None:
    """The state a fire name's next fires count from, as the fire loop places it: a
    runtime schedule never fired counts from when it was stored; a job (overridden
    or not) without state from now, when a scheduler would first see it."""
    state = states.get(name)
    stored = schedules.get(name)
    if state is None and stored is not None and not stored.override:
        return JobState(name, first_seen=stored.created)
    return state


def next_fires(
    spec: JobSpec, state: JobState | None, count: int = 1, now: float | None = None
) -> list[datetime]:
    """The job's next `count` fires from now on, in its timezone (see Timeline).

    `validate`, `jobs list`, `jobs next` and `Scheduler.next_fires` all show
    this; the fire loop asks the same Timeline.
    """
    now = time.time() if now is None else now
    timeline = spec.timeline(state, now)
    if timeline is None:
        return []
    zone = get_timezone(spec.timezone)
    return [f.astimezone(zone) for f in timeline.fires(count, datetime.fromtimestamp(now, UTC))]


def _next_fire(spec: JobSpec, state: JobState | None, now: float) -> datetime | None:
    fires = next_fires(spec, state, 1, now)
    return fires[0] if fires else None


@dataclass
class JobReport:
    name: str
    trigger: str | None
    next_fire: datetime | None
    timezone: str = "UTC"


@dataclass
class ValidationReport:
    jobs: list[JobReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_public(self) -> dict[str, Any]:
        if not self.ok:
            return {"ok": False, "errors": self.errors}
        return {
            "ok": True,
            "jobs": [
                {
                    "name": j.name,
                    "timezone": j.timezone,
                    "next_fire": j.next_fire.isoformat() if j.next_fire else None,
                }
                for j in self.jobs
            ],
        }


def validate_manifest(
    manifest: Manifest, states: Mapping[str, JobState] | None = None, now: float | None = None
) -> ValidationReport:
    """Everything load_manifest checks, plus that each entrypoint imports and each
    shell line parses; and each job's next fire, from `states` when given."""
    problems = [*check_entrypoints(manifest), *check_commands(manifest)]
    report = ValidationReport(errors=[str(e) for e in problems])
    now = time.time() if now is None else now
    for spec in manifest.jobs.values():
        nxt = _next_fire(spec, (states or {}).get(spec.name), now)
        described = spec.trigger.describe() if spec.trigger else None
        report.jobs.append(JobReport(spec.name, described, nxt, spec.timezone))
    return report


def job_next_fires(
    manifest: Manifest,
    name: str,
    count: int = 5,
    states: Mapping[str, JobState] | None = None,
    now: float | None = None,
    schedules: Mapping[str, Schedule] | None = None,
) -> list[datetime]:
    """`jobs next NAME -n COUNT`: NAME a job (as its override reschedules it) or a
    runtime schedule (`schedules` as stored)."""
    schedules = schedules or {}
    spec = fired_spec(manifest.jobs, name, schedules)
    return next_fires(spec, fire_state(name, states or {}, schedules), count, now)


@dataclass
class JobOverview:
    name: str
    trigger: str | None
    next_fire: datetime | None
    paused: bool
    last_status: str | None
    last_run: float | None
    timezone: str = "UTC"
    overridden: bool = False  # the trigger is a stored override's (`jobs reschedule`)
    #: The last fire that stored no task (queue full, max_instances), from any process.
    last_skip: SkippedFire | None = None

    def to_public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trigger": self.trigger,
            "timezone": self.timezone,
            "next_fire": self.next_fire.isoformat() if self.next_fire else None,
            "paused": self.paused,
            "last_status": self.last_status,
            "last_run": iso(self.last_run),
            "overridden": self.overridden,
            "last_skip": self.last_skip.to_public() if self.last_skip else None,
        }


async def jobs_overview(
    backend: QueueBackend, jobs: Iterable[JobSpec], now: float | None = None
) -> list[JobOverview]:
    """`jobs list`: each job with its next fire, paused state, last run and last skip; a
    job whose trigger is overridden (`jobs reschedule`) with the override's trigger."""
    states = await job_states(backend)
    now = time.time() if now is None else now
    out = []
    for job in jobs:
        # One read per job, as for its last run: the listing does not grow with the
        # number of runtime schedules.
        override = await stored_schedule(backend, job.name)
        overridden = override is not None and override.override
        spec = effective_spec(override, job) if override and overridden else job
        state = states.get(spec.name)
        runs = await backend.history(spec.name, limit=1)
        last = runs[0] if runs else None
        out.append(
            JobOverview(
                spec.name,
                spec.trigger.describe() if spec.trigger else None,
                _next_fire(spec, state, now),
                bool(state and state.paused),
                last.status.value if last else None,
                last.finished_at if last else None,
                spec.timezone,
                overridden,
                await last_skip(backend, spec.name) if spec.trigger else None,
            )
        )
    return out


async def set_job_paused(
    backend: QueueBackend, jobs: Mapping[str, JobSpec], name: str, paused: bool
) -> None:
    """`pause NAME` / `resume NAME`: a manifest job or a runtime schedule (each pauses
    under its fire name); any other name is a typo that must pause nothing."""
    if name not in jobs:
        stored = await stored_schedule(backend, name)
        if stored is None or stored.override:
            job_named(jobs, name)
    await backend.set_job_paused(name, paused)


# -- parsing what operators type -------------------------------------------------


def parse_json(text: str | None, what: str, kind: type) -> Any:
    if text is None:
        return None
    value = _loads(text, f"bad JSON in {what}")
    _shallow(value, what)
    if not isinstance(value, kind):
        expected = "an array like '[1, \"a\"]'" if kind is list else "an object like '{\"a\": 1}'"
        raise UsageError(f"{what} must be {expected}, not {type(value).__name__}")
    return value


def _shallow(value: Any, what: str) -> None:
    """Task arguments nest at most MAX_NESTING deep: every worker must be able to decode them."""
    if nesting_depth(value) > MAX_NESTING:
        raise UsageError(f"{what} nests deeper than {MAX_NESTING} levels")


def _loads(text: str, label: str) -> Any:
    """json.loads, with every way it can fail as one UsageError starting with `label`.

    Beyond bad syntax, Python's json refuses integers over 4,300 digits
    (ValueError) and nesting deeper than the recursion limit (RecursionError).
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = (
            f"line {exc.lineno} column {exc.colno}"
            if "\n" in text.strip()
            else f"column {exc.colno}"
        )
        raise UsageError(f"{label}: {exc.msg} ({at})") from None
    except RecursionError:
        raise UsageError(f"{label}: nested too deeply") from None
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise UsageError(f"{label}: {str(exc).split(';')[0]}") from None


def parse_statuses(
    text: str | None, allowed: Iterable[TaskStatus] | None = None
) -> list[TaskStatus] | None:
    if not text:
        return None
    choices = list(allowed or TaskStatus)
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            status = TaskStatus(part)
        except ValueError:
            status = None
        if status is None or status not in choices:
            raise UsageError(
                f"bad status '{part}': expected one of " + ", ".join(s.value for s in choices)
            )
        out.append(status)
    return out or None


@dataclass(slots=True)
class EnqueueRequest:
    job: str
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    at: str | None = None
    delay: float | None = None
    priority: int | None = None
    queue: str | None = None
    key: str | None = None


def make_task(manifest: Manifest, request: EnqueueRequest) -> Task:
    """A task of a manifest job; a worker runs only jobs the manifest defines."""
    spec = job_named(manifest.jobs, request.job)
    if request.at is not None and request.delay is not None:
        raise UsageError("give --at or --in, not both")
    return build_task(
        spec,
        request.args,
        request.kwargs,
        delay=request.delay,
        at=request.at,
        priority=request.priority,
        queue=request.queue,
        key=request.key,
    )


def read_bulk(path: Path, manifest: Manifest, default_job: str | None = None) -> list[Task]:
    """`enqueue --from FILE`: one JSON object per line; every line is checked first.

    Nothing is enqueued unless every line is valid, so a typo on line 9,000
    does not leave 8,999 tasks behind to be untangled by hand. The JOB argument
    is the job of lines that name none; it must be a manifest job even when
    every line names its own, or a typo in it would pass unnoticed.
    """
    if default_job is not None and default_job not in manifest.jobs:
        raise UnknownJobError(default_job, closest(default_job, manifest.jobs))
    try:
        handle = sys.stdin.buffer if str(path) == "-" else path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    tasks: list[Task] = []
    with handle:
        for number, raw in enumerate(handle, 1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UsageError(
                    f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                ) from None
            if line.strip():
                tasks.append(_bulk_task(line, where, manifest, default_job))
    return tasks


def _bulk_task(line: str, where: str, manifest: Manifest, default_job: str | None) -> Task:
    """One line of `enqueue --from`; every error names the file and line."""
    data = _loads(line, f"{where}: bad JSON")
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a JSON object per line")
    unknown = sorted(set(data) - BULK_FIELDS)
    if unknown:
        raise UsageError(
            f"{where}: unknown field '{unknown[0]}' (fields: "
            + ", ".join(sorted(BULK_FIELDS))
            + ")"
        )
    job = data.get("job", default_job)
    if not job:
        raise UsageError(f'{where}: no job (give "job" or the JOB argument)')
    for name in ("job", "at", "queue", "key"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise UsageError(f'{where}: "{name}" must be a string')
    for name in ("args", "kwargs"):
        try:
            _shallow(data.get(name), name)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
    try:
        delay = data.get("in")
        if delay is not None:
            delay = parse_duration(delay, what="in")
        return make_task(
            manifest,
            EnqueueRequest(
                job=job,
                args=data.get("args"),
                kwargs=data.get("kwargs"),
                at=data.get("at"),
                delay=delay,
                priority=data.get("priority"),
                queue=data.get("queue"),
                key=data.get("key"),
            ),
        )
    except ChronctlError as exc:
        located = ChronctlError(f"{where}: {exc}")
        located.exit_code = exc.exit_code  # an unknown job stays exit 1
        raise located from None


async def enqueue_tasks(
    backend: QueueBackend,
    tasks: Sequence[Task],
    progress: Progress = _noop,
    *,
    resume: str | None = None,
    limits: QueueLimits = UNLIMITED,
) -> list[tuple[str, bool]]:
    """Store tasks all or nothing, or resumably (Redis): see QueueBackend.enqueue_many.

    A queue past its `max_pending` (`limits`) refuses the whole batch with
    QueueFull before anything is stored (see chronctl/backpressure.py).

    `resume` names the batch (`enqueue --from` derives it from the file), so that
    the same command run again after an interruption stores only the rest. A
    backend failure halfway says how many lines are stored, since a rerun is
    then the way to finish.
    """
    await check_room(backend, limits, tasks)
    stored = 0

    def advance(count: int) -> None:
        nonlocal stored
        stored += count
        progress(count)

    try:
        return await backend.enqueue_many(tasks, resume=resume, progress=advance)
    except BackendError as exc:
        if resume is None or not 0 < stored < len(tasks):
            raise
        raise type(exc)(
            f"{exc}; at least {stored} of {len(tasks)} lines were stored: "
            "run the same command again to store the rest"
        ) from None


class BulkInterrupted(ChronctlError):
    """`enqueue --from` stopped by Ctrl-C or SIGTERM: one line on how far it got."""

    def __init__(self, stored: int, total: int | None, exit_code: int) -> None:
        if total is None:
            text = "interrupted while reading the file: nothing stored"
        elif stored == 0:
            text = f"interrupted: nothing stored (0 of {total} lines)"
        elif stored < total:
            text = (
                f"interrupted: stored {stored} of {total} lines; "
                "run the same command again to store the rest"
            )
        else:
            text = f"interrupted after all {total} lines were stored"
        super().__init__(text)
        self.exit_code = exit_code


# -- tasks -----------------------------------------------------------------------


async def get_task(backend: QueueBackend, task_id: str) -> Task:
    task = await backend.get_task(task_id)
    if task is None:
        raise TaskNotFoundError(task_id)
    return task


async def cancel_task(backend: QueueBackend, task_id: str) -> Task:
    """Cancel a pending or running task; returns it as stored after the cancel.

    A finished task is an error, not a quiet False: the caller asked for
    something that did not happen.
    """
    task = await get_task(backend, task_id)
    if task.status in FINISHED:
        raise ChronctlError(f"task '{task_id}' is already {task.status.value}: nothing to cancel")
    if not await backend.cancel_task(task_id):
        latest = await get_task(backend, task_id)
        raise ChronctlError(f"task '{task_id}' is already {latest.status.value}: nothing to cancel")
    return await get_task(backend, task_id)


async def get_dead(backend: QueueBackend, task_id: str) -> Task:
    task = await get_task(backend, task_id)
    if task.status is not TaskStatus.DEAD:
        raise ChronctlError(
            f"task '{task_id}' is {task.status.value}, not in the dead letter queue"
        )
    return task


async def dead_letters(
    backend: QueueBackend, job: str | None = None, limit: int | None = 100
) -> list[Task]:
    """`dlq list`: dead tasks, newest first."""
    return await backend.list_tasks(status=TaskStatus.DEAD, job=job, limit=limit)


async def retry_dead(
    backend: QueueBackend,
    task_ids: Sequence[str] | None,
    progress: Progress = _noop,
    on_total: Callable[[int], None] = _noop,
) -> int:
    """Dead tasks back to pending (same id, attempt 0), in atomic chunks.

    Named ids must all be dead letters before anything changes, so a typo in
    one id does not half-apply the command.
    """
    if task_ids is None:
        dead = await backend.list_tasks(status=TaskStatus.DEAD, limit=None)
        ids = [t.id for t in dead]
    else:
        ids = list(dict.fromkeys(task_ids))
        for task_id in ids:
            await get_dead(backend, task_id)
    on_total(len(ids))
    count = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        count += await backend.retry_dead(chunk)
        progress(len(chunk))
    return count


# -- queues ----------------------------------------------------------------------


def queue_names(jobs: Iterable[JobSpec], worked: Iterable[str] | None = None) -> set[str]:
    """The queues a configuration names: its jobs' queues and those its workers take from."""
    return {spec.queue for spec in jobs} | set(worked or ())


def manifest_queues(manifest: Manifest | None) -> set[str]:
    """The queues a manifest names (none without a manifest)."""
    if manifest is None:
        return set()
    return queue_names(manifest.jobs.values(), manifest.config.queues)


async def list_queues(
    backend: QueueBackend, known: Iterable[str] = (), limits: QueueLimits = UNLIMITED
) -> list[QueueInfo]:
    """Every queue that is `known` (the manifest's) or holds active tasks or is paused,
    each with its `max_pending` from `limits`.

    The backend knows queues with pending or running tasks and paused ones;
    the known ones are added at zero when empty, so a queue does not vanish
    from the listing when its last task finishes or it is resumed.
    """
    infos = {info.name: info for info in await backend.list_queues()}
    for name in [*known, *limits.per_queue]:
        infos.setdefault(name, QueueInfo(name))
    for info in infos.values():
        info.max_pending = limits.max_pending(info.name)
    return [infos[name] for name in sorted(infos)]


async def known_queue(
    backend: QueueBackend, known: Iterable[str], name: str, limits: QueueLimits = UNLIMITED
) -> QueueInfo:
    """The queue `name` as `list_queues` shows it; a name it does not show is a typo."""
    queues = await list_queues(backend, known, limits)
    for info in queues:
        if info.name == name:
            return info
    names = [info.name for info in queues]
    raise UnknownQueueError(name, names, closest(name, names))


async def set_queue_paused(
    backend: QueueBackend, known: Iterable[str], name: str, paused: bool
) -> None:
    """`pause --queue NAME` / `resume --queue NAME`: only a queue `queues list` shows, so
    a typo does not pause nothing, silently."""
    await known_queue(backend, known, name)
    await backend.set_queue_paused(name, paused)


async def purge_queue(backend: QueueBackend, known: Iterable[str], name: str) -> int:
    """`queues purge NAME`: drop its pending tasks (running ones finish)."""
    await known_queue(backend, known, name)
    return await backend.clear(name)


async def count_dead(backend: QueueBackend) -> int:
    return await backend.count_dead()


# -- status --------------------------------------------------------------------


@dataclass(slots=True)
class DaemonState:
    running: bool
    pid: int | None
    started: float | None = None
    stale_pid: int | None = None  # what a stale pidfile names: not ours, never signalled


def daemon_state(pidfile: Path | None) -> DaemonState:
    """Whether the daemon holding the pidfile is alive; a stale pidfile's pid is kept
    apart (`stale_pid`), so no script takes an unrelated process for the daemon."""
    if pidfile is None:
        return DaemonState(False, None)
    pid = daemon_pid(pidfile)
    if pid is None:
        return DaemonState(False, None, stale_pid=read_pid(pidfile))
    return DaemonState(True, pid, process_started(pid))


def process_state(process: Process, now: float, host: str) -> str:
    """`alive`; `stale` when it missed two beats (hung, or on a host cut off from
    the backend); `dead` when it ran on this host and its pid is gone."""
    if process.host == host and not _still_running(process):
        return "dead"
    if now - process.last_beat > 2 * HEARTBEAT_INTERVAL:
        return "stale"
    return "alive"


def _still_running(process: Process) -> bool:
    """Whether its pid still runs the same process: a reused pid started after it did."""
    if not pid_alive(process.pid):
        return False
    started = process_started(process.pid)
    return started is None or started <= process.started + PID_START_SLACK


PID_START_SLACK = 2.0  # seconds: /proc start times are rounded to the boot second


@dataclass(slots=True)
class StatusReport:
    daemon: DaemonState
    backend: str
    queues: list[QueueInfo]
    running: list[Task]
    dead: int
    processes: list[Process] = field(default_factory=list)
    process_states: list[str] = field(default_factory=list)
    #: The manifest's retention settings (None: no manifest was read).
    policy: RetentionPolicy | None = None
    #: The last retention pass on this backend, by whichever process ran it.
    retention: RetentionReport | None = None

    def to_public(self) -> dict[str, Any]:
        return {
            "running": self.daemon.running,
            "pid": self.daemon.pid,
            "backend": self.backend,
            "schedulers": [
                {**p.to_public(), "state": state, "alive": state == "alive"}
                for p, state in zip(self.processes, self.process_states, strict=True)
            ],
            "queues": [q.to_public() for q in self.queues],
            "dead": self.dead,
            "retention": {
                "policy": self.policy.to_public() if self.policy else None,
                "last_pass": self.retention.to_public() if self.retention else None,
            },
        }


async def status(
    backend: QueueBackend,
    pidfile: Path | None,
    known_queues: Iterable[str] = (),
    manifest: Manifest | None = None,
) -> StatusReport:
    """`status`: its queues are those `queues list` shows, so the two never disagree;
    with the manifest, each queue's `max_pending` and the retention settings too."""
    limits = manifest.limits if manifest else UNLIMITED
    queues = await list_queues(backend, known_queues, limits)
    running = await backend.list_tasks(status=TaskStatus.RUNNING, limit=None)
    dead = await backend.count_dead()
    processes = await backend.list_processes()
    now, host = time.time(), socket.gethostname()
    states = [process_state(p, now, host) for p in processes]
    return StatusReport(
        daemon_state(pidfile),
        backend.display_url,
        queues,
        running,
        dead,
        processes,
        states,
        policy=retention_policy(manifest) if manifest else None,
        retention=await last_report(backend),
    )


def retention_policy(manifest: Manifest) -> RetentionPolicy:
    """The manifest's `keep_history`, `keep_dead`, `max_dead`, and its jobs' own."""
    cfg = manifest.config
    policy = RetentionPolicy(cfg.keep_history, cfg.keep_dead, cfg.max_dead)
    return policy.with_jobs(manifest.jobs.values())


# -- migrate ---------------------------------------------------------------------


@dataclass(slots=True)
class MigrationReport:
    tasks: int = 0
    runs: int = 0
    jobs: int = 0
    skipped_tasks: int = 0
    schedules: int = 0  # stored schedules and trigger overrides copied
    skipped_schedules: int = 0  # ones the target already had by name (left as they are)

    def to_public(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "runs": self.runs,
            "jobs": self.jobs,
            "already_there": self.skipped_tasks,
            "schedules": self.schedules,
            "schedules_already_there": self.skipped_schedules,
        }


MIGRATED_STATUSES = (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.DEAD)


async def migrate(
    source: QueueBackend,
    target: QueueBackend,
    progress: Progress = _noop,
    on_total: Callable[[int], None] = _noop,
) -> MigrationReport:
    """Copy pending tasks, dead letters, job state, history and stored schedules
    (trigger overrides too); safe to run twice.

    Running tasks are copied as pending: their run belongs to the source, and
    a copy must not look claimed by a worker that will never renew it.
    Target rows are matched by task id and, for history, by (task, attempt,
    finish time), so a second run copies nothing new. A schedule whose name the
    target already stores is left as the target has it (and counted).
    """
    if source.display_url == target.display_url:
        raise UsageError("the migration target is the current backend")
    tasks = await source.list_tasks(status=list(MIGRATED_STATUSES), limit=None)
    runs = await source.history(None, limit=None)
    jobs = await source.list_job_states()
    schedules = list((await schedules_by_name(source)).values())
    on_total(len(tasks) + len(runs) + len(jobs) + len(schedules))
    report = MigrationReport()
    for task in tasks:
        if task.status is TaskStatus.RUNNING:
            task.status = TaskStatus.PENDING
            task.lease_until = None
            task.worker = None
    for start in range(0, len(tasks), CHUNK):
        chunk = tasks[start : start + CHUNK]
        added = await target.import_tasks(chunk)
        report.tasks += added
        report.skipped_tasks += len(chunk) - added
        progress(len(chunk))
    runs.reverse()  # oldest first, so the target's history keeps its order
    for start in range(0, len(runs), CHUNK):
        some_runs = runs[start : start + CHUNK]
        report.runs += await target.import_runs(some_runs)
        progress(len(some_runs))
    report.jobs = await target.import_job_states(jobs)
    progress(len(jobs))
    for schedule in schedules:
        if await target.put_schedule(schedule, create=True):
            report.schedules += 1
        else:
            report.skipped_schedules += 1
        progress(1)
    return report


def older_than(text: str) -> float:
    """`--older-than 7d` as an epoch cut-off."""
    return time.time() - parse_duration(text, what="--older-than")


async def cleanup(
    backend: QueueBackend, before: float, statuses: Sequence[TaskStatus] | None = None
) -> int:
    """`cleanup`: delete finished tasks (and their history) finished before `before`.

    Only finished statuses may be named: deleting pending or running tasks is
    `queues purge` or `tasks cancel`, which say what they do.
    """
    unfinished = [s.value for s in statuses or () if s not in FINISHED]
    if unfinished:
        raise UsageError(
            f"cleanup deletes finished tasks only, not {', '.join(unfinished)}: expected "
            + ", ".join(sorted(s.value for s in FINISHED))
        )
    return await backend.cleanup(before, statuses)


__all__ = [
    "BulkInterrupted",
    "DaemonState",
    "EnqueueRequest",
    "JobOverview",
    "JobReport",
    "JobState",
    "MigrationReport",
    "Run",
    "StatusReport",
    "StoredStates",
    "ValidationReport",
    "cancel_task",
    "cleanup",
    "count_dead",
    "daemon_state",
    "dead_letters",
    "enqueue_tasks",
    "fire_state",
    "fired_spec",
    "get_dead",
    "get_task",
    "job_named",
    "job_next_fires",
    "job_states",
    "jobs_overview",
    "known_queue",
    "list_queues",
    "make_task",
    "manifest_queues",
    "migrate",
    "next_fires",
    "older_than",
    "open_backend",
    "optional_manifest",
    "parse_json",
    "parse_statuses",
    "process_state",
    "purge_queue",
    "queue_names",
    "read_bulk",
    "retention_policy",
    "retry_dead",
    "schedules_by_name",
    "set_job_paused",
    "status",
    "stored_schedule",
    "stored_states",
    "validate_manifest",
]
