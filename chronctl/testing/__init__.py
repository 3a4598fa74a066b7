"""The backend contract as importable tests, for a backend written outside chronctl.

`chronctl.testing.core` holds what `chronctl run` needs of any backend: the
required core of `QueueBackend` (claim order, no double claims, settling a
delivery once, retries, release, queue sizes, wake-ups). Run it against yours
by importing its tests into a test module that provides a `backend` fixture
(needs pytest and pytest-asyncio in auto mode)::

    # test_my_backend.py
    import pytest
    from chronctl.testing.core import *  # noqa: F403

    @pytest.fixture
    async def backend(tmp_path):
        instance = MyBackend(tmp_path)
        await instance.connect()
        yield instance
        await instance.disconnect()

chronctl's own backends pass it as well as the full contract in the
repository's `tests/contract/` (history, dead letters, fire records, ...).
"""
