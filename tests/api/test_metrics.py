"""``GET /metrics``: Prometheus' text format, with the API's requests and latency,
the job queue read from the store, and the writer's batches."""

from __future__ import annotations

import datetime as dt

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
