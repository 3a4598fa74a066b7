"""Importable job functions for executor tests (the process executor imports by name)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any


def add(a: int, b: int) -> int:
    return a + b


def whoami() -> dict[str, Any]:
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


def chatty(n: int) -> int:
    print("this goes to stderr, not into the protocol")
    return n * 2


def boom(message: str) -> None:
    raise ValueError(message)


def sleepy(seconds: float, pidfile: str | None = None) -> str:
    if pidfile:
        with open(pidfile, "w") as fh:
            fh.write(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


async def async_sleepy(seconds: float) -> None:
    await asyncio.sleep(seconds)


def not_json() -> object:
    return object()
