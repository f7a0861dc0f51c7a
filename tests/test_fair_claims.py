"""One account's backlog does not hold back another account's work: the worker claims
fairly across accounts and kinds (``store/jobs.py`` ``claim``), end to end.

A real server and the service's worker (one slot, so any unfairness shows at once)
over a real database: one account has a backlog of slow sends (a sandbox gateway that
takes 400 ms a batch, one dispatch job per message); another account then sends a
message and asks for an export and a message's statistics. Taken in queue order, they
would wait for the whole backlog (over 15 s); claimed fairly, each takes its turn
beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from pushtrack.domain.platforms import Platform
from pushtrack.domain.status import Status
from pushtrack.jobs.runner import Worker
from pushtrack.worker import build_worker
from tests.support import Service, run, service

BACKLOG = 40
LATENCY_MS = 400
#: How long the quiet account's work may take beside the backlog.
FEW_SECONDS = 5.0


@contextlib.contextmanager
def running(worker: Worker) -> Iterator[None]:
    """``worker`` claiming and running jobs on an event loop of its own thread."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        started.set()
        await worker.run(stop[0])

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(30)
        loop.close()


def _sandbox(svc: Service, latency_ms: int) -> None:
    run(
        svc.store.dispatch.set_gateway(
            svc.account, svc.app.code, int(Platform.ANDROID), "sandbox", {"latency_ms": latency_ms}
        )
    )


def _state(svc: Service, code: str) -> list[int]:
    return [
        int(r[0])
        for r in svc.db.rows(
            "SELECT d.state FROM deliveries d JOIN messages m ON m.id = d.message_id"
            " WHERE m.code = ?",
            (code,),
        )
    ]


def _done(svc: Service, request_id: str) -> bool:
    out = svc.server("getResults", request_id=request_id)
    assert out["status_code"] == 200, out
    status = out["response"].get("status")
    assert status in ("pending", "running", "done"), out
    return bool(status == "done")


def test_a_backlog_of_one_account_does_not_hold_back_another_accounts_work(
    database_url: str, tmp_path: Path
) -> None:
    with service(database_url, worker_concurrency=1, files_dir=str(tmp_path / "files")) as shared:
        assert shared.settings is not None
        busy, quiet = shared.fresh_account(), shared.fresh_account()
        _sandbox(busy, LATENCY_MS)
        _sandbox(quiet, 0)
        busy.register("busy-device", device_type=int(Platform.ANDROID))
        quiet.register("quiet-device", device_type=int(Platform.ANDROID))
        backlog = [busy.send(devices=["busy-device"])["Messages"][0] for _ in range(BACKLOG)]

        worker = build_worker(shared.settings, shared.store, poll_seconds=0.02)
        with running(worker):
            time.sleep(LATENCY_MS / 1000 * 2)  # the backlog is being worked on
            started = time.monotonic()
            code = quiet.send(devices=["quiet-device"])["Messages"][0]
            export = quiet.server("getTrackingLog")["response"]["request_id"]
            stats = quiet.server("getMsgStats", message=code)["response"]["request_id"]
            waited: dict[str, float] = {}
            while len(waited) < 3 and time.monotonic() - started < 4 * FEW_SECONDS:
                now = time.monotonic() - started
                if "send" not in waited and _state(quiet, code) == [int(Status.DELIVERED)]:
                    waited["send"] = now
                if "export" not in waited and _done(quiet, export):
                    waited["export"] = now
                if "stats" not in waited and _done(quiet, stats):
                    waited["stats"] = now
                time.sleep(0.05)
            left = sum(1 for c in backlog if _state(busy, c) != [int(Status.DELIVERED)])
        assert set(waited) == {"send", "export", "stats"}, waited
        assert max(waited.values()) < FEW_SECONDS, waited
        # the backlog was real: most of it was still waiting when the quiet work was done
        assert left > BACKLOG // 2, left
