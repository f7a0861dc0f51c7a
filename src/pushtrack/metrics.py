"""The process's metrics: counters and gauges, all kept here.

Nothing publishes them yet (there is no ``/metrics`` endpoint); an exporter
only has to walk ``ALL`` (each metric has a Prometheus-style name, help text,
label names and ``samples()``). Values live in this process only, and start
at zero when it starts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labels: tuple[str, ...]) -> None:
        self.name, self.help, self.labels = name, help, labels
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        ALL.append(self)

    def _key(self, labels: dict[str, object]) -> tuple[str, ...]:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes the labels {', '.join(self.labels)}")
        return tuple(str(labels[name]) for name in self.labels)

    def value(self, **labels: object) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterator[tuple[dict[str, str], float]]:
        with self._lock:
            items = list(self._values.items())
        for key, value in items:
            yield dict(zip(self.labels, key, strict=True)), value


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, /, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, /, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = value


ALL: list[_Metric] = []

#: Times an application's gateway was paused because the gateway refused its credentials.
GATEWAY_PAUSES = Counter(
    "pushtrack_gateway_pauses_total",
    "Gateways paused because their credentials were refused.",
    ("app", "platform", "kind", "reason"),
)
#: 1 while an application's gateway for a platform is paused (as this process last saw it).
GATEWAY_PAUSED = Gauge(
    "pushtrack_gateway_paused",
    "1 while an application's gateway for a platform is paused.",
    ("app", "platform", "kind"),
)
#: Deliveries rescheduled after a transient refusal, by gateway kind and HTTP status.
DELIVERY_RETRIES = Counter(
    "pushtrack_delivery_retries_total",
    "Deliveries rescheduled after a transient refusal.",
    ("kind", "status"),
)
#: Deliveries that ended failed because their TTL or the retry window ran out.
DELIVERY_GIVE_UPS = Counter(
    "pushtrack_delivery_give_ups_total",
    "Deliveries failed because their TTL or the retry window ran out.",
    ("kind",),
)
