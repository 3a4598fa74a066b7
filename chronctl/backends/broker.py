"""BrokerBackend: the half of a broker backend that is the same for every broker.

A broker backend keeps its tasks, history, job state and heartbeats in a
`BrokerStateStore` (SQLite, Redis, PostgreSQL) and uses the broker only to deliver work.
Everything that does not touch delivery is therefore the state store's answer,
forwarded here once, so a broker backend (`RabbitMQBackend`, or a future one)
writes only delivery: connect/disconnect, enqueue, record_fire, dequeue,
acknowledge, reject, release, extend_leases, recover_expired, next_due and
health_check. It overrides a forward only when the broker must hear of the change
too (RabbitMQ republishes after `retry_dead`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ..errors import BackendError
from ..models import JobState, Process, Run, Task, TaskStatus
from ..schedules import Schedule
from .base import BrokerStateStore, QueueBackend, QueueInfo


class BrokerBackend(QueueBackend):
    """Base class of a backend whose work a message broker delivers."""

    #: The broker's name, for the refusal of a store that cannot be its state store.
    broker_name = "broker"

    def __init__(self, state: QueueBackend) -> None:
        super().__init__()
        self._store = state
        self.schedules_changed = state.schedules_changed  # the store hears of changes

    @property
    def state(self) -> BrokerStateStore:
        """The state store; see `check_state`."""
        return self.check_state()

    def check_state(self) -> BrokerStateStore:
        """The state store, or BackendError if it cannot track publishing (memory).

        Such a store is accepted when constructed, so a manifest naming it still
        loads for `validate`, and refused on first use: `connect` asks before it
        dials the broker."""
        store = self._store
        if not isinstance(store, BrokerStateStore):
            raise BackendError(
                f"{store.display_url or type(store).__name__} cannot be the state store of "
                f"a {self.broker_name} backend (it cannot track what was published); "
                "use sqlite:// (one host) or redis:// (several hosts)"
            )
        return store

    async def connect_state(self) -> None:
        """Open the state store and have it track publishing (`prepare_for_broker`)."""
        await self.state.connect()
        await self.state.prepare_for_broker()

    async def disconnect_state(self) -> None:
        """Close the state store; also one that `state` refuses, as it was accepted."""
        await self._store.disconnect()

    def not_created(self) -> bool:
        return self._store.not_created()

    # -- the queue: counts live in the state store ------------------------------------
    async def get_queue_size(self, queue: str = "default") -> int:
        return await self.state.get_queue_size(queue)

    async def clear(self, queue: str | None = None) -> int:
        # The broker's messages for the deleted tasks are dropped when delivered (the task is
        # gone); purging the broker queue here could race with a concurrent enqueue.
        return await self.state.clear(queue)

    # -- state: delegated -------------------------------------------------------------
    async def get_task(self, task_id: str) -> Task | None:
        return await self.state.get_task(task_id)

    async def list_tasks(
        self,
        *,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        job: str | None = None,
        queue: str | None = None,
        limit: int | None = 100,
    ) -> list[Task]:
        return await self.state.list_tasks(status=status, job=job, queue=queue, limit=limit)

    async def cancel_task(self, task_id: str) -> bool:
        return await self.state.cancel_task(task_id)

    async def history(self, job: str | None = None, limit: int | None = 50) -> list[Run]:
        return await self.state.history(job, limit)

    async def retry_dead(self, task_ids: Sequence[str] | None = None) -> int:
        return await self.state.retry_dead(task_ids)

    async def purge_dead(
        self,
        older_than: float | None = None,
        *,
        limit: int | None = None,
        job: str | None = None,
        exclude_jobs: Collection[str] = (),
    ) -> int:
        return await self.state.purge_dead(
            older_than, limit=limit, job=job, exclude_jobs=exclude_jobs
        )

    async def cleanup(
        self,
        older_than: float,
        statuses: Sequence[TaskStatus] | None = None,
        *,
        limit: int | None = None,
        job: str | None = None,
        exclude_jobs: Collection[str] = (),
    ) -> int:
        return await self.state.cleanup(
            older_than, statuses, limit=limit, job=job, exclude_jobs=exclude_jobs
        )

    async def count_dead(self) -> int:
        return await self.state.count_dead()

    async def get_note(self, name: str) -> str | None:
        return await self.state.get_note(name)

    async def set_note(self, name: str, value: str) -> None:
        await self.state.set_note(name, value)

    async def list_queues(self) -> list[QueueInfo]:
        return await self.state.list_queues()

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        await self.state.set_queue_paused(queue, paused)

    async def job_state(self, job: str, now: float) -> JobState:
        return await self.state.job_state(job, now)

    async def list_job_states(self) -> list[JobState]:
        return await self.state.list_job_states()

    async def set_job_paused(self, job: str, paused: bool) -> None:
        await self.state.set_job_paused(job, paused)

    async def list_schedules(self) -> list[Schedule]:
        return await self.state.list_schedules()

    async def get_schedule(self, name: str) -> Schedule | None:
        return await self.state.get_schedule(name)

    async def put_schedule(self, schedule: Schedule, *, create: bool) -> bool:
        return await self.state.put_schedule(schedule, create=create)

    async def delete_schedule(self, name: str) -> bool:
        return await self.state.delete_schedule(name)

    async def schedules_version(self) -> int:
        return await self.state.schedules_version()

    async def beat(self, process: Process) -> None:
        await self.state.beat(process)

    async def list_processes(self) -> list[Process]:
        return await self.state.list_processes()

    async def forget_process(self, process_id: str) -> None:
        await self.state.forget_process(process_id)

    async def import_tasks(self, tasks: Sequence[Task]) -> int:
        return await self.state.import_tasks(tasks)

    async def import_runs(self, runs: Sequence[Run]) -> int:
        return await self.state.import_runs(runs)

    async def import_job_states(self, states: Sequence[JobState]) -> int:
        return await self.state.import_job_states(states)

    async def count_active(self, job: str) -> int:
        return await self.state.count_active(job)
