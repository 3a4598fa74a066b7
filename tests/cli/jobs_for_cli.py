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


def record(path: str, token: str) -> str:
    """Append one line per run: the chaos test counts runs (and duplicates) from it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{token}\n".encode())
    finally:
        os.close(fd)
    return token


def kill_my_worker() -> None:
    """Crash the whole worker process, every time."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def tick(path: str) -> None:
    """Append the wall time of the run."""
    with open(path, "a") as fh:
        fh.write(f"{time.time()}\n")


class Unprintable(Exception):
    """An exception that cannot even describe itself."""

    def __str__(self) -> str:
        raise RuntimeError("no words")


def fail_unprintably() -> None:
    raise Unprintable()


async def fail_unprintably_async() -> None:
    raise Unprintable()


def hang(marker: str) -> str:
    """Code that never returns in time: leave a marker, then block its thread."""
    import threading

    Path(marker).write_text(str(os.getpid()))
    threading.Event().wait(600)
    return "woke up"
