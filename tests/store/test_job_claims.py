"""Jobs claimed by several engines at once: each job by exactly one of them."""

from __future__ import annotations

import threading
from functools import partial

from pushtrack.store import jobs as jobstore
from pushtrack.store import open_engine
from pushtrack.store.base import Engine
from tests.support import run

JOBS = 120


def test_concurrent_engines_never_claim_a_job_twice(engine: Engine) -> None:
    for i in range(JOBS):
        engine.write_sync(
            partial(jobstore.enqueue, kind="k", account=None, params={"n": i}, run_at=0)
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
    assert sum(1 for ids in claimed.values() if ids) >= 2  # the work was shared
    owners = engine.read_sync(
        lambda tx: tx.all("SELECT lease_owner, COUNT(*) FROM jobs GROUP BY lease_owner")
    )
    assert dict(owners) == {k: len(v) for k, v in claimed.items() if v}
