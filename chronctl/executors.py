"""Run one task's code: on the loop, in a thread, in a child process, or as a command.

Everything a task returns or raises crosses this module as JSON-able values
and strings, never as pickles: a child process can only be asked to run an
entrypoint by name, and only the worker decides which names are allowed (the
manifest's jobs).

Timeouts differ by executor because what can be stopped differs: a coroutine
is cancelled, a child process or shell command has its whole process group
killed (TERM, then KILL after `KILL_GRACE`), and a thread cannot be stopped
at all: its run is recorded as timed out and the thread is abandoned to
finish in the background while a new thread takes its place (`ThreadPool`;
use `executor = "process"` for code that must be killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import os
import queue
import signal
import sys
import threading
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from .errors import exception_text
from .jobs import JobSpec
from .models import Task

log = logging.getLogger("chronctl.executors")

KILL_GRACE = 5.0
OUTPUT_TAIL = 64 * 1024


class TaskTimeout(Exception):
    def __init__(self, timeout: float, output: str | None = None) -> None:
        super().__init__(f"timed out after {timeout:g}s")
        self.timeout = timeout
        self.output = output


class ShellCommandFailed(Exception):
    def __init__(self, returncode: int, output: str | None = None) -> None:
        if returncode < 0:
            text = f"command killed by signal {-returncode}"
        else:
            text = f"command exited with status {returncode}"
        super().__init__(text)
        self.returncode = returncode
        self.output = output


class RemoteError(Exception):
    """An exception raised in a child process, carried back as text."""

    def __init__(self, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:  # already "Type: message"
        return str(self.args[0])


class ResultNotJSON(Exception):
    pass


@dataclass(slots=True)
class ExecutionResult:
    result: Any = None
    output: str | None = None


_PLAIN = frozenset({type(None), bool, int, str})  # always JSON: skip the trial encoding


def ensure_json(value: Any) -> Any:
    """Results are stored and shown as JSON; refuse anything else loudly, never pickle it."""
    if type(value) in _PLAIN:
        return value
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ResultNotJSON(
            f"the job returned a {type(value).__name__}, which is not JSON-serialisable: {exc}"
        ) from None
    return value


def _tail(data: bytes) -> str:
    return data[-OUTPUT_TAIL:].decode("utf-8", errors="replace")


async def _kill_group(proc: asyncio.subprocess.Process, grace: float) -> None:
    """TERM the process group, then KILL it if it lingers: children of a shell job die too."""
    if proc.returncode is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), wait)
            return
        except TimeoutError:
            continue


class Executors:
    """The worker's one way to run a task, whatever kind of job it is."""

    def __init__(
        self, threads: int = 8, processes: int = 2, *, max_abandoned: int | None = None
    ) -> None:
        self.threads = ThreadPool(threads, max_abandoned)
        self.processes = ProcessPool(max(1, processes))

    async def run(self, spec: JobSpec, task: Task) -> ExecutionResult:
        if spec.is_shell:
            return await run_command(spec, task)
        if spec.executor == "process":
            result = await self.processes.run(spec, task)
            return ExecutionResult(result=result)
        func = spec.resolve()
        if spec.executor == "async" or (
            spec.executor == "auto" and inspect.iscoroutinefunction(func)
        ):
            coro = func(*task.args, **task.kwargs)
            result = await _with_timeout(coro, spec.timeout)
        else:
            call = partial(func, *task.args, **task.kwargs)
            result = await self.threads.run(call, spec.timeout, spec.name)
            if inspect.isawaitable(result):  # a sync wrapper handed back a coroutine
                result = await _with_timeout(_await(result), spec.timeout)
        return ExecutionResult(result=ensure_json(result))

    async def shutdown(self, wait: bool = True) -> None:
        await self.processes.close()
        await self.threads.shutdown(wait=wait)


async def _await(awaitable: Any) -> Any:
    return await awaitable


async def _with_timeout(awaitable: Any, timeout: float | None) -> Any:
    # asyncio.timeout, not wait_for: wait_for wraps a coroutine in one more Task per run.
    if timeout is None:
        return await awaitable
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except TimeoutError:
        raise TaskTimeout(timeout) from None


# -- thread pool -------------------------------------------------------------


class _Call:
    """One sync call handed to the pool, and where its outcome goes."""

    __slots__ = ("abandoned", "dropped", "fn", "future", "job", "loop", "thread")

    def __init__(self, fn: Callable[[], Any], job: str, loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.job = job
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.thread: threading.Thread | None = None  # the thread that took it
        self.dropped = False  # its run gave up before any thread took it: never start it
        self.abandoned = False  # its run gave up while a thread was still in it


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the run timed out or was cancelled meanwhile
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class ThreadPool:
    """Daemon threads for sync jobs, where a stuck call costs one thread, not a slot.

    Python cannot stop a thread. When a run times out or is cancelled (lease
    lost, stop) while its call is still in a thread, that thread is abandoned
    to finish in the background and a new one takes its place at once, so a
    hung job never starves the others. At most `max_abandoned` threads (by
    default as many as the pool's size) may be abandoned at a time: past the
    cap no replacement starts until one of them finishes, and sync jobs wait
    for a free thread. An abandoned thread that finishes rejoins the pool if
    it is short, else ends. Daemon threads, never joined once abandoned: a
    stuck call never keeps the process from stopping.
    """

    def __init__(
        self, size: int, max_abandoned: int | None = None, name: str = "chronctl-job"
    ) -> None:
        self.size = max(1, size)
        self.name = name
        self.max_abandoned = self.size if max_abandoned is None else max(0, max_abandoned)
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a call, or about to
        self._queued = 0  # calls no thread has taken yet
        self._serving: set[threading.Thread] = set()  # threads taking calls
        self._running: set[_Call] = set()  # calls in a serving thread
        self.abandoned = 0  # threads still inside an abandoned call
        self._names = itertools.count()
        self._closed = False

    async def run(self, fn: Callable[[], Any], timeout: float | None, job: str = "") -> Any:
        """`fn()` in a pool thread; TaskTimeout past `timeout` (the thread is abandoned)."""
        call = _Call(fn, job, asyncio.get_running_loop())
        self._submit(call)
        try:
            return await _with_timeout(call.future, timeout)
        except TaskTimeout:
            self._give_up(call, f"after its {timeout:g}s timeout")
            raise
        except asyncio.CancelledError:
            self._give_up(call, "after its run was cancelled")
            raise

    def _submit(self, call: _Call) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the thread pool is shut down")
            self._queued += 1
            if self._queued > self._idle and len(self._serving) < self.size and self._room():
                self._start_thread()
        self._calls.put(call)

    def _room(self) -> bool:
        """Whether one more thread fits: `size` serving plus `max_abandoned` stuck."""
        return len(self._serving) + self.abandoned < self.size + self.max_abandoned

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._serve, name=f"{self.name}_{next(self._names)}", daemon=True
        )
        self._serving.add(thread)
        self._idle += 1
        thread.start()

    def _serve(self) -> None:
        me = threading.current_thread()
        while True:
            call = self._calls.get()
            with self._lock:
                self._idle -= 1
                if call is None:  # shut down
                    self._serving.discard(me)
                    return
                self._queued -= 1
                if call.dropped:
                    self._idle += 1
                    continue
                call.thread = me
                self._running.add(call)
            result, error = _call(call.fn)
            with self._lock:  # before the outcome is out: its run must not think it stuck
                self._running.discard(call)
                rejoined = not call.abandoned or self._rejoin(me)
                if rejoined:
                    self._idle += 1
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                call.loop.call_soon_threadsafe(_settle, call.future, result, error)
            if call.abandoned:
                log.info(
                    "an abandoned thread of job %s finished; %s",
                    call.job,
                    "it serves again" if rejoined else "it ends",
                )
            if not rejoined:
                return

    def _rejoin(self, me: threading.Thread) -> bool:
        """An abandoned thread is free again: serve if the pool is short, else end."""
        self.abandoned -= 1
        if self._closed or len(self._serving) >= self.size:
            return False
        self._serving.add(me)
        return True

    def _give_up(self, call: _Call, why: str) -> None:
        """Its run is over: drop a call no thread took; abandon the thread inside one."""
        with self._lock:
            if call.thread is None:
                call.dropped = True
                return
            if call not in self._running:  # it returned just now: nothing is stuck
                return
            call.abandoned = True
            self._running.discard(call)
            self._serving.discard(call.thread)
            self.abandoned += 1
            closed = self._closed
            replaced = not closed and self._room()
            if replaced:
                self._start_thread()
        if closed:
            log.info("job %s: its thread is still running %s; left behind", call.job, why)
        elif replaced:
            log.warning(
                "job %s: its thread is still running %s; abandoned it to finish in the "
                "background and started a new thread (%d abandoned, at most %d)",
                call.job,
                why,
                self.abandoned,
                self.max_abandoned,
            )
        else:
            log.error(
                "job %s: its thread is still running %s and %d threads are already "
                "abandoned (the most allowed): no new thread until one finishes, so sync "
                'jobs may wait for a thread; use executor = "process" for code that can hang',
                call.job,
                why,
                self.abandoned - 1,
            )

    async def shutdown(self, wait: bool = True) -> None:
        """End the serving threads; with `wait`, after the calls they still run.

        Abandoned threads are never waited for: they are daemons, and the
        process exits without them.
        """
        with self._lock:
            self._closed = True
            serving = list(self._serving)
            running = [c.future for c in self._running if not c.abandoned]
        for _ in serving:
            self._calls.put(None)
        if not wait:
            return
        if running:
            await asyncio.wait(running)
        for thread in serving:  # idle now: each ends as soon as it reads its None
            thread.join(timeout=1.0)


def _call(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except Exception as exc:
        return None, exc
    except BaseException as exc:  # sys.exit() in a job fails its task, not the worker
        text = "".join(traceback.format_exception(exc))
        return None, RemoteError(exception_text(exc), text)


# -- shell commands ----------------------------------------------------------


async def run_command(spec: JobSpec, task: Task) -> ExecutionResult:
    """A list is exec'd, a string runs in `shell -c`; task args are always separate
    arguments (`$1`, `$2`, ... of a shell line), never spliced into the command."""
    argv = spec.argv([_arg(a) for a in task.args])
    env = {**os.environ, **spec.env} if spec.env else None
    identity: dict[str, Any] = {}
    cwd = spec.cwd
    if spec.user is not None:
        env, identity, home = _as_user(spec.user, env, spec.shell)
        cwd = cwd or home
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            **identity,
        )
    except PermissionError as exc:
        if spec.user is not None and os.geteuid() != 0:
            raise ShellCommandFailed(
                126, f"cannot run as user '{spec.user}': chronctl is not running as root"
            ) from None
        raise ShellCommandFailed(126, f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
    except OSError as exc:
        raise ShellCommandFailed(127, f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
    buffer = bytearray()

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            buffer.extend(chunk)
            if len(buffer) > 2 * OUTPUT_TAIL:
                del buffer[:-OUTPUT_TAIL]
        await proc.wait()

    try:
        if spec.timeout is None:
            await pump()
        else:
            await asyncio.wait_for(pump(), spec.timeout)
    except TimeoutError:
        await _kill_group(proc, KILL_GRACE)
        raise TaskTimeout(spec.timeout or 0, _tail(bytes(buffer))) from None
    except asyncio.CancelledError:
        await asyncio.shield(_kill_group(proc, KILL_GRACE))
        raise
    output = _tail(bytes(buffer))
    if proc.returncode != 0:
        raise ShellCommandFailed(proc.returncode or 0, output)
    return ExecutionResult(result={"returncode": 0}, output=output)


def _as_user(
    name: str, env: dict[str, str] | None, shell: str
) -> tuple[dict[str, str], dict[str, Any], str | None]:
    """What cron gives a user's job: their uid, groups, HOME, USER and LOGNAME, and
    their home as working directory; SHELL is the job's shell, not the login shell
    (a system user's login shell is often nologin)."""
    import pwd

    entry = pwd.getpwnam(name)
    merged = dict(os.environ if env is None else env)
    merged.update(HOME=entry.pw_dir, USER=name, LOGNAME=name, SHELL=shell)
    home = entry.pw_dir if entry.pw_dir and os.path.isdir(entry.pw_dir) else None
    if entry.pw_uid == os.geteuid():
        return merged, {}, home
    groups = [g.gr_gid for g in _groups_of(name)]
    return merged, {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": groups}, home


def _groups_of(name: str) -> list[Any]:
    import grp

    return [g for g in grp.getgrall() if name in g.gr_mem]


def _arg(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# -- process pool ------------------------------------------------------------


class _Child:
    """One `python -m chronctl._procworker`: runs one call at a time over JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> _Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chronctl._procworker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=64 * 1024 * 1024,
        )
        return cls(proc)

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            code = await self.proc.wait()
            raise RemoteError(f"WorkerProcessDied: the child process exited with status {code}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def kill(self) -> None:
        await _kill_group(self.proc, KILL_GRACE)

    async def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 2)
        except TimeoutError:
            await self.kill()


class ProcessPool:
    """A small pool of long-lived children; a child that timed out is killed and replaced."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._slots = asyncio.Semaphore(size)

    async def run(self, spec: JobSpec, task: Task) -> Any:
        entrypoint = spec.entrypoint or _entrypoint_of(spec)
        request = {
            "entrypoint": entrypoint,
            "pythonpath": spec.pythonpath,
            "args": task.args,
            "kwargs": task.kwargs,
        }
        async with self._slots:
            child = self._idle.pop() if self._idle else await _Child.start()
            self._busy.add(child)
            keep = False
            try:
                reply = await _with_timeout(child.call(request), spec.timeout)
                keep = child.alive
            except (TaskTimeout, asyncio.CancelledError):
                await asyncio.shield(child.kill())
                raise
            finally:
                self._busy.discard(child)
                if keep:
                    self._idle.append(child)
                elif child.alive:
                    await asyncio.shield(child.kill())
        if reply.get("ok"):
            return reply.get("result")
        raise RemoteError(reply.get("error", "unknown error"), reply.get("traceback", ""))

    async def close(self) -> None:
        children = self._idle + list(self._busy)
        self._idle.clear()
        await asyncio.gather(*(c.close() for c in children), return_exceptions=True)


#: Callables that carry the name they are imported by (a partial or a callable object do not).
_NAMED = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)


def _entrypoint_of(spec: JobSpec) -> str:
    func = spec.func
    module, qualname = (
        (func.__module__, func.__qualname__) if isinstance(func, _NAMED) else ("", "")
    )
    if not module or module == "__main__" or "<" in qualname:
        raise RemoteError(
            f"ConfigurationError: job '{spec.name}' uses executor=\"process\" but its function "
            "is not importable by name (define it at module level, outside __main__)"
        )
    return f"{module}:{qualname}"
