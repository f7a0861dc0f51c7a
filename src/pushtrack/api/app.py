"""The ASGI application: routes, method tables, and the one place errors become HTTP."""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from pushtrack import logs, metrics
from pushtrack.api import (
    auth,
    deadtokens,
    devices,
    envelope,
    eventstats,
    files,
    filters,
    health,
    message_log,
    messages,
    openapi,
    scheduled,
    tags,
    targeted,
    v2stats,
    webhooks,
)
from pushtrack.api.context import Call, Context
from pushtrack.api.errors import (
    ArgumentError,
    AuthError,
    MalformedError,
    MethodNotFoundError,
    PushtrackError,
)
from pushtrack.dashboard.app import Dashboard
from pushtrack.store.base import StoreUnavailableError

log = logging.getLogger("pushtrack.api")

R = TypeVar("R")


@dataclass(frozen=True)
class Method(Generic[R]):
    """One API method: the request type the boundary converts to, and its handler.

    ``server`` methods take a server token (JSON 1.3: the body's ``auth``; v2: the
    ``Authorization`` header or ``auth``); device methods take a device token in the
    header, or none where the application allows it.
    """

    request: type[R]
    handler: Callable[[Call, R], Awaitable[Any]]
    server: bool


JSON13: dict[str, Method[Any]] = {
    "registerDevice": Method(devices.RegisterDevice, devices.register_device, server=False),
    "unregisterDevice": Method(devices.UnregisterDevice, devices.unregister_device, server=False),
    "pushStat": Method(devices.DeviceReport, devices.push_stat, server=False),
    "messageDeliveryEvent": Method(
        devices.DeviceReport, devices.message_delivery_event, server=False
    ),
    "applicationOpen": Method(devices.ApplicationOpen, devices.application_open, server=False),
    "registerUser": Method(devices.RegisterUser, devices.register_user, server=False),
    "setBadge": Method(devices.SetBadge, devices.set_badge, server=False),
    "checkDevice": Method(devices.CheckDevice, devices.check_device, server=False),
    "postEvent": Method(devices.PostEvent, devices.post_event, server=False),
    "setTags": Method(tags.SetTags, tags.set_tags, server=False),
    "getTags": Method(tags.GetTags, tags.get_tags, server=False),
    "addTag": Method(tags.AddTag, tags.add_tag, server=True),
    "listTags": Method(tags.ListTags, tags.list_tags, server=True),
    "deleteTag": Method(tags.DeleteTag, tags.delete_tag, server=True),
    "createFilter": Method(filters.CreateFilter, filters.create_filter, server=True),
    "listFilters": Method(filters.ListFilters, filters.list_filters, server=True),
    "deleteFilter": Method(filters.DeleteFilter, filters.delete_filter, server=True),
    "getEventStatistics": Method(
        eventstats.GetEventStatistics, eventstats.get_event_statistics, server=True
    ),
    "createMessage": Method(messages.CreateMessage, messages.create_message, server=True),
    "createTargetedMessage": Method(
        targeted.CreateTargetedMessage, targeted.create_targeted_message, server=True
    ),
    "deleteMessage": Method(messages.DeleteMessage, messages.delete_message, server=True),
    "getTrackingLog": Method(scheduled.GetTrackingLog, scheduled.get_tracking_log, server=True),
    "getResults": Method(scheduled.GetResults, scheduled.get_results, server=True),
    "getMsgStats": Method(scheduled.GetMsgStats, scheduled.get_msg_stats, server=True),
}

V2: dict[str, Method[Any]] = {
    "statistics/getMessageLog": Method(
        message_log.GetMessageLog, message_log.get_message_log, server=True
    ),
    "statistics/messages/totalsByIntervals": Method(
        v2stats.TotalsByIntervals, v2stats.totals_by_intervals, server=True
    ),
    "messages:list": Method(v2stats.MessagesList, v2stats.messages_list, server=True),
    # (ours) the dead-token ledger
    "devices/deadTokens": Method(deadtokens.DeadTokens, deadtokens.dead_tokens, server=True),
    # (ours) webhooks
    "webhooks/addWebhook": Method(webhooks.AddWebhook, webhooks.add_webhook, server=True),
    "webhooks/listWebhooks": Method(webhooks.ListWebhooks, webhooks.list_webhooks, server=True),
    "webhooks/removeWebhook": Method(webhooks.NameWebhook, webhooks.remove_webhook, server=True),
    "webhooks/testWebhook": Method(webhooks.NameWebhook, webhooks.test_webhook, server=True),
    "webhooks/replayWebhook": Method(webhooks.ReplayWebhook, webhooks.replay_webhook, server=True),
}


def method_names() -> frozenset[str]:
    """Every method name a token may be restricted to."""
    # "stream": GET /api/v2/events/stream
    return frozenset(JSON13) | frozenset(name.rsplit("/", 1)[-1] for name in V2) | {"stream"}


def create_app(ctx: Context, *, lifespan_store: bool = False) -> Starlette:
    """The HTTP application over ``ctx``; with ``lifespan_store`` it closes the store on exit."""

    async def answered(
        request: Request,
        api: str,
        methods: dict[str, Method[Any]],
        inner: Callable[[Request, str, _Seen], Awaitable[Response]],
        refuse: Callable[[PushtrackError], Response],
    ) -> Response:
        """Answer within ``max_in_flight``; count and log the request."""
        name = request.path_params["method"]
        started = time.perf_counter()
        seen = _Seen()
        if ctx.in_flight >= ctx.settings.max_in_flight:
            seen.status = 503
            response = refuse(envelope.busy())
        else:
            ctx.in_flight += 1
            try:
                response = await inner(request, name, seen)
            finally:
                ctx.in_flight -= 1
        header = _finish(
            ctx,
            _header(request.scope, b"x-request-id"),
            api,
            name in methods and name,
            seen,
            started,
        )
        if header is not None:
            response.headers["x-request-id"] = header
        return response

    async def json13(request: Request) -> Response:
        """A JSON 1.3 call that came through the router (``_App`` answers them first)."""
        status, body, headers = await answer_json13(
            request.scope, request.receive, request.path_params["method"]
        )
        response = Response(body, status_code=status, media_type=envelope.JSON)
        response.raw_headers.extend(headers)
        return response

    async def answer_json13(
        scope: Scope, receive: Receive, name: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """A JSON 1.3 call's status, body and headers beyond Content-Type and -Length,
        within ``max_in_flight``, counted and logged."""
        started = time.perf_counter()
        seen = _Seen()
        if ctx.in_flight >= ctx.settings.max_in_flight:
            seen.status = 503
            status, body, headers = envelope.error_parts(envelope.busy())
        else:
            ctx.in_flight += 1
            try:
                status, body, headers = await _json13(scope, receive, name, seen)
            finally:
                ctx.in_flight -= 1
        header = _finish(
            ctx, _header(scope, b"x-request-id"), "json13", name in JSON13 and name, seen, started
        )
        if header is not None:
            headers.append((b"x-request-id", header.encode("latin-1")))
        return status, body, headers

    async def _json13(
        scope: Scope, receive: Receive, name: str, seen: _Seen
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            method = JSON13.get(name)
            if method is None:
                raise MethodNotFoundError
            body = await envelope.read_asgi_body(scope, receive, ctx.settings.max_body_bytes)
            data = envelope.unwrap_request(body)
            call = await _authenticate(ctx, name, method, _header(scope, b"authorization"), data)
            seen.account = call.token.account if call.token else None
            typed = envelope.convert(data, method.request)
            return 200, envelope.ok_body(await method.handler(call, typed)), []
        except PushtrackError as exc:
            seen.status = exc.status_code
            return envelope.error_parts(exc)
        except StoreUnavailableError as exc:
            seen.status = 503
            return envelope.error_parts(envelope.unavailable(exc))
        except Exception:  # noqa: BLE001 - the boundary: no fault leaves as a stack trace
            seen.status = 500
            return envelope.error_parts(envelope.internal(name))

    async def v2(request: Request) -> Response:
        return await answered(request, "v2", V2, _v2, envelope.v2_error)

    async def _v2(request: Request, name: str, seen: _Seen) -> Response:
        try:
            method = V2.get(name)
            if method is None:
                raise MethodNotFoundError
            body = await envelope.read_body(request, ctx.settings.max_body_bytes)
            data = envelope.decode_json(body)
            if not isinstance(data, dict):
                raise MalformedError
            beside: list[str] = []
            if isinstance(data.get("request"), dict):
                # the wrapper may carry auth beside the request; nothing else
                outer, data = data, data["request"]
                beside = sorted(k for k in outer if k not in ("request", "auth"))
                if "auth" in outer and "auth" not in data:
                    data["auth"] = outer["auth"]
            body_auth = data.pop("auth", None)
            raw = auth.token_from_header(_header(request.scope, b"authorization"))
            raw = raw or (body_auth if isinstance(body_auth, str) else None)
            if not raw:
                raise AuthError
            token = await ctx.token(raw)
            seen.account = token.account
            auth.check_method(token, name.rsplit("/", 1)[-1], server_method=True)
            ctx.limiter.check(f"t{token.id}")
            if beside:
                raise ArgumentError(f'unknown field "{beside[0]}" beside "request"')
            typed = envelope.convert(data, method.request)
            return envelope.v2_ok(await method.handler(Call(ctx, name, token), typed))
        except PushtrackError as exc:
            seen.status = 400 if exc.http_status == 200 else exc.http_status
            return envelope.v2_error(exc)
        except StoreUnavailableError as exc:
            seen.status = 503
            return envelope.v2_error(envelope.unavailable(exc))
        except Exception:  # noqa: BLE001 - the boundary: no fault leaves as a stack trace
            seen.status = 500
            return envelope.v2_error(envelope.internal(name))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if lifespan_store:
                await ctx.store.close()

    routes = [
        Route("/json/1.3/{method}", json13, methods=["POST"]),
        Route("/api/v2/events/stream", webhooks.stream_endpoint(ctx), methods=["GET"]),
        Route("/api/v2/{method:path}", v2, methods=["POST"]),
        Route("/health", health.healthz, methods=["GET"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz(ctx), methods=["GET"]),
        Route("/files/{name}", files.endpoint(ctx), methods=["GET", "HEAD"]),
        Route("/metrics", health.metrics(ctx), methods=["GET"]),
        Route("/openapi.json", openapi.openapi_json, methods=["GET"]),
        Route("/docs", openapi.docs_page, methods=["GET"]),
        Mount("/docs/static", StaticFiles(directory=openapi.STATIC), name="docs-static"),
    ]
    # the web dashboard at /, beside the APIs (pushtrack/dashboard)
    built: list[Starlette] = []
    routes += Dashboard(ctx, lambda: built[0] if built else None).routes()
    app = _App(
        answer_json13,
        routes=routes,
        lifespan=lifespan,
        exception_handlers={405: envelope.not_allowed},
    )
    app.state.ctx = ctx
    built.append(app)
    return app


@dataclass
class _Seen:
    """What the access log and the metrics learn while a request is answered."""

    status: int = 200
    account: str | None = None


class _App(Starlette):
    """Starlette, with the JSON 1.3 calls answered before its middleware and router.

    ``POST /json/1.3/<method>`` is most of the traffic (every device report); the
    answer is the same the router's route gives (``create_app``'s ``json13``), without
    the layers every other route goes through. Everything else, and JSON 1.3 paths with
    another HTTP method (405 in the envelope), goes through Starlette.
    """

    def __init__(
        self,
        json13: Callable[[Scope, Receive, str], Awaitable[tuple[int, bytes, list[Header]]]],
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._json13 = json13

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith(JSON13_PREFIX)
            and not scope.get("root_path")
        ):
            name = scope["path"][len(JSON13_PREFIX) :]
            if name and "/" not in name:
                scope["app"] = self
                status, body, headers = await self._json13(scope, receive, name)
                headers.append((b"content-length", str(len(body)).encode()))
                headers.append(_CONTENT_TYPE)
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await super().__call__(scope, receive, send)


Header = tuple[bytes, bytes]
JSON13_PREFIX = "/json/1.3/"
_CONTENT_TYPE = (b"content-type", envelope.JSON.encode())


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (``name`` in lower case, as ASGI gives them)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: The metrics' children by (api, method, status): ``labels`` costs more than the count.
_counted: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _finish(
    ctx: Context,
    given: str | None,
    api: str,
    known: str | bool,
    seen: _Seen,
    started: float,
) -> str | None:
    """Count the request, and write its access-log record when the log is on; the
    ``x-request-id`` the answer carries, if any (``given``, the request's, when valid)."""
    method = known if isinstance(known, str) else "unknown"
    elapsed = time.perf_counter() - started
    key = (api, method, seen.status)
    children = _counted.get(key)
    if children is None:
        children = _counted[key] = (
            metrics.REQUESTS.labels(api, method, str(seen.status)),
            metrics.REQUEST_SECONDS.labels(api, method),
        )
    children[0].inc()
    children[1].observe(elapsed)
    if given is not None and not _REQUEST_ID.match(given):
        given = None
    if given is None and ctx.settings.access_log:
        given = secrets.token_hex(8)
    if ctx.settings.access_log:
        logs.access_line(
            api=api,
            method=method,
            status=seen.status,
            ms=round(elapsed * 1000, 2),
            account=seen.account,
            request_id=given,
        )
    return given


async def _authenticate(
    ctx: Context, name: str, method: Method[Any], header: str | None, data: dict[str, Any]
) -> Call:
    """Who calls; the body's ``auth`` is consumed here and never reaches a handler."""
    body_auth = data.pop("auth", None)
    if method.server:
        if not isinstance(body_auth, str) or not body_auth:
            raise AuthError
        token = await ctx.token(body_auth)
        auth.check_method(token, name, server_method=True)
        ctx.limiter.check(f"t{token.id}")
        return Call(ctx, name, token)
    if body_auth is not None:
        raise ArgumentError(
            'unknown field "auth" (device methods take a device token in the Authorization header)'
        )
    raw = auth.token_from_header(header)
    if raw is None:
        # Tokenless device call: only an application that allows it may be named.
        app_code = data.get("application")
        app = await ctx.app(app_code) if isinstance(app_code, str) and app_code else None
        if app is None or app.device_token_required:
            raise AuthError
        ctx.limiter.check(f"a{app.code}")
        return Call(ctx, name, None)
    token = await ctx.token(raw)
    auth.check_method(token, name, server_method=False)
    ctx.limiter.check(f"t{token.id}")
    return Call(ctx, name, token)
