"""The ASGI application: routes, method tables, and the one place errors become HTTP."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pushtrack.api import auth, devices, envelope, files, messages, stats, tracking, v2stats
from pushtrack.api.context import Call, Context
from pushtrack.api.errors import AuthError, MalformedError, MethodNotFoundError, PushtrackError

log = logging.getLogger("pushtrack.api")

Handler = Callable[[Call, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    handler: Handler
    #: Server methods authenticate with the body's ``auth``; device methods with a header.
    server: bool


JSON13: dict[str, Method] = {
    "registerDevice": Method(devices.register_device, server=False),
    "unregisterDevice": Method(devices.unregister_device, server=False),
    "pushStat": Method(devices.push_stat, server=False),
    "messageDeliveryEvent": Method(devices.message_delivery_event, server=False),
    "createMessage": Method(messages.create_message, server=True),
    "deleteMessage": Method(messages.delete_message, server=True),
    "getTrackingLog": Method(tracking.get_tracking_log, server=True),
    "getResults": Method(tracking.get_results, server=True),
    "getMsgStats": Method(tracking.get_msg_stats, server=True),
}

V2: dict[str, Handler] = {
    "statistics/getMessageLog": stats.get_message_log,
    "statistics/messages/totalsByIntervals": v2stats.totals_by_intervals,
    "messages:list": v2stats.messages_list,
}


def method_names() -> frozenset[str]:
    """Every method name a token may be restricted to."""
    return frozenset(JSON13) | frozenset(name.rsplit("/", 1)[-1] for name in V2)


def create_app(ctx: Context, *, lifespan_store: bool = False) -> Starlette:
    """The HTTP application over ``ctx``; with ``lifespan_store`` it closes the store on exit."""

    async def json13(request: Request) -> Response:
        name = request.path_params["method"]
        try:
            method = JSON13.get(name)
            if method is None:
                raise MethodNotFoundError
            body = await envelope.read_body(request, ctx.settings.max_body_bytes)
            data = envelope.unwrap_request(body)
            call = await _authenticate(ctx, name, method, request, data)
            return envelope.ok(await method.handler(call, data))
        except PushtrackError as exc:
            return envelope.error(exc)
        except Exception:  # noqa: BLE001 - the boundary: no fault leaves as a stack trace
            return envelope.error(envelope.internal(name))

    async def v2(request: Request) -> Response:
        name = request.path_params["method"]
        try:
            handler = V2.get(name)
            if handler is None:
                raise MethodNotFoundError
            body = await envelope.read_body(request, ctx.settings.max_body_bytes)
            data = envelope.decode_json(body)
            if not isinstance(data, dict):
                raise MalformedError
            if isinstance(data.get("request"), dict):
                data = data["request"]
            raw = auth.token_from_header(request.headers.get("authorization"))
            raw = raw or (data.get("auth") if isinstance(data.get("auth"), str) else None)
            if not raw:
                raise AuthError
            token = await ctx.token(raw)
            auth.check_method(token, name.rsplit("/", 1)[-1], server_method=True)
            ctx.limiter.check(f"t{token.id}")
            return envelope.v2_ok(await handler(Call(ctx, name, token), data))
        except PushtrackError as exc:
            return envelope.v2_error(exc)
        except Exception:  # noqa: BLE001 - the boundary: no fault leaves as a stack trace
            return envelope.v2_error(envelope.internal(name))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if lifespan_store:
                await ctx.store.close()

    routes = [
        Route("/json/1.3/{method}", json13, methods=["POST"]),
        Route("/api/v2/{method:path}", v2, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/files/{name}", files.endpoint(ctx), methods=["GET", "HEAD"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.ctx = ctx
    return app


async def _authenticate(
    ctx: Context, name: str, method: Method, request: Request, data: dict[str, Any]
) -> Call:
    if method.server:
        raw = data.get("auth")
        if not isinstance(raw, str) or not raw:
            raise AuthError
        token = await ctx.token(raw)
        auth.check_method(token, name, server_method=True)
        ctx.limiter.check(f"t{token.id}")
        return Call(ctx, name, token)
    raw = auth.token_from_header(request.headers.get("authorization"))
    if raw is None:
        app_code = data.get("application")
        ctx.limiter.check(f"a{app_code}")
        return Call(ctx, name, None)
    token = await ctx.token(raw)
    auth.check_method(token, name, server_method=False)
    ctx.limiter.check(f"t{token.id}")
    return Call(ctx, name, token)
