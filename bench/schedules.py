"""Schedules at scale (issue 17): 10,000 stored runtime schedules on one backend.

    python -m bench.schedules --backends sqlite,redis,postgres --count 10000 --seconds 60

Per backend, on a fresh store (an SQLite file in a temporary directory, a Redis
key prefix or a PostgreSQL schema of the run's own, deleted afterwards; see
bench/harness.py):

1. store: `--count` runtime schedules of one manifest job (a no-op entrypoint,
   no trigger of its own), each a daily cron about 12 hours from now, so nothing
   fires during the run; built with `schedules.build` and stored one by one with
   `put_schedule(create=True)` from this process; the time it took.
2. W5-schedules: a real `chronctl run manifest.toml` process. Start-up is
   reported apart: the time until "chronctl running" is in its log, and the
   time and CPU until the loop has placed every schedule, read as the first
   three seconds in which the process used less than 10% of a core; the idle
   window's CPU is also kept per 10 s slice, so start-up leaking into it shows. Then its CPU over
   `--seconds` as % of one core (target: below 1%) and its RSS.
3. `chronctl -f manifest.toml schedules list` (and with `--json`), wall time of a
   subprocess, one untimed warm-up then the median of `--repeat` (target: below
   1 s), and its CPU time (user + sys, less at the mercy of a loaded machine);
   "not measured" when this chronctl has no `schedules` command.
4. propagation: with the run process idle, another schedule `every 1s` is stored
   from this process; the time from `put_schedule` returning to the first task of
   that schedule being in the store (polled every 10 ms), median of `--repeat`
   adds, nothing subtracted. Each probe schedule is removed afterwards and the
   run process let settle before the next add. The run process's CPU per change
   (it re-reads every stored schedule when the version moves) is reported too.

`--profile DIR` records the run process with py-spy (raw format, 100 Hz,
non-blocking) during start-up and during the first propagation add, never during
the idle window, and prints where the samples went.

Prints a table and writes the results as JSON (`--out`, by default
bench/results/schedules-<stamp>.json). Figures taken on a busy machine are noise:
each result carries the load average at its start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chronctl import schedules
from chronctl.backends.base import QueueBackend
from chronctl.manifest import load_manifest

from .cli_workloads import chronctl_argv
from .harness import (
    choose_backends,
    machine_info,
    open_backend,
    process_cpu_seconds,
    process_rss_mb,
)

JOB = "report"
#: QUIET_S seconds in which the run process used less CPU than this per second: start-up
#: is over. One quiet second is not enough: under load, start-up stalls on a busy database
#: for a second and then goes on.
SETTLED_CPU_PER_S = 0.10
QUIET_S = 3.0
#: The idle window's CPU is also reported per slice this long (start-up leaking in shows).
SLICE_S = 10.0
SAMPLE_S = 0.25


def write_manifest(tmp: Path, backend_url: str) -> Path:
    """One job with a no-op entrypoint and no trigger: only stored schedules fire it."""
    (tmp / "bench_tasks.py").write_text("def noop(*args, **kwargs):\n    return None\n")
    path = tmp / "schedules.toml"
    path.write_text(
        f'[scheduler]\nbackend = "{backend_url}"\nworkers = 8\npythonpath = ["."]\n\n'
        f'[jobs.{JOB}]\nentrypoint = "bench_tasks:noop"\n'
    )
    return path


async def store_schedules(backend: QueueBackend, manifest: Path, count: int) -> dict[str, Any]:
    """`count` daily crons ~12 hours away, one put each, as an application would store them."""
    jobs = load_manifest(manifest).jobs
    hour = (time.gmtime().tm_hour + 12) % 24
    t0 = time.perf_counter()
    for i in range(count):
        schedule = schedules.build(
            f"customer-{i:05d}", JOB, jobs, cron=f"{i % 60} {hour} * * *", kwargs={"customer": i}
        )
        if not await backend.put_schedule(schedule, create=True):
            raise RuntimeError(f"schedule {schedule.name} was already stored: not a fresh store")
    took = time.perf_counter() - t0
    stored = len(await backend.list_schedules())
    if stored != count:
        raise RuntimeError(f"stored {count} schedules but the backend lists {stored}")
    return {"store_s": took, "store_per_s": count / took if took else float("nan")}


async def settle(pid: int, limit: float) -> tuple[float, bool]:
    """Wait for QUIET_S seconds in which `pid` used under SETTLED_CPU_PER_S of a core;
    returns the monotonic time they ended and whether they came before `limit` seconds."""
    samples = [(time.monotonic(), process_cpu_seconds(pid))]
    deadline = samples[0][0] + limit
    while time.monotonic() < deadline:
        await asyncio.sleep(SAMPLE_S)
        now = time.monotonic()
        samples.append((now, process_cpu_seconds(pid)))
        window = [s for s in samples if now - s[0] <= QUIET_S + SAMPLE_S / 2]
        if now - window[0][0] >= QUIET_S - SAMPLE_S / 2:
            used = window[-1][1] - window[0][1]
            if used < SETTLED_CPU_PER_S * (now - window[0][0]):
                return now, True
    return time.monotonic(), False


def start_profile(directory: Path | None, pid: int, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy recording `pid` into DIR/name.txt until stop_profile (None: not asked)."""
    if directory is None:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    argv = [spy, "record", "-r", "100", "--format", "raw", "--nonblocking", "-d", "3600"]
    argv += ["--pid", str(pid), "-o", str(directory / f"{name}.txt")]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profile(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        spy.wait(60)


#: Frames every sample shares (the CLI, asyncio, threads): left out of the summary.
TRUNK = ("typer/", "_click/", "asyncio/", "<module>", "chronctl/cli/", "threading.py")


def top_frames(path: Path, n: int = 25) -> list[tuple[float, str]]:
    """Frames of a raw py-spy file by the share of samples they appear in (inclusive)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        total += int(samples)
        for frame in set(stack.split(";")):
            if frame and not any(t in frame for t in TRUNK):
                counts[frame] += int(samples)
    return [(100 * c / total, f) for f, c in counts.most_common(n)] if total else []


def schedules_command_exists() -> bool:
    result = subprocess.run(
        [*chronctl_argv(), "schedules", "--help"], capture_output=True, check=False
    )
    return result.returncode == 0


def time_list(manifest: Path, count: int, repeat: int) -> dict[str, Any]:
    """Wall time of `schedules list` with and without --json: a warm-up, then `repeat`."""
    out: dict[str, Any] = {}
    for label, extra in (("list", []), ("list_json", ["--json"])):
        argv = [*chronctl_argv(), "-f", str(manifest), *extra, "schedules", "list"]
        times, cpu = [], []
        for i in range(repeat + 1):
            usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            result = subprocess.run(argv, cwd=manifest.parent, capture_output=True, check=False)
            elapsed = time.perf_counter() - t0
            usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")
            if i:
                times.append(elapsed)
                cpu.append(usage1.ru_utime + usage1.ru_stime - usage0.ru_utime - usage0.ru_stime)
            if extra and i == 0:
                listed = json.loads(result.stdout)
                if len(listed) != count:
                    raise RuntimeError(f"schedules list --json gave {len(listed)}, not {count}")
        out[f"{label}_ms"] = 1000 * statistics.median(times)
        out[f"{label}_min_ms"] = 1000 * min(times)
        out[f"{label}_max_ms"] = 1000 * max(times)
        out[f"{label}_cpu_ms"] = 1000 * statistics.median(cpu)  # less at the mercy of load
    return out


async def first_task_of(backend: QueueBackend, name: str, limit: float) -> Any:
    """The first task of schedule `name` to show up in the store (polled), or None."""
    deadline = time.monotonic() + limit
    prefix = f"{name}@"
    while time.monotonic() < deadline:
        for task in await backend.list_tasks(job=JOB, limit=50):
            if task.key is not None and task.key.startswith(prefix):
                return task
        await asyncio.sleep(0.01)
    return None


async def propagation(
    backend: QueueBackend, manifest: Path, pid: int, repeat: int, profile: Path | None = None
) -> dict[str, Any]:
    """Put an `every 1s` schedule; time until its first task is stored. `repeat` adds."""
    jobs = load_manifest(manifest).jobs
    took, fire_after_put, cpu_per_change = [], [], []
    for k in range(repeat):
        name = f"probe-{k}"
        schedule = schedules.build(name, JOB, jobs, every="1s")
        spy = start_profile(profile, pid, "change") if k == 0 else None
        if spy is not None:
            await asyncio.sleep(1.0)  # py-spy attached before the put
        cpu0 = process_cpu_seconds(pid)
        await backend.put_schedule(schedule, create=True)
        t_put, wall_put = time.perf_counter(), time.time()
        task = await first_task_of(backend, name, limit=60.0)
        if task is None:
            raise RuntimeError(f"no task of schedule {name} within 60 s of storing it")
        took.append(time.perf_counter() - t_put)
        if task.fire_time is not None:
            fire_after_put.append(task.fire_time - wall_put)
        await settle(pid, limit=30.0)
        cpu_per_change.append(process_cpu_seconds(pid) - cpu0)
        stop_profile(spy)
        await backend.delete_schedule(name)
        await settle(pid, limit=30.0)
    return {
        "propagation_ms": 1000 * statistics.median(took),
        "propagation_min_ms": 1000 * min(took),
        "propagation_max_ms": 1000 * max(took),
        "propagation_runs_ms": [1000 * t for t in took],
        "first_fire_after_put_ms": (
            1000 * statistics.median(fire_after_put) if fire_after_put else None
        ),
        "cpu_per_change_s": statistics.median(cpu_per_change),
        "adds": repeat,
    }


async def measure(label: str, url: str, tmp: Path, ns: argparse.Namespace) -> dict[str, Any]:
    manifest = write_manifest(tmp, url)
    out: dict[str, Any] = {"backend": label, "count": ns.count, "loadavg_start": os.getloadavg()}
    async with open_backend(url) as backend:
        out.update(await store_schedules(backend, manifest, ns.count))
        log_path = tmp / "run.log"
        t_spawn = time.monotonic()
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*chronctl_argv(), "run", str(manifest)],
                cwd=tmp,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            while b"chronctl running" not in log_path.read_bytes():
                if proc.poll() is not None or time.monotonic() - t_spawn > 120:
                    raise RuntimeError(
                        f"chronctl run did not start: {log_path.read_text()[-2000:]}"
                    )
                await asyncio.sleep(0.02)
            out["running_s"] = time.monotonic() - t_spawn
            profile = ns.profile / label if ns.profile else None
            spy = start_profile(profile, proc.pid, "startup")
            settled_at, settled = await settle(proc.pid, limit=ns.startup_limit)
            stop_profile(spy)
            out["startup_s"] = settled_at - t_spawn
            out["startup_cpu_s"] = process_cpu_seconds(proc.pid)
            out["startup_settled"] = settled
            cpu0, wall0 = process_cpu_seconds(proc.pid), time.monotonic()
            slices, mark = [], cpu0
            while (left := wall0 + ns.seconds - time.monotonic()) > 0:
                await asyncio.sleep(min(SLICE_S, left))
                slices.append(process_cpu_seconds(proc.pid) - mark)
                mark += slices[-1]
            cpu1, wall1 = process_cpu_seconds(proc.pid), time.monotonic()
            out["idle_slices_cpu_s"] = slices
            out["idle_seconds"] = wall1 - wall0
            out["idle_cpu_s"] = cpu1 - cpu0
            out["cpu_percent"] = 100 * (cpu1 - cpu0) / (wall1 - wall0)
            out["rss_mb"] = process_rss_mb(proc.pid)
            if schedules_command_exists():
                out.update(await asyncio.to_thread(time_list, manifest, ns.count, ns.repeat))
            else:
                out["list"] = "not measured: command not merged yet"
            out.update(await propagation(backend, manifest, proc.pid, ns.repeat, profile))
            out["rss_end_mb"] = process_rss_mb(proc.pid)
            if proc.poll() is not None:
                raise RuntimeError(f"chronctl run exited: {log_path.read_text()[-2000:]}")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            out["exit_code"] = proc.returncode
    out["loadavg_end"] = os.getloadavg()
    return out


def _fmt(value: Any, spec: str) -> str:
    if isinstance(value, int | float):
        return format(value, spec)
    return "-" if value is None else str(value)


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("store N schedules, s", "store_s", ".2f"),
        ("`chronctl running` after, s", "running_s", ".2f"),
        ("start-up until idle, s", "startup_s", ".2f"),
        ("start-up CPU, s", "startup_cpu_s", ".2f"),
        ("idle CPU, % of a core", "cpu_percent", ".3f"),
        ("RSS, MB", "rss_mb", ".1f"),
        ("`schedules list`, ms", "list_ms", ".0f"),
        ("`schedules list --json`, ms", "list_json_ms", ".0f"),
        ("`schedules list` CPU (user+sys), ms", "list_cpu_ms", ".0f"),
        ("`schedules list --json` CPU (user+sys), ms", "list_json_cpu_ms", ".0f"),
        ("propagation, ms (median)", "propagation_ms", ".0f"),
        ("propagation min / max, ms", None, ""),
        ("run-process CPU per change, s", "cpu_per_change_s", ".3f"),
        ("load average start / end (1 min)", None, ""),
    ]
    head = "| | " + " | ".join(r["backend"] for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for title, key, spec in rows:
        cells = []
        for r in results:
            if "error" in r:
                cells.append("error" if title.startswith("store") else "")
            elif title.startswith("propagation min"):
                cells.append(
                    f"{_fmt(r.get('propagation_min_ms'), '.0f')} / "
                    f"{_fmt(r.get('propagation_max_ms'), '.0f')}"
                )
            elif title.startswith("load"):
                cells.append(f"{r['loadavg_start'][0]:.2f} / {r['loadavg_end'][0]:.2f}")
            elif key is not None and key.startswith("list") and "list" in r:
                cells.append(r["list"])
            else:
                cells.append(_fmt(r.get(key) if key else None, spec))
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.schedules", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument("--backends", default="sqlite", help="sqlite,redis,postgres or backend URLs")
    p.add_argument("--count", type=int, default=10_000, help="stored schedules (10000)")
    p.add_argument("--seconds", type=float, default=60.0, help="idle CPU window (60)")
    p.add_argument("--repeat", type=int, default=5, help="list timings and propagation adds (5)")
    p.add_argument(
        "--startup-limit", type=float, default=120.0, help="longest wait for start-up to settle"
    )
    p.add_argument("--profile", type=Path, default=None, help="py-spy files go here")
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    p.add_argument("--tmpdir", type=Path, default=None, help="where the temporary stores go")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out_path = ns.out or Path(__file__).parent / "results" / f"schedules-{stamp}.json"
    results: list[dict[str, Any]] = []
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    for choice in choose_backends(ns.backends):
        with tempfile.TemporaryDirectory(prefix="chronctl-sched-", dir=ns.tmpdir) as tmp:
            print(f"{choice.label}: {ns.count} schedules, idle {ns.seconds:g} s", file=sys.stderr)
            try:
                result = asyncio.run(measure(choice.label, choice.url(Path(tmp)), Path(tmp), ns))
            except Exception as exc:  # one backend failing still reports the others
                result = {
                    "backend": choice.label,
                    "error": f"{type(exc).__name__}: {exc}",
                    "loadavg_start": os.getloadavg(),
                    "loadavg_end": os.getloadavg(),
                }
            results.append(result)
    report = {
        "command": [
            "python",
            "-m",
            "bench.schedules",
            *(argv if argv is not None else sys.argv[1:]),
        ],
        "machine": machine_info(),
        "uptime_start": uptime.strip(),
        "uptime_end": subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "results": results,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    for r in results:
        if "error" in r:
            print(f"{r['backend']}: {r['error']}")
    if ns.profile is not None:
        for path in sorted(ns.profile.glob("*/*.txt")):
            print(f"\n{path} (inclusive share of samples):")
            for share, frame in top_frames(path):
                print(f"  {share:5.1f}% {frame[:140]}")
    print(f"loaded machine? {report['uptime_start']} -> {report['uptime_end']}")
    print(f"results: {out_path}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
