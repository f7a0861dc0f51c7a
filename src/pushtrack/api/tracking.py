"""Scheduled requests: getTrackingLog and getMsgStats, and getResults to collect them."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from pushtrack.api.context import Call
from pushtrack.api.errors import ArgumentError
from pushtrack.domain.codes import REQUEST_ID_RE
from pushtrack.domain.jobs import EventStatsParams, MsgStatsParams, TrackingLogParams
from pushtrack.domain.timeutil import DAY_US, day_of, parse_day, to_wire, window_start
from pushtrack.jobs import eventstats, msgstats, tracklog
from pushtrack.store.jobs import CANCELLED, DONE, PENDING, RUNNING, Job

#: Job kinds whose results getResults hands out.
RESULT_KINDS = frozenset({tracklog.KIND, msgstats.KIND, eventstats.KIND})


class GetTrackingLog(msgspec.Struct, forbid_unknown_fields=True):
    date: str | None = None
    application: str | None = None


class GetResults(msgspec.Struct, forbid_unknown_fields=True):
    request_id: Annotated[str, msgspec.Meta(max_length=64)]


class GetMsgStats(msgspec.Struct, forbid_unknown_fields=True):
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


def _day(call: Call, text: str | None) -> str:
    """The requested UTC day, checked against today and the retention window."""
    now = call.ctx.store_clock()
    today = to_wire(now)[:10]
    if text is None:
        return today
    try:
        start = parse_day(text)
    except ValueError:
        raise ArgumentError(f'date: expected "YYYY-MM-DD", got {text!r}') from None
    if start > day_of(now):
        raise ArgumentError(f"date: {text} is in the future (today is {today} UTC)")
    days = call.ctx.settings.retention_days
    if start + DAY_US <= window_start(now, days):
        raise ArgumentError(f"date: {text} is outside the retention window of {days} days")
    return to_wire(start)[:10]


async def get_tracking_log(call: Call, r: GetTrackingLog) -> dict[str, Any]:
    assert call.token is not None
    app_code = None
    if r.application is not None:
        app_code = (await call.app_for(r.application)).code
    day = _day(call, r.date)
    apps = sorted(call.token.apps) if call.token.apps is not None else None
    request_id = await call.ctx.store.jobs.enqueue(
        tracklog.KIND,
        call.token.account,
        TrackingLogParams(date=day, application=app_code, apps=apps),
    )
    return {"request_id": request_id}


async def get_msg_stats(call: Call, r: GetMsgStats) -> dict[str, Any]:
    assert call.token is not None
    found = await call.ctx.store.stats.find_message(call.token.account, call.token.apps, r.message)
    if found is None:
        raise ArgumentError(f"message: {r.message} not found")
    request_id = await call.ctx.store.jobs.enqueue(
        msgstats.KIND,
        call.token.account,
        MsgStatsParams(message_id=found.id, message=found.code, application=found.app_code),
    )
    return {"request_id": request_id}


async def _covered(call: Call, job: Job) -> bool:
    """Whether every application the job reads is one the token may see.

    The job is already known to be of the token's account. Its params name the
    applications it covers: a tracking log its ``application`` or the ``apps`` of the
    token that asked (null: the whole account); getMsgStats and getEventStatistics
    their ``application`` (jobs enqueued before that was recorded: looked up).
    """
    assert call.token is not None
    allowed = call.token.apps
    if allowed is None:
        return True
    if job.kind == tracklog.KIND:
        log = job.params_as(TrackingLogParams)
        if log.application is not None:
            return log.application in allowed
        return log.apps is not None and set(log.apps) <= allowed
    code: str | None = None
    if job.kind == msgstats.KIND:
        stats = job.params_as(MsgStatsParams)
        code = stats.application
        if code is None:
            found = await call.ctx.store.stats.find_message(call.token.account, None, stats.message)
            code = found.app_code if found is not None else None
    elif job.kind == eventstats.KIND:
        events = job.params_as(EventStatsParams)
        code = events.application
        if code is None:
            apps_of = {a.id: a.code for a in await call.ctx.store.list_apps(call.token.account)}
            code = apps_of.get(events.app_id)
    return code is not None and code in allowed


async def get_results(call: Call, r: GetResults) -> dict[str, Any] | list[Any]:
    assert call.token is not None
    job = None
    if REQUEST_ID_RE.match(r.request_id):
        job = await call.ctx.store.jobs.get(r.request_id, call.token.account)
    # Another account's job, or one reading an application the token may not see,
    # is answered exactly as an unknown request id.
    if job is None or job.kind not in RESULT_KINDS or not await _covered(call, job):
        raise ArgumentError(f"request_id: {r.request_id} not found")
    out: dict[str, Any] = {"request_id": job.request_id}
    if job.state in (PENDING, RUNNING):
        out["status"] = job.state
    elif job.state == DONE and job.kind == tracklog.KIND:
        out["status"] = "done"
        out["fileName"] = tracklog.file_url(call.ctx.settings, job.result["file"])
    elif job.state == DONE and isinstance(job.result, list):
        return job.result  # getEventStatistics: the rows themselves, as Pushwoosh answers
    elif job.state == DONE:
        out["status"] = "done"
        out.update(job.result)
    else:
        # (ours) the job gave up or was cancelled: why, in words meant for the caller
        # (an internal error's detail stays in the service log)
        out["status"] = "failed"
        reason = job.result.get("reason") if isinstance(job.result, dict) else None
        out["reason"] = reason or (
            "cancelled" if job.state == CANCELLED else "internal error (see the service log)"
        )
    return out
