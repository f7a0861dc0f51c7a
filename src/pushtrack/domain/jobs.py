"""Job kinds and their parameters: one typed struct per kind.

A job's parameters are stored as JSON in ``jobs.params``; its kind, in a column of
its own, says which struct they are. They are written from these structs and each
handler reads them back into its kind's struct (``Job.params_as``), so it gets typed
fields instead of a dict, and a parameter a handler needs cannot be left out where
the job is made.

Parameters stored by an older pushtrack are still read: unknown keys are skipped,
and the fields added since then have defaults.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec


class JobKind(StrEnum):
    #: Send one id range of a message's deliveries (``jobs/dispatch.py``).
    DISPATCH = "dispatch"
    #: Walk an audience message's targeting and write its deliveries (``jobs/expansion.py``).
    EXPAND = "expand_audience"
    #: getTrackingLog: one day's trail as a ZIP of CSV (``jobs/tracklog.py``).
    TRACKING_LOG = "tracking_log"
    #: getMsgStats (``jobs/msgstats.py``).
    MSG_STATS = "msg_stats"
    #: getEventStatistics (``jobs/eventstats.py``).
    EVENT_STATS = "event_stats"
    #: The periodic purge of what left the retention window (``jobs/retention.py``).
    RETENTION = "retention"
    #: Post an application's new trail events to one webhook (``jobs/webhooks.py``).
    WEBHOOK = "webhook"


class Params(msgspec.Struct, frozen=True, kw_only=True):
    """The parameters of a job (base of every kind's struct)."""


class DispatchParams(Params, frozen=True, kw_only=True):
    message_id: int
    #: The first and last delivery id of the range (inclusive).
    first: int
    last: int
    #: The message's application (its id). None in jobs made before it was carried
    #: here: the job then takes it from the message row, read in its first batch.
    app_id: int | None = None


class ExpandParams(Params, frozen=True, kw_only=True):
    message_id: int


class TrackingLogParams(Params, frozen=True, kw_only=True):
    #: The day, ``YYYY-MM-DD`` (UTC).
    date: str
    #: One application's code, or None: every application ``apps`` allows.
    application: str | None = None
    #: The applications the asking token may see (None: the whole account).
    apps: list[str] | None = None


class MsgStatsParams(Params, frozen=True, kw_only=True):
    message_id: int
    #: The message's code and application (as asked; recorded for getResults' checks;
    #: None in jobs made before the application was recorded).
    message: str
    application: str | None = None


class AttributeCondition(msgspec.Struct, frozen=True):
    name: str
    operator: str
    values: list[Any]


class EventStatsParams(Params, frozen=True, kw_only=True):
    app_id: int
    application: str | None = None
    event: str
    #: The hours covered: [start, end) in microseconds UTC.
    start: int
    end: int
    attributes: list[AttributeCondition] = []


class RetentionParams(Params, frozen=True, kw_only=True):
    pass


class WebhookParams(Params, frozen=True, kw_only=True):
    webhook_id: int


_encoder = msgspec.json.Encoder()


def encode(params: Params) -> str:
    """``params`` as the JSON text ``jobs.params`` stores."""
    return _encoder.encode(params).decode()
