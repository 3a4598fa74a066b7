"""Workers: claim due tasks in batches, run them, settle each one.

The loop never busy-polls: with nothing due it sleeps until the earliest
scheduled task, an in-process wakeup (enqueue, retry, resume) or, for
backends other processes write to, a short poll interval. While tasks run,
one heartbeat renews all their leases; a lease this worker lost (the task
was cancelled, or expired and was taken by another worker) cancels the run
if the job may still be executing; a run already recording its outcome is
never cancelled (its write is fenced by ownership, and cancelling it would
lose the event of an outcome that may already be committed).

Short tasks would otherwise leave slots idle for two round trips each (claim,
then acknowledge), so a slot is free again as soon as its run returns (the
acknowledgement goes on in the background, group-committed by the backend) and
the worker claims up to `prefetch` tasks beyond its free slots. A prefetched
task waits at most PREFETCH_WAIT for a slot; then it goes back to the queue,
where an idle worker elsewhere can take it, and the worker prefetches nothing
until one of its runs ends: long runs never hoard work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import time
import traceback as tb
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ChronctlError, UnknownJobError, exception_text
from .events import EventBus
from .jobs import build_task
from .models import Task
from .ratelimit import RateLimits

if TYPE_CHECKING:
    from .backends.base import QueueBackend
    from .executors import ExecutionResult, Executors
    from .jobs import JobSpec

log = logging.getLogger("chronctl.worker")

TRACEBACK_TAIL = 4000  # characters of traceback kept with a failed run
PREFETCH_WAIT = 1.0  # seconds a prefetched task waits for a slot before it goes back


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        backend: QueueBackend,
        get_job: Callable[[str], JobSpec | None],
        executors: Executors,
        *,
        concurrency: int = 8,
        queues: list[str] | None = None,
        lease: float = 30.0,
        events: EventBus | None = None,
        poll_interval: float | None = None,
        prefetch: int | None = None,
    ) -> None:
        self.backend = backend
        self.get_job = get_job
        self.executors = executors
        self.concurrency = max(1, concurrency)
        self.queues = queues
        self.lease = lease
        self.events = events or EventBus()
        self.id = worker_id()
        # Other processes may write a shared backend without waking us.
        self.poll_interval = (
            poll_interval if poll_interval is not None else (1.0 if backend.shared else 3600.0)
        )
        #: tasks claimed beyond the free slots, waiting (briefly) for one
        self.prefetch = max(0, prefetch if prefetch is not None else 2 * self.concurrency)
        # claimed and not yet settled: waiting for a slot, running, or being acknowledged
        self._inflight: dict[str, tuple[Task, asyncio.Task[None]]] = {}
        self._slots = asyncio.Semaphore(self.concurrency)
        self._unfinished: set[str] = set()  # claimed, run not over yet (waiting or running)
        self._waiting: set[str] = set()  # claimed, waiting for a slot
        self._slots_stuck = False  # a prefetched task timed out; no prefetch until a run ends
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._releasing: set[str] = set()
        self._rates = RateLimits(backend, self.concurrency)

    def _room(self) -> int:
        """How many tasks to claim now: free slots plus the prefetch, minus what is
        claimed and unstarted; 0 also while too many acknowledgements are in flight."""
        if len(self._inflight) >= 4 * (self.concurrency + self.prefetch):
            return 0
        extra = 0 if self._slots_stuck else self.prefetch
        return self.concurrency + extra - len(self._unfinished)

    # -- loops -------------------------------------------------------------
    async def run(self) -> None:
        """Claim and run tasks until stop() is called."""
        heartbeat = asyncio.create_task(self._heartbeat(), name="chronctl-lease-heartbeat")
        backoff = 0.0
        try:
            while not self._stopping:
                free = self._room()
                if free <= 0:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                try:
                    claimed = await self._claim(free)
                    due = None if claimed else await self.backend.next_due(self.queues)
                except ChronctlError as exc:
                    # The backend is down (a Redis restart): say so once, retry with backoff.
                    if not backoff:
                        log.warning("cannot claim tasks: %s; retrying with backoff", exc)
                    backoff = min(max(backoff * 2, 0.1), 5.0)
                    await self.backend.wait_for_work(backoff)
                    continue
                if backoff:
                    log.info("claiming tasks again: the backend is back")
                    backoff = 0.0
                if claimed:
                    continue
                timeout = self.poll_interval
                if due is not None:
                    timeout = min(timeout, max(0.0, due - time.time()))
                if timeout > 0:
                    await self.backend.wait_for_work(timeout)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def run_until_idle(self) -> None:
        """`run --once`: run every task due now, and what they make due now, then return."""
        heartbeat = asyncio.create_task(self._heartbeat(), name="chronctl-lease-heartbeat")
        try:
            while not self._stopping:
                free = self._room()
                claimed = await self._claim(free) if free > 0 else 0
                if claimed:
                    continue
                if not self._inflight:
                    return
                self._slot_freed.clear()
                await self._slot_freed.wait()
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _claim(self, free: int) -> int:
        tasks = await self.backend.dequeue(
            free, queues=self.queues, lease=self.lease, worker=self.id
        )
        for task in tasks:
            self._unfinished.add(task.id)
            runner = asyncio.create_task(self._execute(task), name=f"chronctl-task-{task.id}")
            self._inflight[task.id] = (task, runner)
        return len(tasks)

    async def _heartbeat(self) -> None:
        interval = max(0.05, self.lease / 3)
        while True:
            await asyncio.sleep(interval)
            if not self._inflight:
                continue
            tasks = [t for t, _ in self._inflight.values()]
            try:
                lost = await self.backend.extend_leases(tasks, self.lease)
            except Exception as exc:  # the backend may be briefly down: try again next beat
                log.warning("cannot renew leases: %s", exc)
                continue
            for task_id in lost:
                entry = self._inflight.get(task_id)
                # Only a run that may still execute the job is stopped. One that is recording
                # its outcome is left alone: its state write is fenced by ownership (a task
                # really taken over is not overwritten), and the task may be "lost" only
                # because that write already committed (a group-committed acknowledgement
                # whose caller has not resumed yet): cancelling it then dropped its
                # task_succeeded event although the task had succeeded (issue 15).
                if entry is not None and task_id in self._unfinished:
                    log.info("task %s was cancelled or taken over; stopping its run", task_id)
                    entry[1].cancel()

    async def stop(self, timeout: float = 30.0, *, now: bool = False) -> None:
        """Stop claiming; let runs finish within `timeout`; return the rest to the queue."""
        self._stopping = True
        self._slot_freed.set()
        self.backend.notify()
        # Prefetched tasks never started: back to the queue at once, not run now.
        await self._cancel_and_release(
            [self._inflight[i] for i in self._waiting if i in self._inflight]
        )
        if self._inflight and not now:
            await asyncio.wait([r for _, r in self._inflight.values()], timeout=timeout)
        leftover = list(self._inflight.values())
        if leftover:
            await self._cancel_and_release(leftover)
            log.info("returned %d unfinished task(s) to the queue", len(leftover))

    async def _cancel_and_release(self, entries: list[tuple[Task, asyncio.Task[None]]]) -> None:
        """Cancel these runs, then release their tasks (shutdown: no attempt counted)."""
        if not entries:
            return
        self._releasing.update(t.id for t, _ in entries)
        for _, runner in entries:
            runner.cancel()
        await asyncio.gather(*(r for _, r in entries), return_exceptions=True)
        await self._release([t for t, _ in entries])

    # -- one task ----------------------------------------------------------
    async def _execute(self, task: Task) -> None:
        try:
            await self._run_one(task)
        except asyncio.CancelledError:
            pass
        except Exception:  # a backend error while settling: the lease will bring it back
            log.exception("could not record the outcome of task %s", task.id)
        finally:
            self._run_over(task)
            self._inflight.pop(task.id, None)
            self._slot_freed.set()

    def _run_over(self, task: Task) -> None:
        """The task no longer needs a slot: the worker may claim another one now. From
        here on its run only records an outcome, so a lost lease no longer cancels it."""
        if task.id in self._unfinished:
            self._unfinished.discard(task.id)
            self._slot_freed.set()

    async def _release(self, tasks: list[Task], *, at: float | None = None) -> None:
        """Give tasks back to the queue (no attempt counted), not claimable before `at`;
        the only way this worker gives a task back. Their room here is free at once."""
        for task in tasks:
            self._run_over(task)
        await self.backend.release(tasks, at=at)

    async def _take_slot(self, task: Task) -> bool:
        """Wait for a free slot, at most PREFETCH_WAIT; False = the task went back."""
        if self._stopping:  # claimed just before a graceful stop: not started now
            await self._release([task])
            return False
        if not self._slots.locked():
            await self._slots.acquire()
            return True
        self._waiting.add(task.id)
        try:
            await asyncio.wait_for(self._slots.acquire(), PREFETCH_WAIT)
            return True
        except TimeoutError:
            pass
        finally:
            self._waiting.discard(task.id)
        # Every slot is held by a long run: let an idle worker elsewhere have it.
        self._slots_stuck = True
        await self._release([task])
        log.debug("task %s waited %.1fs for a slot; returned to the queue", task.id, PREFETCH_WAIT)
        return False

    async def _run_one(self, task: Task) -> None:
        """Refuse an unknown job, then: rate limit, slot, run, settle."""
        spec = self.get_job(task.job)
        if spec is None:
            await self._refuse(task)
            return
        wait = await self._rates.wait(spec, task)
        if wait > 0:  # step aside until its turn, so due tasks of other jobs run meanwhile
            await self._release([task], at=time.time() + wait)
            return
        if not await self._take_slot(task):
            return
        started = time.monotonic()
        try:
            outcome = await self._run(spec, task)
        except asyncio.CancelledError:
            if task.id not in self._releasing:  # shutdown: stop() releases it, no end line
                _log_run(logging.INFO, "end", task, time.monotonic() - started, "cancelled")
            raise
        except Exception as exc:
            await self._failed(spec, task, exc, time.monotonic() - started)
            return
        await self._succeeded(task, outcome, time.monotonic() - started)

    async def _refuse(self, task: Task) -> None:
        """Never import what a task names: only manifest jobs run."""
        task.error = str(UnknownJobError(task.job)) + ": not defined in the manifest"
        task.finished_at = time.time()
        self._run_over(task)  # nothing runs: only the outcome is recorded
        await self.backend.reject(task, requeue=False)
        log.error("task %s refused: %s", task.id, task.error)
        await self.events.emit("task_dead", task=task)

    async def _run(self, spec: JobSpec, task: Task) -> ExecutionResult:
        """Run the task in the slot taken for it; the slot is free again as soon as the
        run returns, before the outcome is stored."""
        try:
            _log_run(logging.DEBUG, "start", task)
            await self.events.emit("task_started", task=task)
            return await self.executors.run(spec, task)
        finally:
            self._slots.release()
            self._slots_stuck = False
            self._run_over(task)

    async def _succeeded(self, task: Task, outcome: ExecutionResult, duration: float) -> None:
        task.result = outcome.result
        task.output = outcome.output
        task.finished_at = time.time()
        if await self.backend.acknowledge(task):
            _log_run(logging.INFO, "end", task, duration, "succeeded")
            await self.events.emit("task_succeeded", task=task)

    async def _failed(self, spec: JobSpec, task: Task, exc: Exception, duration: float) -> None:
        from .executors import RemoteError, ShellCommandFailed, TaskTimeout

        ours = isinstance(exc, TaskTimeout | ShellCommandFailed)
        # Only our own errors carry a run's output; a job's exception may have an
        # `output` of any type (CalledProcessError's is bytes).
        task.output = exc.output if isinstance(exc, TaskTimeout | ShellCommandFailed) else None
        if ours:
            # chronctl's own frames would be the only traceback: the exit status and the
            # output's last line say what went wrong, the output tail says the rest.
            task.error = _with_last_line(str(exc), task.output)
            task.traceback = None
        else:
            # A child's error already reads "Type: message", like the others here.
            task.error = str(exc) if isinstance(exc, RemoteError) else exception_text(exc)
            trace = exc.remote_traceback if isinstance(exc, RemoteError) else _user_traceback(exc)
            task.traceback = trace[-TRACEBACK_TAIL:]
        task.finished_at = time.time()
        retry = task.attempt < task.max_retries
        retry_at = task.finished_at + spec.retry.delay_for(task.attempt + 1) if retry else None
        if not await self.backend.reject(task, requeue=retry, retry_at=retry_at):
            return
        status = "retrying" if retry else "dead"
        _log_run(logging.WARNING, "end", task, duration, status, task.error)
        await self.events.emit("task_failed", task=task, retry_at=retry_at)
        if not retry:
            await self.events.emit("task_dead", task=task)
            if spec.on_failure:
                await self._on_failure(spec, task)

    async def _on_failure(self, spec: JobSpec, task: Task) -> None:
        """Enqueue the job's `on_failure` job with what failed, the output included: the
        successor of cron's MAILTO, which mailed the output of a failed run."""
        target = self.get_job(spec.on_failure or "")
        if target is None:
            log.error("on_failure job %r of %s is not defined", spec.on_failure, spec.name)
            return
        output = task.output if task.output is not None else task.traceback
        facts: dict[str, object] = {
            "job": task.job,
            "task_id": task.id,
            "error": task.error,
            "output": _alert_text(output),
        }
        if target.is_shell:  # a command gets them as arguments: JOB TASK_ID ERROR OUTPUT
            words = [str(facts[k] or "").replace("\0", "") for k in ALERT_FACTS]
            follow = build_task(target, [*target.args, *words])
        else:
            follow = build_task(target, None, {**target.kwargs, **_accepted(target, facts)})
        follow.key = f"on_failure:{task.id}:{task.attempt}"  # once per dead letter
        task_id, created = await self.backend.enqueue(follow)
        if created:
            log.info("on_failure job=%s task=%s for failed task=%s", target.name, task_id, task.id)
            await self.events.emit("task_enqueued", task=follow)


def _log_run(
    level: int,
    event: str,
    task: Task,
    duration: float | None = None,
    status: str | None = None,
    error: str | None = None,
) -> None:
    """The one shape of a task's log line: `start`/`end` with `key=value` words in the
    text, and the same facts as JSON keys (`event` task_start/task_end, job, task_id,
    attempt, duration, status, error) for `--log-format json`."""
    if not log.isEnabledFor(level):
        return
    text = "%s job=%s task=%s attempt=%d"
    args: list[object] = [event, task.job, task.id, task.attempt]
    fields: dict[str, object] = {
        "event": f"task_{event}",
        "job": task.job,
        "task_id": task.id,
        "attempt": task.attempt,
    }
    if duration is not None:
        text += " duration=%.3fs"
        args.append(duration)
        fields["duration"] = round(duration, 6)
    if status is not None:
        text += " status=%s"
        args.append(status)
        fields["status"] = status
    if error is not None:
        text += " error=%s"
        args.append(error)
        fields["error"] = error
    log.log(level, text, *args, extra=fields)


ALERT_FACTS = ("job", "task_id", "error", "output")
ALERT_OUTPUT_TAIL = 16 * 1024  # characters: well inside one exec argument's limit


def _alert_text(output: str | None) -> str | None:
    if output is None:
        return None
    return output[-ALERT_OUTPUT_TAIL:]


def _accepted(target: JobSpec, facts: dict[str, object]) -> dict[str, object]:
    """The facts an alert function can take: one written before `output` existed
    (`def alert(job, task_id, error)`) keeps working."""
    import inspect

    if target.func is None and target.executor == "process":
        return facts  # not imported in this process: the child takes them all
    try:
        params = inspect.signature(target.resolve()).parameters.values()
    except (ChronctlError, TypeError, ValueError):
        return facts  # the run itself will report why it cannot be called
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return facts
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in facts.items() if k in names}


_ENGINE_DIRS = (
    str(Path(__file__).resolve().parent),
    str(Path(asyncio.__file__).resolve().parent),
    str(Path(concurrent.futures.__file__).resolve().parent.parent),
)


def _with_last_line(error: str, output: str | None, width: int = 200) -> str:
    """`command exited with status 3: pg_dump: connection refused` reads in any listing."""
    last = next((ln.strip() for ln in reversed((output or "").splitlines()) if ln.strip()), "")
    if not last:
        return error
    return f"{error}: {last if len(last) <= width else last[: width - 1] + '…'}"


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the job's own first frame: chronctl's and asyncio's are noise."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_frame.f_code.co_filename.startswith(_ENGINE_DIRS):
        frame = frame.tb_next
    start = frame if frame is not None else exc.__traceback__
    try:
        return "".join(tb.format_exception(type(exc), exc, start))
    except Exception:  # a job's exception broken enough to defeat even traceback
        return exception_text(exc)
