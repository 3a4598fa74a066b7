"""Prometheus metrics for `chronctl run --metrics-port N` (extra: chronctl[metrics]).

Counters and histograms are fed by the scheduler's events, so measuring
costs nothing on paths nobody watches; queue depths and dead letters are
read from the backend every `refresh` seconds, because other processes
change them too. So is what retention removed: any process of the backend
may have run the last pass (chronctl/retention.py), and its report is a note
on the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .backpressure import last_skip
from .errors import UsageError
from .retention import last_report

if TYPE_CHECKING:
    from .events import Event
    from .scheduler import Scheduler

log = logging.getLogger("chronctl.metrics")


def _client() -> Any:
    try:  # lazy: an optional extra, loaded only with --metrics-port
        import prometheus_client
    except ImportError:
        raise UsageError(
            "--metrics-port needs prometheus-client: pip install 'chronctl[metrics]'"
        ) from None
    return prometheus_client


class Metrics:
    def __init__(self, scheduler: Scheduler, registry: Any = None, refresh: float = 15.0) -> None:
        prom = _client()
        self.prom = prom
        self.registry = registry if registry is not None else prom.CollectorRegistry()
        self.scheduler = scheduler
        self.refresh = refresh
        r = self.registry
        self.tasks = prom.Counter(
            "chronctl_tasks", "Finished runs by job and outcome", ["job", "status"], registry=r
        )
        self.duration = prom.Histogram(
            "chronctl_task_duration_seconds",
            "Run durations",
            ["job"],
            registry=r,
            buckets=(0.005, 0.05, 0.25, 1, 5, 30, 120, 600, 3600),
        )
        self.lateness = prom.Histogram(
            "chronctl_fire_lateness_seconds",
            "How long after its scheduled time a fire was enqueued",
            ["job"],
            registry=r,
            buckets=(0.001, 0.01, 0.1, 0.5, 1, 5, 30, 60, 600),
        )
        self.missed = prom.Counter(
            "chronctl_fires_missed", "Fires past misfire_grace_time", ["job"], registry=r
        )
        self.skipped = prom.Counter(
            "chronctl_fires_skipped",
            "Fires skipped: reason paused, max_instances reached or queue full (max_pending)",
            ["job", "reason"],
            registry=r,
        )
        self.last_skip = prom.Gauge(
            "chronctl_job_last_skip_timestamp_seconds",
            "Fire time of the job's last skipped fire (queue full or max_instances; any process)",
            ["job"],
            registry=r,
        )
        self.pending = prom.Gauge("chronctl_queue_pending", "Pending tasks", ["queue"], registry=r)
        self.running = prom.Gauge("chronctl_queue_running", "Running tasks", ["queue"], registry=r)
        self.dead = prom.Gauge(
            "chronctl_dead_letters", "Tasks in the dead letter queue", registry=r
        )
        self.max_pending = prom.Gauge(
            "chronctl_queue_max_pending",
            "The queue's max_pending (queues with a limit only)",
            ["queue"],
            registry=r,
        )
        self.retention_last = prom.Gauge(
            "chronctl_retention_last_pass_timestamp_seconds",
            "When the last retention pass on this backend ended (any process)",
            registry=r,
        )
        self.retention_removed = prom.Gauge(
            "chronctl_retention_removed",
            "Rows retention removed on this backend since its first pass (any process): "
            "finished = finished tasks and history rows, dead = dead letters",
            ["kind"],
            registry=r,
        )
        events = scheduler.events
        events.on("task_succeeded", self._finished)
        events.on("task_failed", self._finished)
        events.on("job_fired", self._fired)
        events.on("job_missed", self._missed)
        events.on("job_skipped", self._skipped)

    def _finished(self, event: Event) -> None:
        task = event.task
        if task is None:
            return
        outcome = (
            "succeeded"
            if event.name == "task_succeeded"
            else ("retrying" if event.data.get("retry_at") else "dead")
        )
        self.tasks.labels(task.job, outcome).inc()
        if task.duration is not None:
            self.duration.labels(task.job).observe(task.duration)

    def _fired(self, event: Event) -> None:
        fire = event.data.get("fire_time")
        if event.job and fire is not None:
            self.lateness.labels(event.job).observe(max(0.0, time.time() - fire.timestamp()))

    def _missed(self, event: Event) -> None:
        if event.job:
            self.missed.labels(event.job).inc(event.data.get("count", 1))

    def _skipped(self, event: Event) -> None:
        if event.job:
            reason = event.data.get("reason", "")
            # A full queue's reason names its pending count: one label value, not one per count.
            if reason not in ("paused", "max_instances reached"):
                reason = "queue full"
            self.skipped.labels(event.job, reason).inc()

    async def update_gauges(self) -> None:
        backend = self.scheduler.backend
        queues = await backend.list_queues()
        limits = self.scheduler.limits
        for q in queues:
            self.pending.labels(q.name).set(q.pending)
            self.running.labels(q.name).set(q.running)
        for name in {q.name for q in queues} | set(limits.per_queue):
            limit = limits.max_pending(name)
            if limit is not None:
                self.max_pending.labels(name).set(limit)
        self.dead.set(await backend.count_dead())
        for spec in list(self.scheduler.jobs.values()):
            if spec.trigger is not None:
                skip = await last_skip(backend, spec.name)
                if skip is not None:
                    self.last_skip.labels(spec.name).set(skip.fire_time)
        report = await last_report(backend)
        if report is not None:
            self.retention_last.set(report.at)
            self.retention_removed.labels("finished").set(report.total_finished)
            self.retention_removed.labels("dead").set(report.total_dead)

    async def _poll(self) -> None:
        while True:
            try:
                await self.update_gauges()
            except Exception as exc:  # a backend hiccup must not stop the scheduler
                log.warning("metrics: cannot read queue sizes: %s", exc)
            await asyncio.sleep(self.refresh)

    @contextlib.asynccontextmanager
    async def serving(self, port: int, addr: str = "127.0.0.1") -> AsyncIterator[int]:
        """Expose /metrics on addr:port while the block runs; yields the bound port."""
        try:
            server, thread = self.prom.start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise UsageError(
                f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}"
            ) from None
        poller = asyncio.create_task(self._poll())
        log.info("metrics on http://%s:%d/metrics", addr, server.server_port)
        try:
            yield server.server_port
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
