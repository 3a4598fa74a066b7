"""The systems' client modules (`python -m bench.peers.<system>_peer ROLE`).

Each module defines its library's app and a task named `task` whose body is
`bench.body`'s; the worker that runs it is the library's own command line
(bench/systems.py), started and timed by bench/measure.py. Nothing is imported
here: a system may run under another interpreter (arq's venv).
"""
