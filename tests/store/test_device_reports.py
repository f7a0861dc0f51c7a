"""Device reports arriving together are written together, and still each exactly once.

Many reports in flight at once (as a busy server has them) end up in shared
batches; whatever the batching, every delivery gets at most one event per
status, the counters agree with the events, and each caller gets its own answer.
A unit that fails inside a batch fails only its own caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pushtrack.domain.status import Status
from pushtrack.store import ConflictError, Store, open_store
from pushtrack.store.base import DeviceIn, MessagePlan, Targeting, Tx
from pushtrack.store.batch import Batcher
from tests.support import run


def _deliveries(store: Store, n: int) -> list[tuple[str, str]]:
    """A tracked app with one message to ``n`` devices; their (hwid, hash) pairs."""

    async def go() -> None:
        app = await store.create_app("acc", "reports")
        for i in range(n):
            await store.register_device(app, DeviceIn(f"hw-{i}", 1, push_token=f"t{i}"))
        plan = MessagePlan(
            notification={"content": "hi"},
            targeting=Targeting(devices=tuple(f"hw-{i}" for i in range(n))),
            send_at=store.clock(),
        )
        await store.create_messages(app, [plan])

    run(go())
    rows = store.engine.read_sync(
        lambda tx: tx.all("SELECT hwid, hash FROM deliveries ORDER BY id")
    )
    return [(r[0], r[1]) for r in rows]


def _count(store: Store, sql: str) -> int:
    row = store.engine.read_sync(lambda tx: tx.one(sql))
    assert row is not None
    return int(row[0] or 0)


def test_concurrent_reports_each_count_once(database_url: str) -> None:
    store = open_store(database_url)
    try:
        pairs = _deliveries(store, 40)

        async def report_all() -> list[bool]:
            (app,) = await store.list_apps("acc")
            other = await store.create_app("acc", "other")
            calls = []
            for hwid, p in pairs:
                # each delivery: opened three times, confirmed twice, all at once
                calls += [store.record_device_report(app, hwid, p, Status.OPENED)] * 3
                calls += [store.record_device_report(app, hwid, p, Status.DELIVERED)] * 2
            calls.append(store.record_device_report(app, "hw-0", "no-such-hash", Status.OPENED))
            calls.append(store.record_device_report(other, "hw-1", pairs[1][1], Status.OPENED))
            return list(await asyncio.gather(*calls))

        answers = run(report_all())
        assert answers == [True] * (5 * len(pairs)) + [False, False]
        assert _count(store, "SELECT COUNT(*) FROM events WHERE status = 5") == len(pairs)
        assert _count(store, "SELECT COUNT(*) FROM events WHERE status = 3") == len(pairs)
        assert _count(store, "SELECT COUNT(DISTINCT delivery_id) FROM events") == len(pairs)
        assert _count(store, "SELECT SUM(opens) FROM counters") == len(pairs)
        assert _count(store, "SELECT SUM(deliveries) FROM counters") == len(pairs)
        assert _count(store, "SELECT SUM(opens) FROM counters_minute") == len(pairs)
        # and again, later: nothing more is recorded
        (hwid, p) = pairs[0]
        app = run(store.list_apps("acc"))[0]
        assert run(store.record_device_report(app, hwid, p, Status.OPENED)) is True
        assert _count(store, "SELECT COUNT(*) FROM events WHERE status = 5") == len(pairs)
    finally:
        run(store.close())


def _add_accounts(tx: Tx, items: Sequence[str]) -> list[int]:
    ids = []
    for name in items:
        if name.startswith("bad"):
            raise ConflictError(f"{name} refused")
        row = tx.one(
            "INSERT INTO accounts (name, created_at) VALUES (?, ?) RETURNING id", (name, tx.now())
        )
        assert row is not None
        ids.append(int(row[0]))
    return ids


def test_a_failing_item_fails_only_its_caller(database_url: str) -> None:
    store = open_store(database_url)
    batcher: Batcher[str, int] = Batcher(store.engine, _add_accounts)
    names = [f"acc-{i}" for i in range(30)]
    names.insert(7, "bad-1")
    names.insert(20, "bad-2")

    async def submit_all() -> list[int | BaseException]:
        return await asyncio.gather(*(batcher.submit(n) for n in names), return_exceptions=True)

    try:
        answers = run(submit_all())
        for name, answer in zip(names, answers, strict=True):
            if name.startswith("bad"):
                assert isinstance(answer, ConflictError), (name, answer)
                assert str(answer) == f"{name} refused"
            else:
                assert isinstance(answer, int), (name, answer)
        stored = store.engine.read_sync(lambda tx: tx.all("SELECT id, name FROM accounts"))
        assert sorted(stored) == sorted(
            (a, n) for n, a in zip(names, answers, strict=True) if isinstance(a, int)
        )
        with pytest.raises(ConflictError):
            run(batcher.submit("bad-alone"))
        assert run(batcher.submit("after")) > 0
    finally:
        run(store.close())


def test_device_writes_share_transactions_and_keep_their_answers(database_url: str) -> None:
    """registerDevice and friends in flight together each get their own answer."""
    store = open_store(database_url)

    async def go() -> list[bool]:
        app = await store.create_app("acc", "devices")
        await asyncio.gather(
            *(
                store.register_device(app, DeviceIn(f"d-{i}", 3, push_token=f"t{i}"))
                for i in range(30)
            )
        )
        gone = await asyncio.gather(
            *(store.unregister_device(app, f"d-{i}") for i in range(0, 40, 2))
        )
        return list(gone)

    try:
        assert run(go()) == [True] * 15 + [False] * 5
        assert _count(store, "SELECT COUNT(*) FROM devices WHERE subscribed = 1") == 15
    finally:
        run(store.close())
