"""Every Prometheus metric the process keeps, in one place; ``GET /metrics`` shows them.

Metrics are per process: ``serve`` shows its API and its in-process worker;
a separate ``pushtrack worker`` keeps its own (scrape each ``serve``; a
worker's jobs show in the queue gauges every ``serve`` reads from the store).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

#: The API: one sample per request, by method (unknown names as "unknown") and the
#: answer's status code (JSON 1.3's ``status_code``, v2's HTTP status).
REQUESTS = Counter("pushtrack_requests", "API requests answered", ["api", "method", "status"])
REQUEST_SECONDS = Histogram(
    "pushtrack_request_seconds",
    "Time to answer an API request",
    ["api", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

#: The job queue, read from the store at each scrape: jobs due or running, and how
#: long the oldest due one has waited.
JOBS_QUEUED = Gauge("pushtrack_jobs_queued", "Jobs due or running", ["kind", "state"])
JOB_OLDEST_SECONDS = Gauge(
    "pushtrack_job_oldest_wait_seconds", "How long the oldest due job has waited", ["kind"]
)

#: Units of work committed together by the SQLite writer (group commit).
WRITER_BATCH = Histogram(
    "pushtrack_writer_batch_units",
    "Units of work per SQLite writer transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)

#: Device writes committed together by a ``Batcher`` (store/batch.py): device reports on
#: both engines, and every device write on PostgreSQL.
DEVICE_BATCH = Histogram(
    "pushtrack_device_batch_items",
    "Device writes per batched transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

#: Export jobs (getTrackingLog): how long each took and how many rows it wrote.
EXPORT_SECONDS = Histogram(
    "pushtrack_export_seconds",
    "Time to write one tracking-log export",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
EXPORT_ROWS = Counter("pushtrack_export_rows", "Rows written into tracking-log exports")

#: Store faults answered 503, by kind ("disk full", "database unreachable", ...).
STORE_UNAVAILABLE = Counter(
    "pushtrack_store_unavailable", "Requests answered 503 for a storage fault", ["kind"]
)

#: Requests answered 503 because ``max_in_flight`` requests were being worked on.
SHED = Counter("pushtrack_requests_shed", "Requests refused 503 while the service was busy")

#: Times an application's gateway was paused because the gateway refused its credentials.
GATEWAY_PAUSES = Counter(
    "pushtrack_gateway_pauses",
    "Gateways paused because their credentials were refused",
    ["app", "platform", "kind", "reason"],
)
#: 1 while an application's gateway for a platform is paused (as this process last saw it).
GATEWAY_PAUSED = Gauge(
    "pushtrack_gateway_paused",
    "1 while an application's gateway for a platform is paused",
    ["app", "platform", "kind"],
)
#: Gateway answers as the worker recorded them: delivered, failed or retry, by platform
#: (Pushwoosh's name) and gateway kind.
DELIVERY_OUTCOMES = Counter(
    "pushtrack_deliveries",
    "Deliveries recorded after a gateway's answer",
    ["status", "platform", "kind"],
)
#: Deliveries rescheduled after a transient refusal, by gateway kind and HTTP status.
DELIVERY_RETRIES = Counter(
    "pushtrack_delivery_retries",
    "Deliveries rescheduled after a transient refusal",
    ["kind", "status"],
)
#: Deliveries that ended failed because their TTL or the retry window ran out.
DELIVERY_GIVE_UPS = Counter(
    "pushtrack_delivery_give_ups",
    "Deliveries failed because their TTL or the retry window ran out",
    ["kind"],
)


def value(metric: Counter | Gauge, **labels: object) -> float:
    """A metric's current value for these labels (0 if never set)."""
    name = metric._name  # prometheus_client keeps no public accessor
    suffix = "_total" if isinstance(metric, Counter) else ""
    found = REGISTRY.get_sample_value(name + suffix, {k: str(v) for k, v in labels.items()})
    return found or 0.0


#: Webhooks: POSTs to endpoints by result ("ok": a 2xx answer, "failed": anything
#: else), and events endpoints acknowledged.
WEBHOOK_POSTS = Counter("pushtrack_webhook_posts", "POSTs to webhook endpoints", ["result"])
WEBHOOK_EVENTS = Counter("pushtrack_webhook_events", "Events webhook endpoints acknowledged")
#: Endpoints failing for longer than ``webhook_failing_seconds``, read from the store at
#: each scrape (like the job queue).
WEBHOOKS_FAILING = Gauge(
    "pushtrack_webhooks_failing", "Webhook endpoints failing for longer than the retry window"
)
