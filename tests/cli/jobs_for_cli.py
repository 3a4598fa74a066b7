"""Job functions the CLI tests' manifests point at."""

from __future__ import annotations

import os
import time
from pathlib import Path


def crash_once(marker: str) -> str:
    """First run: leave a marker and hang (the test kills us). Later runs succeed."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        time.sleep(120)
        return "should have been killed"
    return "recovered"


def echo(value: object) -> object:
    return value


def fail(message: str = "boom") -> None:
    raise RuntimeError(message)
