"""Run one task's code: on the loop, in a thread, in a child process, or as a command.

Everything a task returns or raises crosses this module as JSON-able values
and strings, never as pickles: a child process can only be asked to run an
entrypoint by name, and only the worker decides which names are allowed (the
manifest's jobs).

Timeouts differ by executor because what can be stopped differs: a coroutine
is cancelled, a child process or shell command has its whole process group
killed (TERM, then KILL after `KILL_GRACE`), and a thread cannot be stopped
at all: its run is recorded as timed out and the thread is left to finish in
the background (use `executor = "process"` for code that must be killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from .jobs import JobSpec
from .models import Task

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

    def __init__(self, threads: int = 8, processes: int = 2) -> None:
        self._threads = ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix="chronctl-job"
        )
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
            loop = asyncio.get_running_loop()
            call = partial(func, *task.args, **task.kwargs)
            future = loop.run_in_executor(self._threads, call)
            result = await _with_timeout(future, spec.timeout)
            if inspect.isawaitable(result):  # a sync wrapper handed back a coroutine
                result = await _with_timeout(_await(result), spec.timeout)
        return ExecutionResult(result=ensure_json(result))

    async def shutdown(self, wait: bool = True) -> None:
        await self.processes.close()
        self._threads.shutdown(wait=wait, cancel_futures=True)


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


def _entrypoint_of(spec: JobSpec) -> str:
    func = spec.func
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise RemoteError(
            f"ConfigurationError: job '{spec.name}' uses executor=\"process\" but its function "
            "is not importable by name (define it at module level, outside __main__)"
        )
    return f"{module}:{qualname}"
