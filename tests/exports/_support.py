"""Helpers for the export, statistics and retention tests: a clock the test moves."""

from __future__ import annotations

import contextlib
import io
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pushtrack.config import Settings
from pushtrack.domain.timeutil import US
from pushtrack.jobs.runner import Worker
from pushtrack.store import Store
from pushtrack.worker import handlers
from tests.support import Service, run, service


class Clock:
    """The store's clock, set by the test (microseconds, UTC)."""

    def __init__(self, when: str = "2024-05-01 12:00:00") -> None:
        self.now = at(when)

    def __call__(self) -> int:
        return self.now

    def set(self, when: str | int) -> None:
        self.now = at(when) if isinstance(when, str) else when

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * US)


def at(when: str) -> int:
    """Microseconds of a "YYYY-MM-DD HH:MM:SS[.ffffff]" UTC time."""
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in when else "%Y-%m-%d %H:%M:%S"
    dt = datetime.strptime(when, fmt).replace(tzinfo=UTC)
    return int(dt.timestamp()) * US + dt.microsecond


def clocked_store(database_url: str, clock: Clock) -> Store:
    if database_url.startswith("sqlite:"):
        from pushtrack.store.sqlite import SQLiteEngine

        return Store(SQLiteEngine(database_url.removeprefix("sqlite:///"), clock=clock))
    from pushtrack.store.postgres import PostgresEngine

    return Store(PostgresEngine(database_url, clock=clock))


@contextlib.contextmanager
def clocked_service(
    database_url: str, tmp_path: Path, clock: Clock, **settings: Any
) -> Iterator[tuple[Service, Settings]]:
    """A live server whose store runs on ``clock``; export files go under ``tmp_path``."""
    store = clocked_store(database_url, clock)
    with service(database_url, store=store, files_dir=str(tmp_path / "files"), **settings) as svc:
        assert svc.settings is not None
        yield svc, svc.settings


def run_jobs(store: Store, settings: Settings) -> None:
    """Run the export/statistics/retention jobs that are due (no dispatching)."""
    worker = Worker(store, handlers(settings, store), poll_seconds=0.02)
    run(worker.run_until_idle(30))


def result(svc: Service, request_id: str) -> dict[str, Any]:
    out = svc.server("getResults", request_id=request_id)
    assert out["status_code"] == 200, out
    response: dict[str, Any] = out["response"]
    return response


def tracking_log(svc: Service, settings: Settings, **fields: Any) -> bytes:
    """getTrackingLog, run the job, getResults, download: the CSV inside the ZIP.

    Without ``application`` the log covers every application the token sees.
    """
    out = svc.call("getTrackingLog", {"auth": svc.server_token, **fields}).json()
    assert out["status_code"] == 200, out
    request_id = out["response"]["request_id"]
    run_jobs(svc.store, settings)
    done = result(svc, request_id)
    assert done["status"] == "done", done
    url = done["fileName"]
    assert url.startswith(settings.base_url() + "/files/")
    resp = svc.http.get(url.removeprefix(settings.base_url()))
    assert resp.status_code == 200, resp.text
    return only_member(resp.content)


def only_member(zip_bytes: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        names = zf.namelist()
        assert len(names) == 1, names
        return zf.read(names[0])


def create(svc: Service, **notification: Any) -> dict[str, Any]:
    out = svc.server("createMessage", notifications=[notification])
    assert out["status_code"] == 200, out
    response: dict[str, Any] = out["response"]
    return response
