"""A full disk during an export: the job fails with a reason getResults shows, no
partial file is ever left or served, and everything else goes on."""

from __future__ import annotations

from pathlib import Path

from pushtrack.jobs.runner import Worker
from pushtrack.worker import handlers
from tests.exports._support import result
from tests.support import fill_disk, run, service, tmpfs


def test_disk_full_export_fails_with_a_reason_and_leaves_no_file(tmp_path: Path) -> None:
    with (
        tmpfs(tmp_path / "files", "1m") as files,
        service(f"sqlite:///{tmp_path}/db.sqlite", files_dir=str(files)) as svc,
    ):
        assert svc.settings is not None
        svc.register("exp-1")
        svc.send(devices=["exp-1"])
        fill_disk(files / "filler")
        today = svc.server("getTrackingLog")  # the whole account, today
        assert today["status_code"] == 200, today
        request_id = today["response"]["request_id"]
        worker = Worker(
            svc.store,
            handlers(svc.settings, svc.store),
            poll_seconds=0.02,
            max_attempts=2,
            backoff_seconds=0.01,
        )
        run(worker.run_until_idle(30))
        failed = result(svc, request_id)
        assert failed == {
            "request_id": request_id,
            "status": "failed",
            "reason": "the export file could not be written: No space left on device",
        }
        assert sorted(p.name for p in files.iterdir()) == ["filler"]  # no partial file
        assert svc.db.count("files") == 0
        # the rest of the service goes on: the trail still takes events
        svc.register("exp-2")
        assert svc.send(devices=["exp-2"])["Messages"]
