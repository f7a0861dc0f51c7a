"""Jobs claimed by several engines at once: each job by exactly one of them."""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

from pushtrack.domain.jobs import Params
from pushtrack.store import jobs as jobstore
from pushtrack.store import open_engine
from pushtrack.store.base import Engine
from tests.support import run

JOBS = 120


class Numbered(Params, frozen=True, kw_only=True):
    n: int


def test_concurrent_engines_never_claim_a_job_twice(engine: Engine) -> None:
    for i in range(JOBS):
        engine.write_sync(
            partial(jobstore.enqueue, kind="k", account=None, params=Numbered(n=i), run_at=0)
        )
    other = open_engine(engine.url)
    claimed: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker(name: str, on: Engine) -> None:
        mine = claimed.setdefault(name, [])
        barrier.wait()
        try:
            while True:
                got = on.write_sync(
                    partial(jobstore.claim, owner=name, kinds=("k",), limit=4, lease_us=60_000_000)
                )
                if not got:
                    return
                assert all(j.state == "running" for j in got)
                mine.extend(j.id for j in got)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(f"w{i}", engine if i % 2 else other))
        for i in range(6)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        run(other.close())
    assert errors == []
    every = [job for ids in claimed.values() for job in ids]
    assert len(every) == JOBS
    assert len(set(every)) == JOBS
    owners = engine.read_sync(
        lambda tx: tx.all("SELECT lease_owner, COUNT(*) FROM jobs GROUP BY lease_owner")
    )
    assert dict(owners) == {k: len(v) for k, v in claimed.items() if v}


def test_a_claim_skips_jobs_another_worker_is_claiming(pg_url: str) -> None:
    """While one worker's claim holds the head of the queue, uncommitted, a second
    worker takes the jobs behind it at once instead of waiting or taking nothing."""
    first, second = open_engine(pg_url), open_engine(pg_url)
    try:
        for i in range(40):
            first.write_sync(
                partial(jobstore.enqueue, kind="k", account=None, params=Numbered(n=i), run_at=0)
            )
        holding, release = threading.Event(), threading.Event()
        held: list[jobstore.Job] = []

        def hold(tx: Any) -> None:
            held.extend(jobstore.claim(tx, owner="a", kinds=("k",), limit=16, lease_us=60_000_000))
            holding.set()
            release.wait(30)

        holder = threading.Thread(target=first.write_sync, args=(hold,))
        holder.start()
        try:
            assert holding.wait(30)
            got = second.write_sync(
                partial(jobstore.claim, owner="b", kinds=("k",), limit=4, lease_us=60_000_000)
            )
        finally:
            release.set()
            holder.join(30)
        assert len(held) == 16
        assert len(got) == 4
        assert not {j.id for j in got} & {j.id for j in held}
        # the queue's own order, after what the first worker holds
        assert [j.params_as(Numbered).n for j in got] == [16, 17, 18, 19]
    finally:
        run(first.close())
        run(second.close())


def _enqueue(engine: Engine, kind: str, account: str, n: int, run_at: int) -> list[str]:
    return [
        engine.write_sync(
            partial(
                jobstore.enqueue, kind=kind, account=account, params=Numbered(n=i), run_at=run_at
            )
        )
        for i in range(n)
    ]


def _claim(engine: Engine, limit: int) -> list[jobstore.Job]:
    return engine.write_sync(
        partial(
            jobstore.claim,
            owner="w",
            kinds=("dispatch", "tracking_log"),
            limit=limit,
            lease_us=600_000_000,
        )
    )


def test_a_backlog_of_one_account_does_not_hold_back_anothers_export(engine: Engine) -> None:
    now = engine.clock()
    _enqueue(engine, "dispatch", "busy", 200, now - 60_000_000)  # waiting for a minute
    [export] = _enqueue(engine, "tracking_log", "quiet", 1, now)
    # workers take one job at a time as slots free up: the export is among the first two
    # (the first, as its group is the smaller one; then the backlog's next)
    first = _claim(engine, 1)
    second = _claim(engine, 1)
    assert first[0].request_id == export
    assert second[0].account == "busy"


def test_a_worker_with_one_slot_takes_the_export_before_the_next_send(engine: Engine) -> None:
    now = engine.clock()
    _enqueue(engine, "dispatch", "busy", 100, now - 60_000_000)
    [first] = _claim(engine, 1)
    assert first.account == "busy"
    engine.write_sync(
        partial(jobstore.finish, job_id=first.id, owner="w", state=jobstore.JobState.DONE)
    )
    [export] = _enqueue(engine, "tracking_log", "quiet", 1, now)
    # nothing of either runs now: the one export goes before the 99 sends still due
    [second] = _claim(engine, 1)
    assert second.request_id == export


def test_busy_groups_share_the_workers_evenly(engine: Engine) -> None:
    now = engine.clock()
    _enqueue(engine, "dispatch", "a", 50, now - 30_000_000)
    _enqueue(engine, "dispatch", "b", 50, now)
    _enqueue(engine, "tracking_log", "a", 50, now)
    taken = [job for _ in range(12) for job in _claim(engine, 1)]
    groups = [(j.account, j.kind) for j in taken]
    assert groups.count(("a", "dispatch")) == 4
    assert groups.count(("b", "dispatch")) == 4
    assert groups.count(("a", "tracking_log")) == 4
    # within a group, the queue's own order
    a_dispatch = [
        j.params_as(Numbered).n for j in taken if (j.account, j.kind) == ("a", "dispatch")
    ]
    assert a_dispatch == sorted(a_dispatch) == [0, 1, 2, 3]


def test_a_batch_claim_interleaves_groups(engine: Engine) -> None:
    now = engine.clock()
    _enqueue(engine, "dispatch", "a", 30, now - 30_000_000)
    _enqueue(engine, "tracking_log", "b", 2, now)
    batch = _claim(engine, 4)
    assert [(j.account, j.kind) for j in batch].count(("b", "tracking_log")) == 2
