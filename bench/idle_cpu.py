"""CPU used by an idle scheduler holding many jobs (the firing loop must sleep, not poll).

    python bench/idle_cpu.py --jobs 1000 --seconds 10

Prints the CPU seconds the process used per wall second while no job was due
(0.01 means 1% of one core). Numbers depend on the machine: note it with them.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from pathlib import Path

from chronctl import Scheduler
from chronctl.backends import SQLiteBackend


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main(jobs: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scheduler = Scheduler(SQLiteBackend(Path(tmp) / "bench.db"), workers=8)
        hour = (time.gmtime().tm_hour + 12) % 24  # far from now: nothing fires during the run
        for i in range(jobs):
            scheduler.job(name=f"job{i}", cron=f"{i % 60} {hour} * * *")(lambda: None)
        await scheduler.start()
        await asyncio.sleep(1)  # let the first pass (job state rows) settle
        cpu0, wall0 = cpu(), time.monotonic()
        await asyncio.sleep(seconds)
        used, wall = cpu() - cpu0, time.monotonic() - wall0
        await scheduler.stop()
    print(f"jobs={jobs} idle for {wall:.1f}s: cpu {used:.3f}s = {100 * used / wall:.2f}% of a core")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    ns = parser.parse_args()
    asyncio.run(main(ns.jobs, ns.seconds))
