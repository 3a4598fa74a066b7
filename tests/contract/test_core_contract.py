"""The shipped core contract (chronctl.testing.core) over every backend, and over
the custom backend of `examples/spool_backend.py`, which implements only the core."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chronctl.backends.base import QueueBackend
from chronctl.testing.core import *  # noqa: F403
from tests.conftest import BACKEND_FACTORIES, CORE_ONLY_FACTORIES, open_backend


@pytest.fixture(params=sorted(BACKEND_FACTORIES | CORE_ONLY_FACTORIES))
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def backend(backend_name: str, tmp_path: Path) -> AsyncIterator[QueueBackend]:
    async with open_backend(backend_name, tmp_path) as instance:
        yield instance
