"""chronctl benchmark suite: `python -m bench --help`.

The real path (bench/measure.py): every system, chronctl included, runs its own
worker command in its own process and gets its tasks from a client process;
same task bodies, same completion signal, interleaved rounds, ratios within a
round. The in-process "library" workloads (bench/library.py) are kept apart.
Speed lives here, never in tests: the test suite asserts outcomes only.
"""
