"""Shared fixtures: backends for the contract suite, and service checks.

A backend that needs a server skips with a reason when the server is
unreachable, unless CHRONCTL_REQUIRE_SERVICES=1 (CI), where it fails.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from chronctl.backends.base import QueueBackend

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REQUIRE_SERVICES = os.environ.get("CHRONCTL_REQUIRE_SERVICES") == "1"


def need_service(name: str, reachable: bool, why: str) -> None:
    """Skip (or, in CI, fail) a test whose server is down."""
    if reachable:
        return
    message = f"{name} unreachable: {why}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (CHRONCTL_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def _memory(tmp_path: Path) -> QueueBackend:
    from chronctl.backends.memory import MemoryBackend

    return MemoryBackend()


def _sqlite(tmp_path: Path) -> QueueBackend:
    from chronctl.backends.sqlite import SQLiteBackend

    return SQLiteBackend(tmp_path / "contract.db")


BACKEND_FACTORIES: dict[str, Callable[[Path], QueueBackend]] = {
    "memory": _memory,
    "sqlite": _sqlite,
}


@pytest.fixture(params=sorted(BACKEND_FACTORIES))
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def backend(backend_name: str, tmp_path: Path) -> AsyncIterator[QueueBackend]:
    instance = BACKEND_FACTORIES[backend_name](tmp_path)
    await instance.connect()
    try:
        yield instance
    finally:
        await instance.disconnect()
