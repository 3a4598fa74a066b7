"""on_failure targets for the CLI tests: each writes what it was given as one JSON line."""

from __future__ import annotations

import json


def alert(path: str, **facts: object) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(facts, sort_keys=True) + "\n")


def legacy_alert(path: str, job: str, task_id: str, error: str) -> None:
    """An alert written before `output` was passed: it must keep working."""
    with open(path, "a") as fh:
        fh.write(json.dumps({"job": job, "task_id": task_id, "error": error}) + "\n")
