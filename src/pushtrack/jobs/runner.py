"""The worker: claims due jobs from the store and runs their handlers.

Each claimed job runs under a lease that a heartbeat renews; if the lease is
lost (the job was cancelled, or this worker stalled past it and another took
over) the handler is cancelled. A handler returns a ``JobResult``: ``Done`` (with
a result) or ``Later`` (hand the job back, due at a time); or it raises: then the
job is tried again with backoff until ``max_attempts``, and marked failed after that.
On shutdown the worker stops claiming, cancels running handlers and hands
their jobs back at once, so another worker resumes them without waiting for
the lease to run out. Handlers must therefore be safe to run again from the
start: each records its progress in the store as it goes.

A storage fault (``StoreUnavailableError``: disk full, locked, PostgreSQL down or
restarting) is no job's failure: a handler that meets one is handed back to run
again shortly, without counting an attempt, and claims back off while it lasts.
Each kind of fault is logged once per ``FAULT_LOG_SECONDS`` with how often it was
met since, never as a traceback per poll or per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pushtrack.store import Store
from pushtrack.store.base import StoreUnavailableError
from pushtrack.store.jobs import Job, JobState

log = logging.getLogger("pushtrack.jobs")

#: A storage fault of one kind is logged at most once per this many seconds.
FAULT_LOG_SECONDS = 30.0
#: A job whose handler met a storage fault runs again this long after.
FAULT_RETRY_SECONDS = 5.0
#: Claims back off up to this long while the store cannot be used.
FAULT_MAX_WAIT_SECONDS = 5.0


class FaultLog:
    """One log line per storage fault kind per ``FAULT_LOG_SECONDS``, with a count."""

    def __init__(self, interval: float = FAULT_LOG_SECONDS) -> None:
        self.interval = interval
        self._seen: dict[str, tuple[float, int]] = {}

    def note(self, doing: str, exc: StoreUnavailableError) -> None:
        now = asyncio.get_running_loop().time()
        logged_at, missed = self._seen.get(exc.kind, (float("-inf"), 0))
        if now - logged_at >= self.interval:
            more = f" ({missed} more since the last line)" if missed else ""
            log.error("store unavailable while %s: %s%s", doing, exc, more)
            self._seen[exc.kind] = (now, 0)
        else:
            self._seen[exc.kind] = (logged_at, missed + 1)


@dataclass(frozen=True)
class Done:
    result: Any = None


@dataclass(frozen=True)
class Later:
    run_at: int  # microseconds UTC


#: What a handler returns: the job is done, or handed back until a time.
JobResult = Done | Later


class JobError(Exception):
    """A job's failure whose message may be shown to the caller (getResults' ``reason``);
    any other exception is reported there only as an internal error."""


def public_reason(exc: BaseException) -> str:
    if isinstance(exc, JobError):
        return str(exc)
    return "internal error (the service log has the details)"


Handler = Callable[[Job], Awaitable[JobResult]]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


@dataclass
class Worker:
    store: Store
    handlers: dict[str, Handler]
    owner: str = field(default_factory=worker_id)
    concurrency: int = 4
    lease_seconds: float = 30.0
    poll_seconds: float = 0.2
    max_attempts: int = 5
    #: First pause after a failed attempt; it doubles with each failure in a row.
    backoff_seconds: float = 2.0
    #: Pause before a job whose handler met a storage fault runs again (no attempt counted).
    fault_retry_seconds: float = FAULT_RETRY_SECONDS
    #: Called once when the worker stops (closing gateway connections, ...).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _running: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    #: A claim is in flight: jobs it took may be committed but not yet in ``_running``.
    _claiming: bool = False
    #: Claims made so far (a claim, its jobs and their release can all happen while
    #: ``run_until_idle`` reads when the next job is due).
    _claims: int = 0
    #: The claim loop has begun (what a subclass does before it, such as scheduling
    #: periodic jobs, is not yet idleness).
    _looping: bool = False
    #: Set when a running job ends (or the worker is told to stop): its slot is free, so
    #: the claim loop goes on at once instead of at its next poll.
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    #: Storage faults met, logged once per kind per interval.
    _faults: FaultLog = field(default_factory=FaultLog)

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run jobs until ``stop`` is set; then release what is in flight."""
        log.info("worker %s started (%s)", self.owner, ", ".join(sorted(self.handlers)))
        self._wake = asyncio.Event()  # of this run's event loop
        self._looping = True
        relay = asyncio.create_task(self._wake_on(stop))
        #: how long to wait after a claim the store could not take (doubling)
        backoff = 0.0
        try:
            while not stop.is_set():
                self._wake.clear()
                free = self.concurrency - len(self._running)
                claimed: list[Job] = []
                if free > 0:
                    self._claiming = True
                    try:
                        claimed = await self.store.jobs.claim(
                            self.owner, list(self.handlers), free, self.lease_seconds
                        )
                        backoff = 0.0
                    except StoreUnavailableError as exc:
                        self._faults.note("claiming jobs", exc)
                        backoff = min(FAULT_MAX_WAIT_SECONDS, max(self.poll_seconds, 2 * backoff))
                    except Exception:
                        log.exception("claiming jobs failed; retrying")
                for job in claimed:
                    self._running[job.id] = asyncio.create_task(self._run_one(job))
                if claimed:
                    self._claims += 1
                self._claiming = False
                if backoff:
                    # the store cannot be used: try again later, not at every poll
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), backoff)
                elif not claimed:
                    # every slot busy: until one frees; else until new jobs may be due
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        finally:
            relay.cancel()
            await self._release_all()
            for close in self.closers:
                try:
                    await close()
                except Exception:
                    log.exception("closing worker resources failed")
        log.info("worker %s stopped", self.owner)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def run_until_idle(self, max_seconds: float = 60.0, horizon: float = 5.0) -> None:
        """Run jobs until none runs and none is due within ``horizon`` seconds.

        For tests and one-shot command-line runs; gives up after ``max_seconds``.
        """
        stop = asyncio.Event()
        kinds = list(self.handlers)
        self._looping = False

        async def watch() -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max_seconds
            while loop.time() < deadline:
                await asyncio.sleep(self.poll_seconds)
                if not self._looping or self._running or self._claiming:
                    continue
                claims = self._claims
                due = await self.store.jobs.next_due(kinds)
                if self._running or self._claiming or self._claims != claims:
                    continue  # a claim committed meanwhile: its lease is not "idle"
                if due is None or due > self.store.clock() + int(horizon * 1e6):
                    break
            stop.set()

        watcher = asyncio.create_task(watch())
        await self.run(stop)
        await watcher

    async def _run_one(self, job: Job) -> None:
        beat = asyncio.create_task(self._heartbeat(job))
        try:
            try:
                result = await self.handlers[job.kind](job)
            except asyncio.CancelledError:
                raise
            except StoreUnavailableError as exc:
                # not the job's failure: it runs again once the store may be back
                self._faults.note(f"running {job.kind} jobs", exc)
                retry_at = self.store.clock() + int(self.fault_retry_seconds * 1e6)
                await self.store.jobs.reschedule(job.id, self.owner, retry_at)
            except Exception as exc:  # noqa: BLE001 - any other handler fault is a failed attempt
                await self._failed_attempt(job, exc)
            else:
                if isinstance(result, Later):
                    await self.store.jobs.reschedule(job.id, self.owner, result.run_at)
                else:
                    await self.store.jobs.finish(job.id, self.owner, JobState.DONE, result.result)
        except StoreUnavailableError as exc:
            # the outcome could not be recorded: the job's lease runs out and it is
            # claimed again (handlers are safe to run again)
            self._faults.note(f"recording {job.kind} jobs", exc)
        finally:
            beat.cancel()
            self._running.pop(job.id, None)
            self._wake.set()

    async def _failed_attempt(self, job: Job, exc: Exception) -> None:
        if job.attempts >= self.max_attempts:
            log.error("job %s (%s) failed for good: %s", job.request_id, job.kind, exc)
            why = {"error": str(exc), "reason": public_reason(exc)}
            await self.store.jobs.finish(job.id, self.owner, JobState.FAILED, why)
            return
        delay = min(300.0, self.backoff_seconds * 2.0 ** (job.attempts - 1))
        delay *= 0.5 + random.random()
        log.warning(
            "job %s (%s) attempt %d failed: %s; again in %.1fs",
            job.request_id,
            job.kind,
            job.attempts,
            exc,
            delay,
        )
        await self.store.jobs.reschedule(
            job.id, self.owner, self.store.clock() + int(delay * 1e6), failed=True
        )

    async def _heartbeat(self, job: Job) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                ours = await self.store.jobs.heartbeat(job.id, self.owner, self.lease_seconds)
            except StoreUnavailableError as exc:
                self._faults.note("renewing job leases", exc)
                continue
            except Exception:
                log.exception("heartbeat for job %s failed", job.request_id)
                continue
            if not ours:
                log.warning("lost the lease on job %s; stopping it", job.request_id)
                task = self._running.get(job.id)
                if task:
                    task.cancel()
                return

    async def _release_all(self) -> None:
        tasks = dict(self._running)
        for task in tasks.values():
            task.cancel()
        for job_id, task in tasks.items():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                await self.store.jobs.reschedule(job_id, self.owner, self.store.clock())
