"""``GET /openapi.json`` (OpenAPI 3.1) and ``GET /docs`` (a page that renders it).

Request bodies come from the method tables' msgspec request types, so the
document can never drift from what the boundary accepts (unknown keys are
refused: ``additionalProperties: false``). Responses are described here, once
per method, in JSON Schema; the test suite checks every answer against them.
The docs page uses Swagger UI's files vendored in ``api/static/`` (from the npm
package ``swagger-ui-dist``), never a CDN.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from pushtrack import __version__

STATIC = Path(__file__).with_name("static")

_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_NULL = {"type": "null"}


def _obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


def _list(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


_NULLABLE_STR = {"type": ["string", "null"]}
_REQUEST_ID = _obj(("request_id",), request_id=_STR)
_COUNTER = {"type": "string", "pattern": "^[0-9]+$"}

#: What each JSON 1.3 method puts in the envelope's ``response`` on success.
JSON13_RESPONSES: dict[str, dict[str, Any]] = {
    "registerDevice": _NULL,
    "unregisterDevice": _NULL,
    "pushStat": _NULL,
    "messageDeliveryEvent": _NULL,
    "applicationOpen": _NULL,
    "registerUser": _NULL,
    "setBadge": _NULL,
    "checkDevice": _obj(("exist", "push_token_exist"), exist=_BOOL, push_token_exist=_BOOL),
    "postEvent": _obj(("code",), code=_STR),
    "setTags": _obj(("skipped",), skipped=_list({})),
    "getTags": _obj(("result",), result={"type": "object"}),
    "addTag": _obj(("result",), result=_BOOL),
    "listTags": _obj(
        ("tags",),
        tags=_list(
            _obj(
                ("name", "type", "isApplicationSpecific", "type_name", "declared"),
                name=_STR,
                type=_INT,
                isApplicationSpecific=_BOOL,
                type_name=_STR,
                declared=_BOOL,
            )
        ),
    ),
    "deleteTag": _obj(("result",), result=_BOOL),
    "createFilter": _obj(("name", "expression"), name=_STR, expression=_STR),
    "deleteFilter": _NULL,
    "listFilters": _obj(
        ("filters",),
        filters=_list(
            _obj(
                ("name", "expression", "conditions", "operator", "application"),
                name=_STR,
                expression=_STR,
                conditions={"type": ["array", "null"]},
                operator={"type": ["string", "null"]},
                application={"type": ["string", "null"]},
            )
        ),
    ),
    "getEventStatistics": _REQUEST_ID,
    "createMessage": _obj(("Messages",), Messages=_list(_STR), TrackingCodes=_list(_STR)),
    "createTargetedMessage": _obj(("Messages",), Messages=_list(_STR)),
    "deleteMessage": _NULL,
    "getTrackingLog": _REQUEST_ID,
    "getResults": {
        "oneOf": [
            _obj(
                ("request_id", "status"),
                request_id=_STR,
                status={"enum": ["pending", "running", "done", "failed"]},
                fileName=_STR,
                reason=_STR,
            ),
            _list({"type": "object"}),
        ]
    },
    "getMsgStats": _REQUEST_ID,
}

_LOG_ROW = _obj(
    (
        "timestamp",
        "action",
        "application_code",
        "message_code",
        "message_id",
        "tracking_code",
        "hwid",
        "target_id",
        "user_id",
        "platform",
        "description",
    ),
    timestamp=_STR,
    action=_STR,
    application_code=_STR,
    message_code=_STR,
    message_id=_INT,
    tracking_code=_STR,
    hwid=_STR,
    target_id=_STR,
    user_id={"type": ["string", "null"]},
    platform={"type": ["string", "null"]},
    description=_STR,
    gateway_id=_NULLABLE_STR,
    attempts=_INT,
    retry_reason=_NULLABLE_STR,
    failure_class=_NULLABLE_STR,
)

#: What each statistics v2 method answers on success.
V2_RESPONSES: dict[str, dict[str, Any]] = {
    "statistics/getMessageLog": _obj(
        ("data", "pagination_token"),
        data=_list(_LOG_ROW),
        pagination_token={"type": ["string", "null"]},
    ),
    "statistics/messages/totalsByIntervals": _obj(
        ("metrics", "conversion"),
        metrics=_list(_obj(("timestamp", "platform"), timestamp=_STR, platform=_INT)),
        conversion={"type": "object", "additionalProperties": _COUNTER},
    ),
    "messages:list": _obj(
        ("total", "items"),
        total=_INT,
        items=_list(_obj(("id", "code", "status"), id=_INT, code=_STR, status=_STR)),
    ),
    "devices/deadTokens": _obj(
        ("items", "pagination_token"),
        items=_list(
            _obj(
                ("found_at", "application_code", "hwid", "push_token", "platform", "reason"),
                found_at=_STR,
                application_code=_STR,
                hwid=_STR,
                push_token=_STR,
                platform=_STR,
                reason=_STR,
                message_code=_NULLABLE_STR,
                message_id={"type": ["integer", "null"]},
                tracking_code=_NULLABLE_STR,
            )
        ),
        pagination_token=_NULLABLE_STR,
    ),
    "webhooks/addWebhook": _obj(
        ("application", "url", "secret"), application=_STR, url=_STR, secret=_STR
    ),
    "webhooks/listWebhooks": _obj(
        ("items",),
        items=_list(
            _obj(
                ("application", "url", "delivered", "failing"),
                application=_STR,
                url=_STR,
                delivered=_INT,
                failing={"type": "boolean"},
                last_error=_NULLABLE_STR,
            )
        ),
    ),
    "webhooks/removeWebhook": _obj(("removed",), removed={"type": "boolean"}),
    "webhooks/testWebhook": _obj(("ok", "error"), ok={"type": "boolean"}, error=_NULLABLE_STR),
    "webhooks/replayWebhook": _obj(("application", "url"), application=_STR, url=_STR),
}

_ENVELOPE_ERROR = _obj(
    ("status_code", "status_message", "response"),
    status_code=_INT,
    status_message=_STR,
    response=_NULL,
)
_V2_ERROR = _obj(("error",), error=_STR)


def _envelope(response: dict[str, Any]) -> dict[str, Any]:
    return {
        "oneOf": [
            _obj(
                ("status_code", "status_message", "response"),
                status_code={"const": 200},
                status_message={"const": "OK"},
                response=response,
            ),
            {
                **_ENVELOPE_ERROR,
                "properties": {
                    **_ENVELOPE_ERROR["properties"],
                    "status_code": {"enum": [210]},
                },
            },
        ]
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _with_auth(schema: dict[str, Any], required: bool) -> dict[str, Any]:
    out = copy.deepcopy(schema)
    out.setdefault("properties", {})["auth"] = {**_STR, "minLength": 1}
    if required:
        out["required"] = ["auth", *out.get("required", [])]
    return out


@cache
def _query(name: str, description: str, *, many: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "array", "items": schema} if many else schema,
        **({"explode": True} if many else {}),
    }


#: GET /api/v2/events/stream (ours): the trail as server-sent events (docs/api.md §8).
_STREAM: dict[str, Any] = {
    "operationId": "events_stream",
    "tags": ["Events (ours)"],
    "summary": "The trail's events as they happen, as server-sent events.",
    "description": "Each event's `id:` is its position; reconnect with `Last-Event-ID` to"
    " go on after it. Without it the stream starts at the trail's head (now). A comment"
    " line every 15 s keeps the connection open; a stream ends after 10 minutes.",
    "security": [{"serverToken": []}],
    "parameters": [
        _query("application", "Only this application's events."),
        _query("hwid", "Only these devices' events.", many=True),
        _query("message", "Only this message's events (its code)."),
        _query("status", "Only these statuses (created, sent, ...).", many=True),
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "The last event id received: the stream goes on after it.",
            "schema": {"type": "string"},
        },
    ],
    "responses": {
        "200": {
            "description": "text/event-stream: `id`, `event` (the status) and `data` (the"
            " event as JSON, the fields of a webhook event) per event",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        "400": _json(_V2_ERROR, "Unknown parameter, application or Last-Event-ID"),
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of both API families."""
    from pushtrack.api.app import JSON13, V2

    kinds = {m.request for m in (*JSON13.values(), *V2.values())}
    _, components = msgspec.json.schema_components(
        sorted(kinds, key=lambda k: (k.__module__, k.__qualname__)),
        ref_template="#/components/schemas/{name}",
    )
    paths: dict[str, Any] = {}
    errors = {
        "400": _json(_ENVELOPE_ERROR, "Malformed request string"),
        "401": _json(_ENVELOPE_ERROR, "No token, or an unknown or revoked one"),
        "403": _json(_ENVELOPE_ERROR, "The token's restrictions forbid this"),
        "413": _json(_ENVELOPE_ERROR, "Request too large"),
        "429": _json(_ENVELOPE_ERROR, "Rate limited (header Retry-After)"),
        "503": _json(_ENVELOPE_ERROR, "The store cannot be used now (header Retry-After)"),
    }
    for name, method in JSON13.items():
        struct = components[method.request.__name__]
        paths[f"/json/1.3/{name}"] = {
            "post": {
                "operationId": name,
                "tags": ["JSON 1.3 (server)" if method.server else "JSON 1.3 (device)"],
                "summary": (method.handler.__doc__ or name).strip().splitlines()[0],
                "security": [{"serverAuth": []}] if method.server else [{"deviceToken": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                ("request",),
                                request=_with_auth(struct, method.server)
                                if method.server
                                else struct,
                            )
                        }
                    },
                },
                "responses": {
                    "200": _json(_envelope(JSON13_RESPONSES[name]), "Answered (status_code)"),
                    **errors,
                },
            }
        }
    v2_errors = {k: _json(_V2_ERROR, v["description"]) for k, v in errors.items()}
    for name, method in V2.items():
        struct = components[method.request.__name__]
        paths[f"/api/v2/{name}"] = {
            "post": {
                "operationId": name.replace("/", "_").replace(":", "_"),
                "tags": ["Statistics v2"],
                "security": [{"serverToken": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _with_auth(struct, False)}},
                },
                "responses": {
                    "200": _json(V2_RESPONSES[name], "The result"),
                    "400": _json(_V2_ERROR, "Invalid argument or malformed body"),
                    **{k: v for k, v in v2_errors.items() if k != "400"},
                },
            }
        }
    stream = {**_STREAM, "responses": dict(_STREAM["responses"])}
    stream["responses"].update({k: v for k, v in v2_errors.items() if k != "400"})
    paths["/api/v2/events/stream"] = {"get": stream}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pushtrack",
            "version": __version__,
            "description": "Pushwoosh-compatible JSON 1.3 API and statistics v2; the"
            " reference with every field's meaning is docs/api.md in the repository.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "serverToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "Token <server API token>",
                },
                "serverAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Body-Auth",
                    "description": "JSON 1.3 server methods take the token in the body's"
                    " request.auth (this scheme only names it)",
                },
                "deviceToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "Token <device API token>",
                },
            },
        },
    }


async def openapi_json(request: Request) -> Response:
    return JSONResponse(document())


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pushtrack API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/init.js"></script>
</body></html>
"""


async def docs_page(request: Request) -> Response:
    return HTMLResponse(_PAGE)
