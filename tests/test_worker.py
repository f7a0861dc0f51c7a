"""The job worker over a real store: leases, retries, waiting and failing for good."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pushtrack.domain.jobs import DispatchParams, Params
from pushtrack.jobs.runner import Done, JobError, Later, Worker
from pushtrack.store import Store, open_store
from pushtrack.store.jobs import Job
from tests.support import run


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = open_store(database_url)
    yield s
    run(s.close())


def job_state(store: Store, request_id: str) -> Job:
    job = run(store.jobs.get(request_id, "default"))
    assert job is not None
    return job


def test_waiting_is_not_failing(store: Store) -> None:
    """A job that waits (Later) many times and then fails once is tried again."""
    calls: list[str] = []

    async def handler(job: Job) -> Done | Later:
        calls.append("call")
        if len(calls) <= 6:
            return Later(store.clock())
        if len(calls) == 7:
            raise RuntimeError("one bad moment")
        return Done({"calls": len(calls)})

    async def go() -> str:
        request_id = await store.jobs.enqueue("test", "default", Params())
        worker = Worker(
            store, {"test": handler}, poll_seconds=0.01, max_attempts=3, backoff_seconds=0.01
        )
        await worker.run_until_idle(20)
        return request_id

    request_id = run(go())
    job = job_state(store, request_id)
    assert job.state == "done"
    assert job.result == {"calls": 8}


def test_a_job_that_keeps_failing_ends_failed_with_its_error(store: Store) -> None:
    async def handler(job: Job) -> Done:
        raise ValueError("broken for good")

    async def go() -> str:
        request_id = await store.jobs.enqueue("test", "default", Params())
        worker = Worker(
            store, {"test": handler}, poll_seconds=0.01, max_attempts=3, backoff_seconds=0.01
        )
        await worker.run_until_idle(30)
        return request_id

    request_id = run(go())
    job = job_state(store, request_id)
    assert job.state == "failed"
    assert job.attempts == 3
    # the error for the log; for the caller, only that it was internal
    assert job.result == {
        "error": "broken for good",
        "reason": "internal error (the service log has the details)",
    }


def test_a_job_error_is_the_reason_the_caller_reads(store: Store) -> None:
    async def handler(job: Job) -> Done:
        raise JobError("the export file could not be written: Read-only file system")

    async def go() -> str:
        request_id = await store.jobs.enqueue("test", "default", Params())
        worker = Worker(store, {"test": handler}, poll_seconds=0.01, max_attempts=1)
        await worker.run_until_idle(30)
        return request_id

    job = job_state(store, run(go()))
    assert job.state == "failed"
    assert job.result["reason"] == "the export file could not be written: Read-only file system"


def test_stopping_hands_running_jobs_back_at_once(store: Store) -> None:
    started = asyncio.Event()

    async def handler(job: Job) -> Done:
        started.set()
        await asyncio.sleep(3600)
        return Done()

    async def go() -> str:
        request_id = await store.jobs.enqueue("test", "default", Params())
        worker = Worker(store, {"test": handler}, poll_seconds=0.01, lease_seconds=600)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(started.wait(), 10)
        stop.set()
        await asyncio.wait_for(task, 10)
        # another worker claims it straight away: the lease was handed back
        claimed = await store.jobs.claim("other", ["test"], 1, 60)
        assert [j.request_id for j in claimed] == [request_id]
        assert claimed[0].attempts == 1
        return request_id

    run(go())


def test_a_handler_reads_its_parameters_typed_and_refuses_ones_that_do_not_fit(
    store: Store,
) -> None:
    seen: list[DispatchParams] = []

    async def handler(job: Job) -> Done:
        seen.append(job.params_as(DispatchParams))
        return Done()

    class Other(Params, frozen=True, kw_only=True):
        message_id: str

    async def go() -> tuple[str, str]:
        good = await store.jobs.enqueue(
            "test", "default", DispatchParams(message_id=7, first=10, last=19)
        )
        bad = await store.jobs.enqueue("test", "default", Other(message_id="seven"))
        worker = Worker(store, {"test": handler}, poll_seconds=0.01, max_attempts=1)
        await worker.run_until_idle(20)
        return good, bad

    good, bad = run(go())
    assert seen == [DispatchParams(message_id=7, first=10, last=19)]
    assert job_state(store, good).state == "done"
    failed = job_state(store, bad)
    assert failed.state == "failed"
    assert "bad parameters: Expected `int`, got `str` - at `$.message_id`" in failed.result["error"]


def test_run_until_idle_waits_for_what_a_worker_does_before_its_loop(store: Store) -> None:
    """A worker that schedules a job before it starts claiming (as the service's worker
    makes sure its periodic jobs exist) is not idle until its loop has begun."""
    ran: list[str] = []

    async def handler(job: Job) -> Done:
        ran.append(job.request_id)
        return Done()

    class SchedulesFirst(Worker):
        async def run(self, stop: asyncio.Event) -> None:
            await asyncio.sleep(0.3)  # slower than the idle check's first look
            self.scheduled = await store.jobs.enqueue("test", "default", Params())
            await super().run(stop)

    worker = SchedulesFirst(store, {"test": handler}, poll_seconds=0.01)
    run(worker.run_until_idle(20))
    assert ran == [worker.scheduled]


def test_a_storage_fault_is_no_failed_attempt_and_is_logged_once(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler meeting the store unavailable (disk full, PostgreSQL restarting) far
    more often than ``max_attempts`` still ends done, and the log says so once."""
    import logging

    from pushtrack.store.base import StoreUnavailableError

    calls: list[int] = []

    async def handler(job: Job) -> Done:
        calls.append(job.attempts)
        if len(calls) <= 8:
            raise StoreUnavailableError("disk full", "database or disk is full")
        return Done({"calls": len(calls)})

    async def go() -> str:
        request_id = await store.jobs.enqueue("test", "default", Params())
        worker = Worker(
            store,
            {"test": handler},
            poll_seconds=0.01,
            max_attempts=3,
            backoff_seconds=0.01,
            fault_retry_seconds=0.01,
        )
        await worker.run_until_idle(30)
        return request_id

    with caplog.at_level(logging.INFO, logger="pushtrack.jobs"):
        request_id = run(go())
    job = job_state(store, request_id)
    assert job.state == "done"
    assert job.result == {"calls": 9}
    assert set(calls) == {1}  # every run was a first attempt
    faults = [r for r in caplog.records if "store unavailable" in r.getMessage()]
    assert len(faults) == 1, [r.getMessage() for r in faults]
    assert not any(r.exc_info for r in caplog.records)
