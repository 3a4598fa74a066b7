"""Workloads of the `chronctl` command itself (chronctl only, no peers): W5 idle
cost of a real `chronctl run`, W6 CLI start-up."""

from __future__ import annotations

import asyncio
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .harness import open_backend, process_cpu_seconds, process_rss_mb

# -- W5 --------------------------------------------------------------------------


def chronctl_argv() -> list[str]:
    """The installed `chronctl` script next to this interpreter, else `python -m chronctl`."""
    script = Path(sys.executable).parent / "chronctl"
    if script.exists():
        return [str(script)]
    found = shutil.which("chronctl")
    return [found] if found else [sys.executable, "-m", "chronctl"]


def write_idle_manifest(tmp: Path, backend_url: str, jobs: int) -> Path:
    """`jobs` cron jobs, all due about 12 hours from now, with an importable no-op."""
    (tmp / "bench_tasks.py").write_text("def noop():\n    return None\n")
    hour = (time.gmtime().tm_hour + 12) % 24
    lines = ["[scheduler]", f'backend = "{backend_url}"', "workers = 8", 'pythonpath = ["."]', ""]
    for i in range(jobs):
        lines += [
            f"[jobs.job{i}]",
            'entrypoint = "bench_tasks:noop"',
            f'cron = "{i % 60} {hour} * * *"',
            "",
        ]
    path = tmp / "idle.toml"
    path.write_text("\n".join(lines))
    return path


async def _drop_store(url: str) -> None:
    async with open_backend(url):  # leaving it drops the run's keys and queues
        pass


def w5_idle_cpu(
    tmp: Path, backend_url: str, *, jobs: int, seconds: float, warmup: float = 3.0
) -> dict[str, Any]:
    """CPU of a real `chronctl run` holding `jobs` cron jobs, none of them due."""
    manifest = write_idle_manifest(tmp, backend_url, jobs)
    log_path = tmp / "idle.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*chronctl_argv(), "run", str(manifest)], cwd=tmp, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while b"chronctl running" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chronctl run did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        time.sleep(warmup)  # the first pass writes every job's state row
        cpu0, wall0 = process_cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = process_cpu_seconds(proc.pid), time.monotonic()
        rss = process_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        asyncio.run(_drop_store(backend_url))  # the job rows it wrote, on a shared server
    used, wall = cpu1 - cpu0, wall1 - wall0
    return {
        "jobs": jobs,
        "seconds": wall,
        "cpu_s": used,
        "cpu_percent": 100 * used / wall,
        "rss_mb": rss,
        "exit_code": proc.returncode,
    }


# -- W6 --------------------------------------------------------------------------

#: Commands timed by W6: label -> argv after `chronctl` ({manifest} is filled in).
#: Global options (-f, --json) go before the subcommand, as the SPEC says.
CLI_COMMANDS: dict[str, list[str]] = {
    "--version": ["--version"],
    "jobs list --json": ["-f", "{manifest}", "--json", "jobs", "list"],
    # "tasks list --json": ["-f", "{manifest}", "--json", "tasks", "list"],
}


def write_cli_manifest(tmp: Path) -> Path:
    """Three jobs on an SQLite file that holds no tasks."""
    (tmp / "cli.db").touch(mode=0o600)
    path = tmp / "cli.toml"
    path.write_text(
        '[scheduler]\nbackend = "sqlite:///cli.db"\n\n'
        '[jobs.a]\ncommand = ["true"]\ncron = "0 2 * * *"\n\n'
        '[jobs.b]\ncommand = ["true"]\nevery = "30m"\n\n'
        '[jobs.c]\ncommand = ["true"]\n'
    )
    return path


def w6_cli_start(tmp: Path, *, repeat: int) -> dict[str, Any]:
    """Wall time of each CLI command: one untimed warm-up, then the median of `repeat`."""
    manifest = write_cli_manifest(tmp)
    out: dict[str, Any] = {"repeat": repeat}
    for label, args in CLI_COMMANDS.items():
        argv = [*chronctl_argv(), *(a.format(manifest=manifest) for a in args)]
        times = []
        for i in range(repeat + 1):
            t0 = time.perf_counter()
            result = subprocess.run(argv, cwd=tmp, capture_output=True, check=False)
            elapsed = time.perf_counter() - t0
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")
            if i:
                times.append(elapsed)
        key = label.strip("-").replace(" --json", "").replace(" ", "_")
        out[f"{key}_ms"] = 1000 * statistics.median(times)
        out[f"{key}_min_ms"] = 1000 * min(times)
    return out
