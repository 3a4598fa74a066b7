"""chronctl benchmark suite (issue 7): `python -m bench --help`.

Workloads W1-W6 measure one process on this machine against each backend
named by `--backends` (a name from `harness.BACKENDS` or a backend URL).
Speed lives here, never in tests: the test suite asserts outcomes only.
"""
