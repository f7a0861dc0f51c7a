"""Group commit above the engine: small writes of one kind applied together.

A ``Batcher`` collects the items its callers submit on an event loop. While a
batch is being written, the items submitted meanwhile wait; when it has
committed they go together, as the next batch, to one call of the batch
function in one transaction (``Engine.write``). So the batches grow with the
load by themselves, and an idle server writes each item at once. A caller is
answered only after its batch has committed: acknowledged means committed.

If a batch fails, every item of it is written again alone (in its own unit of
work), so one failing item fails only its own caller. Batch functions must
therefore be safe to run twice, like every unit of work (``store/reports.py``).
A batch that fails because the storage cannot be used (``StoreUnavailableError``)
fails all its callers at once: no item caused it, and trying each alone would
only keep them waiting for the same answer.

Both engines use it for device reports (``record_device_reports``: a batch is
a few set-based statements, not a few statements per report). PostgreSQL,
whose engine runs each unit of work in its own transaction, also uses it to
group the other small device writes (``run_units``), as the SQLite writer
does for every unit of work.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Generic, TypeVar

from pushtrack.metrics import DEVICE_BATCH
from pushtrack.store.base import Engine, StoreUnavailableError, Tx

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")
T = TypeVar("T")

#: Most items one batch takes.
BATCH_MAX = 256


class _Waiting(Generic[I, R]):
    """One event loop's queue, and how many of its batches are being written."""

    __slots__ = ("queue", "running", "tasks")

    def __init__(self) -> None:
        self.queue: list[tuple[I, asyncio.Future[R]]] = []
        self.running = 0
        self.tasks: set[asyncio.Task[None]] = set()


class Batcher(Generic[I, R]):
    """Submit items; ``apply(tx, items)`` writes a batch and answers each item in order."""

    def __init__(
        self,
        engine: Engine,
        apply: Callable[[Tx, Sequence[I]], Sequence[R]],
        *,
        in_flight: int = 1,
        most: int = BATCH_MAX,
        statements_whole: bool = False,
    ) -> None:
        self.engine = engine
        self._apply = apply
        #: Each statement ``apply`` runs is whole by itself (``Engine.write_batch``).
        self._whole = statements_whole
        self._in_flight = in_flight
        self._most = most
        # Callers on several event loops (tests) keep to their own loop's queue.
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Waiting[I, R]] = (
            weakref.WeakKeyDictionary()
        )

    async def submit(self, item: I) -> R:
        """Write ``item`` with whatever else is waiting; its answer once that committed."""
        loop = asyncio.get_running_loop()
        waiting = self._loops.get(loop)
        if waiting is None:
            waiting = self._loops[loop] = _Waiting()
        future: asyncio.Future[R] = loop.create_future()
        waiting.queue.append((item, future))
        if waiting.running < self._in_flight:
            waiting.running += 1
            task = loop.create_task(self._drain(waiting))
            waiting.tasks.add(task)
            task.add_done_callback(waiting.tasks.discard)
        return await future

    async def _drain(self, waiting: _Waiting[I, R]) -> None:
        try:
            while waiting.queue:
                batch = waiting.queue[: self._most]
                del waiting.queue[: self._most]
                await self._write(batch)
        finally:
            waiting.running -= 1

    async def _write(self, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            answers = await self.engine.write_batch(
                partial(_apply, self._apply, items), statements_whole=self._whole
            )
        except StoreUnavailableError as exc:
            for _, future in batch:
                _fail(future, exc)
            return
        except Exception as exc:  # noqa: BLE001 - handed to the callers
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            # Someone's item failed the batch: each alone, so it fails only its caller.
            await asyncio.gather(*(self._write([one]) for one in batch))
            return
        except BaseException:  # cancelled: the loop is going away
            for _, future in batch:
                future.cancel()
            raise
        DEVICE_BATCH.observe(len(batch))
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():  # its caller may have gone away
                future.set_result(answer)


def _apply(
    apply: Callable[[Tx, Sequence[I]], Sequence[R]], items: Sequence[I], tx: Tx
) -> Sequence[R]:
    return apply(tx, items)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def run_units(tx: Tx, items: Sequence[Callable[[Tx], T]]) -> list[T]:
    """A batch of ordinary units of work, one after the other in one transaction."""
    return [unit(tx) for unit in items]
