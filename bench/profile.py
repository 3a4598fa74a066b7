"""Profile one workload on one backend with cProfile: where does the time go?

    python -m bench.profile W1 sqlite [--tasks 20000] [--sort tottime] [--top 30]

cProfile sees the event loop's thread only; time spent on aiosqlite's thread
shows up as waiting (`select`/`_run_once`) on the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
from pathlib import Path

from . import library as w
from .harness import choose_backends


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("workload", choices=["W1", "W4"])
    parser.add_argument("backend", help="memory, sqlite or a backend URL")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--pending", type=int, default=100_000, help="W4 backlog")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=30)
    ns = parser.parse_args(argv)
    choice = choose_backends(ns.backend)[0]
    with tempfile.TemporaryDirectory(prefix="chronctl-profile-") as tmp:
        url = choice.url(Path(tmp))
        if ns.workload == "W1":
            coro = w.w1_throughput(url, n=ns.tasks, workers=ns.workers)
        else:
            coro = w.w4_scale(url, pending=ns.pending, n=ns.tasks, workers=ns.workers)
        profiler = cProfile.Profile()
        result = profiler.runcall(asyncio.run, coro)
    print(result)
    pstats.Stats(profiler).sort_stats(ns.sort).print_stats(ns.top)


if __name__ == "__main__":
    main()
