"""Reading request bodies and writing the two response shapes.

JSON 1.3: ``{"status_code", "status_message", "response"}``.
Statistics v2: the result itself, or ``{"error": message}`` with a 4xx status.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, TypeVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope

from pushtrack import metrics
from pushtrack.api.errors import (
    ArgumentError,
    IncompleteError,
    MalformedError,
    MethodNotAllowedError,
    PushtrackError,
    TooLargeError,
    UnavailableError,
)
from pushtrack.store.base import StoreUnavailableError

log = logging.getLogger("pushtrack.api")

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
JSON = _JSON = "application/json"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise TooLargeError
        except ValueError:
            raise MalformedError from None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLargeError
            chunks.append(chunk)
    except ClientDisconnect:
        raise IncompleteError from None
    return b"".join(chunks)


async def read_asgi_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """``read_body`` straight from the ASGI messages (the JSON 1.3 calls, answered
    before Starlette's router; see ``api/app.py``)."""
    for key, declared in scope["headers"]:
        if key == b"content-length":
            try:
                if int(declared) > limit:
                    raise TooLargeError
            except ValueError:
                raise MalformedError from None
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise TooLargeError
            if not message.get("more_body", False):
                if not chunks:
                    return bytes(chunk)
                chunks.append(chunk)
                return b"".join(chunks)
            chunks.append(chunk)
        elif message["type"] == "http.disconnect":
            raise IncompleteError


def _decode(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    # RecursionError: nested too deep; UnicodeDecodeError: text that is not UTF-8
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        raise MalformedError from None


def decode_json(body: bytes) -> Any:
    """A JSON body; an object holding text with a NUL character is a 210 (see ``_reject_nul``)."""
    doc = _decode(body)
    if isinstance(doc, dict) and b"\\u0000" in body:
        _reject_nul(doc)
    return doc


def _reject_nul(doc: Any) -> None:
    """A 210 naming the field whose text holds a NUL character (no engine can store it)."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        where, value = stack.pop()
        if where in ("auth", "request.auth"):
            continue  # a token is only ever hashed; a bad one is a 401, not a 210
        if isinstance(value, str):
            if "\x00" in value:
                where = where.removeprefix("request.") or "request"
                raise ArgumentError(f"{where}: must not contain NUL characters")
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{where}.{key}" if where else str(key)
                stack.extend(((name, key), (name, item)))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))


def unwrap_request(body: bytes) -> dict[str, Any]:
    """The ``request`` object of a JSON 1.3 body (400 when there is none)."""
    doc = _decode(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("request"), dict):
        raise MalformedError
    request: dict[str, Any] = doc["request"]
    if b"\\u0000" in body:  # rare, so only then look for the string holding it
        _reject_nul(request)
    return request


def convert(data: dict[str, Any], type_: type[T]) -> T:
    """Validate a decoded object into a typed request; 210 naming the field on failure."""
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        raise ArgumentError(describe(exc)) from None


_AT = re.compile(r"^(?P<text>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>.*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_NAMED = re.compile(r"^(?P<name>[A-Za-z_][\w.\[\]]*): (?P<rest>.*)$", re.DOTALL)
_TICKS = re.compile(r"`([^`]*)`")


def describe(exc: msgspec.ValidationError) -> str:
    """msgspec's message in the API's words: ``<field path>: <what is wrong>``.

    ``Object contains unknown field `devicez` - at `$.notifications[0]` `` becomes
    ``notifications[0]: unknown field "devicez"``.
    """
    found = _AT.match(str(exc))
    assert found is not None  # the pattern matches any text
    text, path = found["text"], (found["path"] or "").removeprefix(".")
    if m := _UNKNOWN.match(text):
        text = f'unknown field "{m["name"]}"'
    elif m := _MISSING.match(text):
        path = f"{path}.{m['name']}" if path else m["name"]
        text = "required"
    elif m := _NAMED.match(text):  # a struct's own check, naming its field
        path = f"{path}.{m['name']}" if path else m["name"]
        text = m["rest"]
    else:
        text = _TICKS.sub(r"\1", text)
        text = text[:1].lower() + text[1:]
    return f"{path}: {text}" if path else text


#: The OK envelope without a response (every device report's answer), encoded once.
_OK_NONE = _encoder.encode({"status_code": 200, "status_message": "OK", "response": None})


def ok_body(response: Any = None) -> bytes:
    """The OK envelope around ``response``, encoded."""
    if response is None:
        return _OK_NONE
    return _encoder.encode({"status_code": 200, "status_message": "OK", "response": response})


def ok(response: Any = None) -> Response:
    return Response(ok_body(response), media_type=_JSON)


def error_parts(exc: PushtrackError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The error envelope: HTTP status, body, and the headers beside the content's."""
    body = _encoder.encode(
        {"status_code": exc.status_code, "status_message": exc.message, "response": None}
    )
    headers = [] if exc.retry_after is None else [(b"retry-after", str(exc.retry_after).encode())]
    return exc.http_status, body, headers


def error(exc: PushtrackError) -> Response:
    status, body, _ = error_parts(exc)
    return Response(body, status_code=status, headers=_headers(exc), media_type=_JSON)


class Encoded(msgspec.Struct, frozen=True):
    """A result a handler has encoded itself (statistics v2): the body, as it goes out."""

    body: bytes


def v2_ok(result: Any) -> Response:
    if isinstance(result, Encoded):
        return Response(result.body, media_type=_JSON)
    return Response(_encoder.encode(result), media_type=_JSON)


def v2_error(exc: PushtrackError) -> Response:
    status = 400 if exc.http_status == 200 else exc.http_status
    return Response(
        _encoder.encode({"error": exc.message}),
        status_code=status,
        headers=_headers(exc),
        media_type=_JSON,
    )


def _headers(exc: PushtrackError) -> dict[str, str] | None:
    return None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}


async def not_allowed(request: Request, exc: Exception) -> Response:
    """Starlette's 405 in the envelope of the API family the path belongs to."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if path.startswith("/json/1.3/"):
        response = error(MethodNotAllowedError())
    elif path.startswith("/api/v2/"):
        response = v2_error(MethodNotAllowedError())
    else:
        response = PlainTextResponse(exc.detail, status_code=exc.status_code)
    response.headers.update(exc.headers or {})
    return response


#: Seconds a caller is told to wait when the store cannot be used.
UNAVAILABLE_RETRY_AFTER = 5
#: A storage fault is logged once per kind per this many seconds, with a count.
FAULT_LOG_INTERVAL = 30.0
_faults: dict[str, tuple[float, int]] = {}


def unavailable(exc: StoreUnavailableError) -> PushtrackError:
    """The 503 a caller sees while the store cannot be used; one log line per fault
    kind per ``FAULT_LOG_INTERVAL`` (with how many requests it refused), never a
    traceback per request."""
    metrics.STORE_UNAVAILABLE.labels(exc.kind).inc()
    now = time.monotonic()
    logged_at, missed = _faults.get(exc.kind, (float("-inf"), 0))
    if now - logged_at >= FAULT_LOG_INTERVAL:
        more = f" ({missed} more since the last line)" if missed else ""
        log.error("store unavailable, answering 503: %s%s", exc, more)
        _faults[exc.kind] = (now, 0)
    else:
        _faults[exc.kind] = (logged_at, missed + 1)
    return UnavailableError(
        f"Service temporarily unavailable ({exc.kind})", retry_after=UNAVAILABLE_RETRY_AFTER
    )


def busy() -> PushtrackError:
    """The 503 answered while ``max_in_flight`` requests are being worked on."""
    metrics.SHED.inc()
    return UnavailableError("Service temporarily unavailable (busy)", retry_after=1)


def internal(where: str) -> PushtrackError:
    """Log the exception being handled and return the bare 500 the caller sees."""
    log.exception("internal error in %s", where)
    return PushtrackError()
