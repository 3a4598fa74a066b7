"""The Prometheus endpoint reports what really ran."""

from __future__ import annotations

import asyncio
import urllib.request

from chronctl import Scheduler
from chronctl.backends.base import QueueBackend
from chronctl.metrics import Metrics

from .test_engine import wait, waiter


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


async def test_metrics_count_runs_and_queue_depth(backend: QueueBackend) -> None:
    s = Scheduler(backend, workers=2, lease=5, shutdown_timeout=5)

    @s.job(max_retries=0)
    def flaky(ok: bool) -> None:
        if not ok:
            raise RuntimeError("no")

    s.job(name="later")(lambda: None)
    finished, _ = waiter(s, "task_failed")
    succeeded, _ = waiter(s, "task_succeeded", 2)
    metrics = Metrics(s, refresh=3600)
    async with s, metrics.serving(0) as port:
        for ok in (True, True, False):
            await s.enqueue("flaky", args=[ok])
        await s.enqueue("later", delay=3600)
        await wait(finished)
        await wait(succeeded)
        await metrics.update_gauges()
        text = await asyncio.to_thread(scrape, port)
    assert 'chronctl_tasks_total{job="flaky",status="succeeded"} 2.0' in text
    assert 'chronctl_tasks_total{job="flaky",status="dead"} 1.0' in text
    assert 'chronctl_task_duration_seconds_count{job="flaky"} 3.0' in text
    assert 'chronctl_queue_pending{queue="default"} 1.0' in text
    assert "chronctl_dead_letters 1.0" in text
