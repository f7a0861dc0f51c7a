"""Running queued deliveries to their end with a real ``pushtrack worker`` process."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from bench.harness import Bench
from bench.procs import Proc, pushtrack_worker
from bench.profiling import Profile
from bench.rawdb import Raw

#: The worker's default (``worker_concurrency``).
CONCURRENCY = 4
POLL = 0.2


@dataclass
class Drained:
    seconds: float
    delivered: int
    failed: int
    peak_rss_mb: float | None
    profile: list[str] = field(default_factory=list)


def wait_for_log(proc: Proc, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in proc.log_tail(50):
            return
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        time.sleep(0.02)
    raise RuntimeError(f"{proc.name} did not say {text!r} within {timeout}s")


def ended(db: Raw) -> tuple[int, int]:
    """Deliveries that ended delivered, and failed."""
    rows = dict(db.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state"))
    return int(rows.get(3, 0)), int(rows.get(4, 0))


def drain(
    bench: Bench, url: str, total: int, name: str, timeout: float = 600.0, *, workers: int = 1
) -> Drained:
    """Start ``workers`` worker processes, and time them from their start-up lines until
    every delivery has ended (the first one is profiled; peak RSS is the largest)."""
    with contextlib.ExitStack() as stack, Raw(url) as db:
        procs = [
            stack.enter_context(
                pushtrack_worker(
                    bench, url, CONCURRENCY, name=f"{name}-worker" + (f"-{i}" if i else "")
                )
            )
            for i in range(workers)
        ]
        for proc in procs:
            wait_for_log(proc, "running")
        start = time.perf_counter()
        deadline = time.monotonic() + timeout
        with Profile(bench, procs[0].pid, f"{name} worker") as prof:
            while True:
                delivered, failed = ended(db)
                if delivered + failed >= total:
                    break
                for proc in procs:
                    if proc.popen.poll() is not None:
                        raise RuntimeError(f"a worker exited:\n{proc.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {delivered + failed} of {total} ended in {timeout}s")
                time.sleep(POLL)
        seconds = time.perf_counter() - start
        peaks = [p for p in (proc.peak_rss_mb() for proc in procs) if p is not None]
        return Drained(seconds, delivered, failed, max(peaks, default=None), prof.summary)
