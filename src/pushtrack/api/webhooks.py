"""(ours) Webhooks: an application's endpoints, and the trail as a stream.

``webhooks/addWebhook``, ``listWebhooks``, ``removeWebhook``, ``testWebhook`` and
``replayWebhook`` manage an application's endpoints (``jobs/webhooks.py`` POSTs to
them); ``GET /api/v2/events/stream`` sends the same events as server-sent events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from pushtrack.api import auth, envelope
from pushtrack.api.context import Call, Context
from pushtrack.api.deadtokens import parse_since
from pushtrack.api.errors import ArgumentError, AuthError, PushtrackError, UnavailableError
from pushtrack.delivery import outbound
from pushtrack.domain.status import Status
from pushtrack.domain.timeutil import to_wire, window_start
from pushtrack.jobs import webhooks as hooks
from pushtrack.sealing import SealingError
from pushtrack.store.base import ConflictError
from pushtrack.store.stream import Filter, Position, decode, encode
from pushtrack.store.webhooks import Webhook

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
Secret = Annotated[str, msgspec.Meta(min_length=16, max_length=200)]
#: Events one read of the stream sends at most.
STREAM_BATCH = 500
#: Seconds between keep-alive comments on a quiet stream.
KEEPALIVE_SECONDS = 15.0
#: Seconds one stream lasts; the client reconnects with ``Last-Event-ID``.
STREAM_SECONDS = 600.0


class AddWebhook(msgspec.Struct, forbid_unknown_fields=True):
    application: Code
    url: Url
    #: statuses to send (names: created, sent, delivered, failed, opened, confirmed)
    statuses: Annotated[list[str], msgspec.Meta(max_length=16)] | None = None
    #: the signing secret (else one is made and returned)
    secret: Secret | None = None


class ListWebhooks(msgspec.Struct, forbid_unknown_fields=True):
    application: Code | None = None


class NameWebhook(msgspec.Struct, forbid_unknown_fields=True):
    application: Code
    url: Url


class ReplayWebhook(msgspec.Struct, forbid_unknown_fields=True):
    application: Code
    url: Url
    #: send again everything from this time ("YYYY-MM-DD HH:MM:SS" or "YYYY-MM-DD", UTC)
    since: str


def shown(hook: Webhook, *, secret: str | None = None) -> dict[str, Any]:
    """An endpoint as listings show it (its ``secret`` only when it is made: it is
    stored sealed)."""
    out: dict[str, Any] = {
        "application": hook.application_code,
        "url": hook.url,
        "statuses": hooks.status_names(hook),
        "created": to_wire(hook.created_at),
        "delivered": hook.delivered,
        "last_success": to_wire(hook.last_success_at) if hook.last_success_at else None,
        "failing_since": to_wire(hook.failing_since) if hook.failing_since else None,
        "failing": hook.failing,
        "last_error": hook.last_error,
    }
    if secret is not None:
        out["secret"] = secret
    return out


async def _named(call: Call, application: str, url: str) -> Webhook:
    app = await call.app_for(application)
    hook = await call.ctx.store.webhooks.find(app.id, url)
    if hook is None:
        raise ArgumentError(f"url: {url} is not a webhook of {app.code}")
    return hook


async def add_webhook(call: Call, r: AddWebhook) -> dict[str, Any]:
    assert call.token is not None
    app = await call.app_for(r.application)
    try:
        statuses = hooks.parse_statuses(r.statuses)
    except ValueError as exc:
        raise ArgumentError(f"statuses: {exc}") from None
    try:
        hooks.check_url(call.ctx.settings, r.url)
    except outbound.Refused as exc:
        raise ArgumentError(f"url: {exc}") from None
    secret = r.secret or hooks.new_secret()
    try:
        sealed = hooks.seal_secret(call.ctx.settings, secret)
    except SealingError as exc:
        # the service's configuration, not the request: nothing is stored
        raise UnavailableError(str(exc)) from None
    try:
        hook = await call.ctx.store.webhooks.add(
            call.token.account, app.id, r.url, sealed, statuses, sealed=True
        )
    except ConflictError as exc:
        raise ArgumentError(str(exc)) from None
    return shown(hook, secret=secret)


async def list_webhooks(call: Call, r: ListWebhooks) -> dict[str, Any]:
    assert call.token is not None
    code = (await call.app_for(r.application)).code if r.application is not None else None
    found = await call.ctx.store.webhooks.list(call.token.account, call.token.apps, code)
    return {"items": [shown(h) for h in found]}


async def remove_webhook(call: Call, r: NameWebhook) -> dict[str, Any]:
    hook = await _named(call, r.application, r.url)
    await call.ctx.store.webhooks.remove(hook.app_id, hook.url)
    return {"removed": True}


async def test_webhook(call: Call, r: NameWebhook) -> dict[str, Any]:
    hook = await _named(call, r.application, r.url)
    error = await hooks.send_test(call.ctx.settings, call.ctx.store, hook)
    return {"ok": error is None, "error": error}


async def replay_webhook(call: Call, r: ReplayWebhook) -> dict[str, Any]:
    hook = await _named(call, r.application, r.url)
    since = parse_since(r.since, "since")
    oldest = window_start(call.ctx.store_clock(), call.ctx.settings.retention_days)
    if since < oldest:
        raise ArgumentError(f"since: before the retention window ({to_wire(oldest)})")
    found = await call.ctx.store.webhooks.replay(hook.app_id, hook.url, since)
    if found is None:
        raise ArgumentError(f"url: {r.url} is not a webhook of {hook.application_code}")
    return shown(found)


# -- GET /api/v2/events/stream ---------------------------------------------------------


def event_filter(
    account: str,
    apps: frozenset[str] | None,
    *,
    application: str | None,
    hwids: list[str],
    message: str | None,
    statuses: list[str],
) -> Filter:
    """The stream's filters (the same as ``pushtrack tail``'s); ValueError naming a bad one."""
    wanted = hooks.parse_statuses(statuses)
    if application is not None:
        if apps is not None and application not in apps:
            raise PermissionError(application)
        apps = frozenset({application})
    return Filter(
        account=account,
        apps=apps,
        hwids=tuple(hwids) if hwids else None,
        message_code=message,
        statuses=None if wanted is None else tuple(Status(s) for s in wanted),
    )


def stream_endpoint(ctx: Context) -> Any:
    async def stream(request: Request) -> Response:
        try:
            raw = auth.token_from_header(request.headers.get("authorization"))
            if not raw:
                raise AuthError
            token = await ctx.token(raw)
            auth.check_method(token, "stream", server_method=True)
            ctx.limiter.check(f"t{token.id}")
            q = request.query_params
            unknown = sorted(set(q) - {"application", "hwid", "message", "status"})
            if unknown:
                raise ArgumentError(f"unknown parameter {unknown[0]!r}")
            for name, value in q.multi_items():
                if "\x00" in value:
                    raise ArgumentError(f"{name}: must not contain NUL characters")
            if "\x00" in (request.headers.get("last-event-id") or ""):
                raise ArgumentError("Last-Event-ID: must not contain NUL characters")
            try:
                wanted = event_filter(
                    token.account,
                    token.apps,
                    application=q.get("application"),
                    hwids=q.getlist("hwid"),
                    message=q.get("message"),
                    statuses=q.getlist("status"),
                )
            except ValueError as exc:
                raise ArgumentError(f"status: {exc}") from None
            except PermissionError:
                auth.check_app_code(token, q.get("application") or "")
                raise
            if q.get("application") is not None:
                app = await ctx.app(q["application"])
                if app is None or app.account != token.account:
                    raise ArgumentError(f"application: {q['application']} not found")
            last = request.headers.get("last-event-id")
            if last:
                start = decode(last)
                if start is None:
                    raise ArgumentError("Last-Event-ID: not an event id this service sent")
            else:
                start = await ctx.store.stream.head()
        except PushtrackError as exc:
            return envelope.v2_error(exc)
        return StreamingResponse(
            _events(ctx, request, wanted, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return stream


async def _events(
    ctx: Context, request: Request, wanted: Filter, cursor: Position
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_SECONDS
    quiet_since = time.monotonic()
    yield b"retry: 1000\n\n"
    while loop.time() < ends:
        page = await ctx.store.stream.read(cursor, wanted, STREAM_BATCH)
        cursor = max(cursor, page.reached)
        if page.items:
            quiet_since = time.monotonic()
            yield b"".join(
                f"id: {encode(item.position)}\nevent: {item.row.status.label}\n".encode()
                + b"data: "
                + msgspec.json.encode(hooks.event_of(item))
                + b"\n\n"
                for item in page.items
            )
            continue
        if page.more:
            continue
        if await request.is_disconnected():
            return
        if time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield b": keep-alive\n\n"
        await asyncio.sleep(ctx.settings.webhook_poll_ms / 1000)
