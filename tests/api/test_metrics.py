"""``GET /metrics``: Prometheus' text format, with the API's requests and latency,
the job queue read from the store, and the writer's batches."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support import Service


def _samples(svc: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = svc.http.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_method_and_status(svc: Service) -> None:
    before = _samples(svc)
    svc.register("m-dev")
    svc.send(devices=["m-dev"])
    assert svc.server("createMessage", notifications=[{"devicez": []}])["status_code"] == 210
    svc.call("noSuchMethod", {})
    svc.v2("statistics/getMessageLog", {"hwid": "m-dev"})
    after = _samples(svc)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    ok = {"api": "json13", "method": "createMessage", "status": "200"}
    assert delta("pushtrack_requests_total", **ok) == 1
    assert delta("pushtrack_requests_total", **{**ok, "status": "210"}) == 1
    assert (
        delta("pushtrack_requests_total", api="json13", method="registerDevice", status="200") == 1
    )
    assert delta("pushtrack_requests_total", api="json13", method="unknown", status="404") == 1
    assert (
        delta("pushtrack_requests_total", api="v2", method="statistics/getMessageLog", status="200")
        == 1
    )
    assert delta("pushtrack_request_seconds_count", api="json13", method="createMessage") == 2
    if svc.store.url.startswith("sqlite"):
        assert delta("pushtrack_writer_batch_units_count") >= 2  # a device, a message


def test_the_job_queue_is_read_from_the_store(svc: Service) -> None:
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    for _ in range(3):
        assert svc.server("getTrackingLog", date=today)["status_code"] == 200
    samples = _samples(svc)
    # no worker runs beside this test server: the exports wait
    assert _value(samples, "pushtrack_jobs_queued", kind="tracking_log", state="due") == 3
    assert _value(samples, "pushtrack_jobs_queued", kind="tracking_log", state="running") == 0
    assert _value(samples, "pushtrack_job_oldest_wait_seconds", kind="tracking_log") >= 0
    assert ("process_resident_memory_bytes", ()) in samples


def test_deliveries_exports_and_device_batches_are_shown(svc: Service, tmp_path: Path) -> None:
    from pushtrack import config
    from pushtrack.domain.platforms import Platform
    from pushtrack.worker import build_worker
    from tests.support import run

    run(
        svc.store.dispatch.set_gateway(
            "default", svc.app.code, int(Platform.ANDROID), "sandbox", {"failure_rate": 0.0}
        )
    )
    before = _samples(svc)
    svc.register("metrics-android", device_type=int(Platform.ANDROID))
    svc.register("metrics-ios", device_type=int(Platform.IOS))  # no gateway: failed
    code = svc.send(devices=["metrics-android", "metrics-ios"])["TrackingCodes"][0]
    assert (
        svc.device("pushStat", hwid="metrics-android", hash=svc.hash_of(code))["status_code"] == 200
    )
    assert svc.server("getTrackingLog")["status_code"] == 200
    settings = config.load({"database": svc.store.url, "files_dir": str(tmp_path)}, env={})
    run(build_worker(settings, svc.store, poll_seconds=0.02).run_until_idle(30, horizon=1))
    after = _samples(svc)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    delivered = {"status": "delivered", "platform": "android", "kind": "sandbox"}
    assert delta("pushtrack_deliveries_total", **delivered) == 1
    assert delta("pushtrack_export_seconds_count") == 1
    assert delta("pushtrack_export_seconds_sum") > 0
    # the device writes went through the store's batches (every one on PostgreSQL, the
    # report on both engines)
    batched = delta("pushtrack_device_batch_items_sum")
    assert batched >= (3 if svc.store.url.startswith("postgresql") else 1), batched
