"""Executors run each kind of job and stop the ones that overrun."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import pytest

from chronctl import executors as ex
from chronctl.jobs import JobSpec
from chronctl.models import Task

from . import jobfuncs


@pytest.fixture
async def executors(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ex.Executors]:
    monkeypatch.setattr(ex, "KILL_GRACE", 0.5)
    pool = ex.Executors(threads=2, processes=1)
    yield pool
    await pool.shutdown()


def spec(name: str = "job", **fields: object) -> JobSpec:
    return JobSpec(name=name, **fields)  # type: ignore[arg-type]


def task(*args: object, **kwargs: object) -> Task:
    return Task(job="job", args=list(args), kwargs=dict(kwargs))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): look at its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


async def wait_dead(pid: int) -> bool:
    for _ in range(200):
        if not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_async_job_runs_on_the_loop(executors: ex.Executors) -> None:
    out = await executors.run(spec(func=jobfuncs.async_add), task(2, b=3))
    assert out.result == 5


async def test_sync_job_runs_in_a_worker_thread(executors: ex.Executors) -> None:
    out = await executors.run(spec(func=jobfuncs.whoami), task())
    assert out.result["pid"] == os.getpid()
    assert out.result["thread"].startswith("chronctl-job")


async def test_process_job_runs_in_a_child_with_json_args(executors: ex.Executors) -> None:
    job = spec(entrypoint="tests.jobfuncs:whoami", executor="process")
    first = (await executors.run(job, task())).result
    second = (await executors.run(job, task())).result
    assert first["pid"] != os.getpid()
    assert first["pid"] == second["pid"]  # the child is reused
    added = await executors.run(
        spec(entrypoint="tests.jobfuncs:add", executor="process"), task(2, b=40)
    )
    assert added.result == 42


async def test_process_job_may_print_without_breaking_the_protocol(executors: ex.Executors) -> None:
    job = spec(entrypoint="tests.jobfuncs:chatty", executor="process")
    assert (await executors.run(job, task(21))).result == 42


async def test_process_job_error_carries_the_remote_traceback(executors: ex.Executors) -> None:
    job = spec(entrypoint="tests.jobfuncs:boom", executor="process")
    with pytest.raises(ex.RemoteError) as info:
        await executors.run(job, task("disk full"))
    assert str(info.value) == "ValueError: disk full"
    assert "in boom" in info.value.remote_traceback


async def test_process_job_timeout_kills_the_child(executors: ex.Executors, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    ok = spec(entrypoint="tests.jobfuncs:add", executor="process")
    # A warm pool first: on a loaded machine, starting the child alone can take longer
    # than the timeout, and the sleeper would time out before it wrote its pid.
    assert (await executors.run(ok, task(1, 1))).result == 2
    job = spec(entrypoint="tests.jobfuncs:sleepy", executor="process", timeout=2)
    with pytest.raises(ex.TaskTimeout, match=r"timed out after 2s"):
        await executors.run(job, task(60, str(pidfile)))
    assert await wait_dead(int(pidfile.read_text()))
    # The pool replaces the killed child.
    assert (await executors.run(ok, task(1, 1))).result == 2


async def test_async_job_timeout_cancels_it(executors: ex.Executors) -> None:
    job = spec(func=jobfuncs.async_sleepy, timeout=0.2)
    with pytest.raises(ex.TaskTimeout, match=r"timed out after 0.2s"):
        await executors.run(job, task(60))


async def test_result_must_be_json(executors: ex.Executors) -> None:
    with pytest.raises(ex.ResultNotJSON, match="not JSON-serialisable"):
        await executors.run(spec(func=jobfuncs.not_json), task())


async def test_shell_job_gets_args_env_cwd_and_keeps_output(
    executors: ex.Executors, tmp_path: Path
) -> None:
    job = spec(
        command=["sh", "-c", 'echo "$GREETING $1 $(pwd)"; echo oops >&2', "sh"],
        env={"GREETING": "hello"},
        cwd=str(tmp_path),
    )
    out = await executors.run(job, task("world"))
    assert out.output == f"hello world {tmp_path}\noops\n"


async def test_shell_job_nonzero_exit_is_a_failure_with_output(executors: ex.Executors) -> None:
    job = spec(command=["sh", "-c", "echo about to fail; exit 3"])
    with pytest.raises(ex.ShellCommandFailed, match="command exited with status 3") as info:
        await executors.run(job, task())
    assert info.value.output == "about to fail\n"


async def test_shell_output_keeps_only_the_tail(executors: ex.Executors) -> None:
    job = spec(command=[sys.executable, "-c", "import sys; sys.stdout.write('x' * 200000 + 'END')"])
    out = await executors.run(job, task())
    assert out.output is not None
    assert len(out.output) == ex.OUTPUT_TAIL and out.output.endswith("END")


async def test_shell_timeout_kills_the_whole_process_group(
    executors: ex.Executors, tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild"
    # The grandchild ignores nothing, but only dies if the group is signalled.
    job = spec(command=["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=0.5)
    with pytest.raises(ex.TaskTimeout, match=r"timed out after 0.5s"):
        await executors.run(job, task())
    assert await wait_dead(int(pidfile.read_text()))


async def test_shell_command_that_ignores_term_is_killed(
    executors: ex.Executors, tmp_path: Path
) -> None:
    job = spec(
        command=["sh", "-c", "trap '' TERM; echo $$ > pid; sleep 60 & wait; sleep 60"],
        cwd=str(tmp_path),
        timeout=0.3,
    )
    with pytest.raises(ex.TaskTimeout):
        await executors.run(job, task())
    assert await wait_dead(int((tmp_path / "pid").read_text()))


async def test_missing_command_is_a_clear_failure(executors: ex.Executors) -> None:
    with pytest.raises(ex.ShellCommandFailed, match="status 127") as info:
        await executors.run(spec(command=["/nonexistent/backup.sh"]), task())
    assert "cannot start '/nonexistent/backup.sh'" in (info.value.output or "")


def pool_threads(pool: ex.ThreadPool) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{pool.name}_")]


def new_pool(request: pytest.FixtureRequest, size: int, **options: int) -> ex.ThreadPool:
    return ex.ThreadPool(size, name=f"pool-{request.node.name}", **options)  # type: ignore[arg-type]


async def wait_for(check: Callable[[], bool]) -> bool:
    for _ in range(200):
        if check():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_a_timed_out_thread_is_replaced_so_its_slot_runs_the_next_call(
    request: pytest.FixtureRequest,
) -> None:
    pool = new_pool(request, 1)
    release = threading.Event()
    try:
        with pytest.raises(ex.TaskTimeout, match=r"timed out after 0\.1s"):
            await pool.run(lambda: release.wait(30), 0.1, "stuck")
        assert pool.abandoned == 1
        assert await pool.run(lambda: threading.current_thread().name, 5) != f"{pool.name}_0"
        assert all(t.daemon for t in pool_threads(pool))  # never joined at exit
    finally:
        release.set()
    assert await wait_for(lambda: pool.abandoned == 0)  # it finished and ended: pool full
    await pool.shutdown()
    assert await wait_for(lambda: not pool_threads(pool))


async def test_past_the_cap_no_thread_replaces_a_stuck_one_until_one_finishes(
    request: pytest.FixtureRequest,
) -> None:
    pool = new_pool(request, 1, max_abandoned=1)
    release = threading.Event()
    ran: list[str] = []
    try:
        for _ in range(2):
            with pytest.raises(ex.TaskTimeout):
                await pool.run(lambda: release.wait(30), 0.1, "stuck")
        assert pool.abandoned == 2 and len(pool_threads(pool)) == 2  # one replacement, not two
        # No thread is free: a call times out unstarted, and never starts later.
        with pytest.raises(ex.TaskTimeout):
            await pool.run(lambda: ran.append("late"), 0.2)
    finally:
        release.set()
    assert await wait_for(lambda: pool.abandoned == 0)  # one rejoins, the other ends
    assert await pool.run(lambda: "served", 5) == "served"
    assert ran == [] and len(pool_threads(pool)) == 1
    await pool.shutdown()


async def test_a_cancelled_run_abandons_its_thread_too(request: pytest.FixtureRequest) -> None:
    pool = new_pool(request, 1)
    release = threading.Event()
    run = asyncio.create_task(pool.run(lambda: release.wait(30), None, "stuck"))
    assert await wait_for(lambda: bool(pool._running))
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert pool.abandoned == 1
    assert await pool.run(lambda: 42, 5) == 42
    await pool.shutdown()  # returns at once: the stuck thread is not waited for
    release.set()


async def test_a_failing_call_is_not_taken_for_a_stuck_one(request: pytest.FixtureRequest) -> None:
    pool = new_pool(request, 1)
    for _ in range(50):
        with pytest.raises(ValueError):
            await pool.run(partial(int, "x"), 5)
    assert pool.abandoned == 0 and len(pool_threads(pool)) == 1
    await pool.shutdown()


async def test_sys_exit_in_a_thread_job_fails_the_task_not_the_worker(
    executors: ex.Executors,
) -> None:
    with pytest.raises(ex.RemoteError, match=r"^SystemExit: 3$"):
        await executors.run(spec(func=partial(sys.exit, 3)), task())
    assert (await executors.run(spec(func=jobfuncs.whoami), task())).result["pid"] == os.getpid()
